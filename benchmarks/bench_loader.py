"""Loader throughput per worker: the plugin's HITSZ-VCM pipeline against torchreid's VideoDataset.

    python benchmarks/bench_loader.py [--root DIR] [--frame-size 288x144] [--seconds 10]
                                      [--out benchmarks/results]

Both pipelines read the same synthetic JPEGs (written at --frame-size unless --root is
given), in one process with one thread (= one data-loader worker), sampling 6 frames per
training tracklet, resizing to 288x144. Ours: PIL decode + resize + pad/crop/flip in the
worker (uint8), then normalisation + random erasing + channel operations batched (timed
separately, on the CPU here; on a GPU they run on the device). torchreid: PIL decode + its
train transforms (resize, flip, random_crop, to-tensor, normalise, random erasing) per
frame. Results go to ``<out>/loader.json`` with the machine described (``--out`` defaults to a
folder outside the checkout, see _common.py; the recorded run is in benchmarks/results/).
"""
import argparse
import json
import os
import tempfile
import time

import torch
from _common import add_out_argument, machine

from vld_plugin import compat
from vld_plugin.data import HitszVCM, TrackletView
from vld_plugin.data.synthetic import generate_vcm
from vld_plugin.data.transforms import ERASE_FILL, TrackletTransform, channel_augment, normalize, random_erase

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def frames_per_second(get_item, n_items, seconds, seq_len):
    """Items fetched round-robin for ``seconds`` (after a short warm-up): frames per second."""
    for i in range(3):
        get_item(i % n_items)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        get_item(count % n_items)
        count += 1
    return count * seq_len / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="", help="an existing HITSZ-VCM copy (default: write a synthetic one)")
    parser.add_argument("--frame-size", default="288x144", help="HxW of the synthetic JPEGs")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing per pipeline")
    parser.add_argument("--seq-len", type=int, default=6)
    add_out_argument(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    height, width = (int(v) for v in args.frame_size.split("x"))
    tmp = None
    root = args.root
    if not root:
        tmp = tempfile.TemporaryDirectory()
        root = tmp.name
        generate_vcm(root, num_ids=12, seed=0, height=height, width=width, num_cams=3, min_len=12, max_len=30)
    ds = HitszVCM(root=root, verbose=False)
    items = ds.train
    s = args.seq_len

    ours_view = TrackletView(items, s, "restricted_random", TrackletTransform(288, 144, train=True))
    ours = frames_per_second(ours_view.__getitem__, len(items), args.seconds, s)
    loaded = [ours_view[i] for i in range(32)]
    batch = torch.stack([item["img"] for item in loaded])
    modality = torch.tensor([item["modality"] for item in loaded])
    start, reps = time.perf_counter(), 5
    for _ in range(reps):
        channel_augment(random_erase(normalize(batch, MEAN, STD), ERASE_FILL), modality)
    device_fps = reps * batch.shape[0] * s / (time.perf_counter() - start)

    transform_tr, _ = compat.data.transforms.build_transforms(
        288, 144, transforms=["random_flip", "random_crop", "random_erase"])
    plain = [tuple(t) for t in items]
    theirs_ds = compat.data.datasets.dataset.VideoDataset(plain, plain, plain, transform=transform_tr, seq_len=s,
                                                          sample_method="random", verbose=False)
    theirs = frames_per_second(theirs_ds.__getitem__, len(items), args.seconds, s)

    ours_total = 1.0 / (1.0 / ours + 1.0 / device_fps)
    result = {
        "benchmark": f"loader frames/s per worker (decode + augment), HITSZ-VCM layout, {args.frame_size} JPEGs "
                     "to 288x144 input",
        "machine": machine(),
        "seq_len": s,
        "tracklets": len(items),
        "ours_worker_fps": round(ours, 1),
        "ours_batched_normalize_erase_channel_fps_cpu": round(device_fps, 1),
        "ours_worker_plus_cpu_normalize_fps": round(ours_total, 1),
        "torchreid_worker_fps": round(theirs, 1),
        "speedup_worker": round(ours / theirs, 2),
        "speedup_incl_cpu_normalize": round(ours_total / theirs, 2),
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "loader.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    print(f"written {path}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
