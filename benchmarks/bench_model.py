"""Cost of VLD over the CLIP baseline (paper Table X): parameters, MACs per frame, and the
measured forward+backward time ratio vld / clip_tap, in one run.

    python benchmarks/bench_model.py                 # full ViT-B/16 at 288x144, CPU or CUDA
    python benchmarks/bench_model.py --tiny          # smoke run of the tiny architecture (prints only)

MACs are counted on one tracklet's eval forward (T frames), divided by T:
- ``torch.utils.flop_counter``: all matmuls/convolutions incl. attention scores, FLOPs / 2;
- paper-style: the same minus the attention score/value products (``scaled_dot_product``
  ops), which the counter behind the paper's 13.96G / 14.08G leaves out.
Timing: training-mode forward + backward of a batch of B tracklets (bf16 autocast on CUDA).
The IMLP text encoder runs once per step over all identities, whatever B is: the baseline with
IMLP is timed too, giving the STP overhead (vld / clip_tap+IMLP, the paper's Table IV "TAP" row)
and the text cost per step, from which vld / clip_tap is projected to the paper's batch of 32.
Results go to ``benchmarks/results/bench_model_<device>.json`` with the machine described.
"""
import argparse
import json
import os
import platform
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vld_plugin.models import TINY_OPTIONS, create_model  # noqa: E402

PAPER_BATCH = 32


def machine(device):
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def count_macs(model, x):
    """(flop_counter MACs, paper-style MACs) of an eval forward, per frame."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)  # grad enabled on purpose: MHA's fused inference path is invisible to the counter
    per_op = counter.get_flop_counts()["Global"]
    total = sum(per_op.values())
    attention = sum(v for op, v in per_op.items() if "scaled_dot_product" in str(op))
    frames = x.shape[0] * x.shape[1]
    return total / 2 / frames, (total - attention) / 2 / frames


def step_times(fns, steps, device):
    """Best time of each named step function, run interleaved so that load changes hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def train_step(model, x, amp):
    def run():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
            loss = sum(v.float().mean() for k, v in out.items())
        loss.backward()
        model.zero_grad(set_to_none=True)
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=0, help="tracklets per step (0: 32 on CUDA, 2 on CPU)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (0: 10 on CUDA, 2 on CPU)")
    parser.add_argument("--num-classes", type=int, default=500, help="identities (HITSZ-VCM: 500)")
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (smoke run)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (PAPER_BATCH if cuda else 2)
    steps = args.steps or (10 if cuda else 2)
    options = dict(TINY_OPTIONS, seq_len=6) if args.tiny else {}
    height, width = options.get("image_size", (288, 144))

    torch.manual_seed(0)
    models = {name: create_model(args.num_classes, None, **options, **switches).to(device)
              for name, switches in (("clip_tap", dict(imlp=False, sth=False, sta=False)),
                                     ("clip_tap_imlp", dict(sth=False, sta=False)), ("vld", {}))}
    one = torch.randn(1, 6, 3, height, width, device=device)
    x = torch.randn(batch, 6, 3, height, width, device=device)
    report = {"machine": machine(device), "device": str(device), "input": f"{height}x{width}",
              "seq_len": 6, "batch_tracklets": batch, "num_classes": args.num_classes,
              "amp_bf16": cuda, "tiny": args.tiny}
    for name, model in models.items():
        macs_counter, macs_paper = count_macs(model, one)
        visual = sum(p.numel() for p in model.visual.parameters())
        stp = sum(p.numel() for p in ([model.hub] if model.hub is not None else [])) + (
            sum(p.numel() for p in model.sta.parameters()) if model.sta is not None else 0)
        model.train()
        report[name] = {
            "params_visual_encoder_M": visual / 1e6,
            "params_visual_plus_stp_M": (visual + stp) / 1e6,
            "params_trainable_M": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
            "macs_per_frame_G_flop_counter": macs_counter / 1e9,
            "macs_per_frame_G_paper_style": macs_paper / 1e9,
        }
    times = step_times({name: train_step(model, x, cuda) for name, model in models.items()}, steps, device)
    for name in models:
        report[name]["train_step_s"] = times[name]
    vld, imlp, tap = times["vld"], times["clip_tap_imlp"], times["clip_tap"]
    text_s = imlp - tap  # the per-step IMLP text cost, independent of the batch
    scale = PAPER_BATCH / batch
    report["text_encoder_step_s"] = text_s
    report["time_ratio_vld_over_clip_tap_measured"] = vld / tap
    report["time_ratio_stp_overhead_vld_over_clip_tap_imlp"] = vld / imlp
    # a negative text cost means the timings are noise (e.g. a shared CPU): no projection then
    report["time_ratio_vld_over_clip_tap_projected_batch32"] = (
        ((vld - text_s) * scale + text_s) / (tap * scale) if text_s > 0 else None)

    path = os.path.join(args.out, f"bench_model_{device.type}.json")
    if not args.tiny:  # the tiny smoke run only prints
        os.makedirs(args.out, exist_ok=True)
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
    print(f"{'':13s} {'visual M':>9s} {'+STP M':>8s} {'MACs/frame G (counter)':>23s} "
          f"{'(paper-style)':>14s} {'train step s':>13s}")
    for name in models:
        r = report[name]
        print(f"{name:13s} {r['params_visual_encoder_M']:9.2f} {r['params_visual_plus_stp_M']:8.2f} "
              f"{r['macs_per_frame_G_flop_counter']:23.3f} {r['macs_per_frame_G_paper_style']:14.3f} "
              f"{r['train_step_s']:13.3f}")
    print(f"batch {batch} tracklets x 6 frames on {device}: vld/clip_tap time = "
          f"{report['time_ratio_vld_over_clip_tap_measured']:.3f}; STP overhead vld/(clip_tap+IMLP) = "
          f"{report['time_ratio_stp_overhead_vld_over_clip_tap_imlp']:.3f}; IMLP text {text_s:.3f}s/step; "
          f"vld/clip_tap projected to batch {PAPER_BATCH}: "
          f"{report['time_ratio_vld_over_clip_tap_projected_batch32']}")
    if not args.tiny:
        print(f"written {path}")


if __name__ == "__main__":
    main()
