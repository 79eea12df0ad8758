"""Training throughput and peak memory of VLD through the real engine step, on synthetic data.

    python benchmarks/bench_train.py                  # full ViT-B/16, 288x144, T=6, batch 32
    python benchmarks/bench_train.py --tiny --device cpu --iters 2 --warmup 1   # smoke run

Everything is the training recipe's own code: the config's model (random init, no download)
with ``--num-classes`` identities in the IMLP text encoder (HITSZ-VCM: 500; the text encoder
runs over all of them every step), ``build_engine`` (AdamW, VLD loss, AMP) and its
``forward_backward``, fed by ``VLDDataManager`` on a synthetic HITSZ-VCM copy written at the
input size (P identities x K visible+infrared pairs). Two modes:

- ``loader``: batches straight from the train loader (its workers decode and augment JPEGs):
  the whole training pipeline, as an epoch runs it;
- ``tensors``: a few loader batches placed on the device beforehand and cycled: the step
  alone (upload-free ``prepare_batch`` normalisation + erasing, forward, loss, backward, update).

Each times ``--iters`` steps after ``--warmup`` steps; seconds per 200-iteration epoch are
extrapolated from the mean step time. Peak memory: ``torch.cuda.max_memory_allocated`` on a
GPU, the main process's peak resident set (VmHWM, loader workers excluded) on the CPU. The
issue's goals (one H200, bf16): a 200-iteration epoch under 40 s, peak memory under 20 GB;
they are judged on the full model only. Results: ``<out>/bench_train_<device>[_tiny][_gc].json``
and ``.md`` with the machine described (``--out`` defaults to a folder outside the checkout, see
_common.py; the recorded runs are in benchmarks/results/).
"""
import argparse
import itertools
import json
import os
import shutil
import tempfile
import time

import torch
from _common import add_out_argument, machine

from vld_plugin.config import get_default_config
from vld_plugin.data.synthetic import generate_vcm
from vld_plugin.engine import resolve_amp
from vld_plugin.launch import build_datamanager, build_engine, build_model
from vld_plugin.models import TINY_OPTIONS

EPOCH_ITERS = 200
GOAL_EPOCH_S = 40.0
GOAL_PEAK_GB = 20.0
MODES = ("loader", "tensors")
TENSOR_BATCHES = 4  # distinct device batches cycled in the ``tensors`` mode
GB = 1e9


def reset_peak_memory(device):
    """Start a new peak-memory window (the CPU one through /proc/self/clear_refs, where Linux allows)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set
    except OSError:
        pass


def peak_memory_gb(device):
    """GPU: peak allocated tensor memory; CPU: the process's peak resident set (GB, 10^9 bytes)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / GB
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib * 1024 / GB


def time_steps(engine, batches, iters, warmup):
    """Run ``warmup`` then ``iters`` ``engine.forward_backward`` steps on batches drawn from the
    iterator ``batches``; return the timing of the last ``iters`` and the peak memory of all."""
    if iters < 1 or warmup < 0:
        raise ValueError(f"need iters >= 1 and warmup >= 0, got iters {iters}, warmup {warmup}")
    device = engine.device
    engine.set_model_mode("train")
    reset_peak_memory(device)
    tracklets, start = 0, None
    for engine.batch_idx in range(warmup + iters):
        if engine.batch_idx == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        data = next(batches)
        if engine.batch_idx >= warmup:
            tracklets += len(data["pid"])
        engine.forward_backward(data)  # returns Python floats: synchronises every step
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    s_per_iter = elapsed / iters
    return {"iters": iters, "warmup": warmup, "tracklets_per_iter": tracklets / iters, "s_per_iter": s_per_iter,
            "tracklets_per_s": tracklets / elapsed, "s_per_epoch": EPOCH_ITERS * s_per_iter,
            "peak_memory_gb": peak_memory_gb(device)}


def make_config(amp, batch_size, seq_len, num_instances, workers, tiny, grad_checkpointing, iters_per_epoch,
                compile=False):
    """The plugin config of the benchmark: paper recipe, random init, tiny sizes on request."""
    cfg = get_default_config()
    cfg.model.pretrained = "none"
    cfg.train.amp = amp
    cfg.train.batch_size = batch_size
    cfg.train.iters_per_epoch = iters_per_epoch
    cfg.sampler.num_instances = num_instances
    cfg.video.seq_len = seq_len
    cfg.data.workers = workers
    cfg.vld.grad_checkpointing = grad_checkpointing
    cfg.train.compile = compile
    if tiny:
        sizes = dict(TINY_OPTIONS)
        cfg.data.height, cfg.data.width = sizes.pop("image_size")
        for key, value in sizes.items():
            cfg.vld[key] = value
    return cfg


def benchmark(device="cpu", amp=None, batch_size=32, seq_len=6, num_instances=4, iters=20, warmup=5, tiny=False,
              grad_checkpointing=False, workers=4, num_classes=500, modes=MODES, data_root=None, seed=0,
              compile=False):
    """Measure the training step in each of ``modes``; return the report (a JSON-able dict).

    ``data_root``: folder for the synthetic HITSZ-VCM copy (a temporary one when None).
    """
    device = torch.device(device)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)  # the engine runs on the current device
    amp = amp or ("bf16" if device.type == "cuda" else "off")
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {list(MODES)}")
    cfg = make_config(amp, batch_size, seq_len, num_instances, workers, tiny, grad_checkpointing,
                      iters_per_epoch=warmup + iters, compile=compile)
    tmp = tempfile.mkdtemp(prefix="bench_train_") if data_root is None else None
    root = data_root or tmp
    try:
        if not os.path.isfile(os.path.join(root, "info", "query_IDX.txt")):
            ids_per_batch = batch_size // (2 * num_instances)
            generate_vcm(root, num_ids=max(16, 2 * ids_per_batch), seed=seed, height=cfg.data.height,
                         width=cfg.data.width, num_cams=3, test_fraction=0.25)
        dm = build_datamanager(cfg, root=root, sources="hitsz_vcm", targets="hitsz_vcm",
                               use_gpu=device.type == "cuda", verbose=False)
        if num_classes < dm.num_train_pids:
            raise ValueError(f"--num-classes {num_classes} is below the {dm.num_train_pids} training identities "
                             f"of the synthetic copy in {root}; raise it")
        torch.manual_seed(seed)
        model = build_model(cfg, num_classes)
        engine = build_engine(cfg, dm, model, use_gpu=device.type == "cuda")
        if engine.device != device:
            raise RuntimeError(f"engine runs on {engine.device}, not on the requested {device}; "
                               "use --device cuda or --device cpu")
        report = {
            "benchmark": "VLD training step (PairedModalityEngine.forward_backward: VLD loss, AdamW, AMP)",
            "machine": machine(device), "device": str(device), "tiny": tiny,
            "model": "tiny VLD (TINY_OPTIONS)" if tiny else f"VLD {cfg.vld.clip_name}, random init",
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "input": f"{cfg.data.height}x{cfg.data.width}", "seq_len": seq_len, "batch_tracklets": batch_size,
            "identities_per_batch": batch_size // (2 * num_instances), "pairs_per_identity": num_instances,
            "num_classes": num_classes, "train_ids_in_data": dm.num_train_pids,
            "amp": amp, "autocast_dtype": str(resolve_amp(amp, device)[0]), "grad_checkpointing": grad_checkpointing,
            "compile": compile,
            "loader_workers": workers, "epoch_iters": EPOCH_ITERS, "modes": {},
        }
        for mode in modes:
            if mode == "tensors":
                batches = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()}
                           for b in itertools.islice(iter(dm.train_loader), TENSOR_BATCHES)]
                report["modes"][mode] = time_steps(engine, itertools.cycle(batches), iters, warmup)
                del batches
            else:
                report["modes"][mode] = time_steps(engine, iter(dm.train_loader), iters, warmup)
        report["goals"] = judge_goals(report)
        return report
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def judge_goals(report):
    """The issue's goals, measured on the whole pipeline (``loader``, else ``tensors``); ``met`` is
    None where they do not apply (tiny model, no GPU, not bf16, other sizes)."""
    mode = "loader" if "loader" in report["modes"] else next(iter(report["modes"]))
    r = report["modes"][mode]
    applies = (not report["tiny"] and report["device"].startswith("cuda") and report["amp"] == "bf16"
               and report["input"] == "288x144" and report["seq_len"] == 6 and report["batch_tracklets"] == 32)
    why = None if applies else "goals apply to the full model on one GPU with bf16 at 288x144, T=6, batch 32"
    return {
        "measured_on": mode,
        "epoch_s": {"goal": f"< {GOAL_EPOCH_S:g} s", "measured": round(r["s_per_epoch"], 2),
                    "met": r["s_per_epoch"] < GOAL_EPOCH_S if applies else None},
        "peak_memory_gb": {"goal": f"< {GOAL_PEAK_GB:g} GB", "measured": round(r["peak_memory_gb"], 2),
                           "met": r["peak_memory_gb"] < GOAL_PEAK_GB if applies else None},
        "note": why,
    }


def markdown(report, label):
    """A short markdown summary of ``report``."""
    m = report["machine"]
    memory = "GPU max_memory_allocated" if report["device"].startswith("cuda") else "main-process peak RSS"
    lines = [f"# {label}", "",
             f"Machine: {m.get('gpu', 'no GPU')}; CPU {m['cpu']} ({m['cores']} cores); Python {m['python']}, "
             f"torch {m['torch']}.", "",
             f"Model: {report['model']} ({report['params_M']:.2f}M parameters), input {report['input']}, "
             f"T={report['seq_len']}, batch {report['batch_tracklets']} tracklets "
             f"({report['identities_per_batch']} ids x {report['pairs_per_identity']} pairs x 2), "
             f"{report['num_classes']} identities in the text encoder, amp {report['amp']}, "
             f"grad checkpointing {report['grad_checkpointing']}, {report['loader_workers']} loader workers.", "",
             f"| mode | s/iter | tracklets/s | s per {EPOCH_ITERS}-iter epoch | peak memory GB ({memory}) |",
             "|---|---|---|---|---|"]
    for mode, r in report["modes"].items():
        lines.append(f"| {mode} | {r['s_per_iter']:.4f} | {r['tracklets_per_s']:.4g} | {r['s_per_epoch']:.1f} | "
                     f"{r['peak_memory_gb']:.2f} |")
    g = report["goals"]
    verdict = {True: "met", False: "NOT met", None: "not applicable"}
    lines += ["", f"Goals (on `{g['measured_on']}`): {EPOCH_ITERS}-iteration epoch {g['epoch_s']['goal']}: "
              f"{g['epoch_s']['measured']} s, {verdict[g['epoch_s']['met']]}; "
              f"peak memory {g['peak_memory_gb']['goal']}: "
              f"{g['peak_memory_gb']['measured']} GB, {verdict[g['peak_memory_gb']['met']]}."]
    if g["note"]:
        lines.append(f"({g['note']}.)")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None,
                        help="train.amp (default: bf16 on GPU, off on CPU)")
    parser.add_argument("--batch-size", type=int, default=32, help="tracklets per step (ids x pairs x 2)")
    parser.add_argument("--num-instances", type=int, default=4, help="visible+infrared pairs per identity")
    parser.add_argument("--seq-len", type=int, default=6)
    parser.add_argument("--iters", type=int, default=30, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--workers", type=int, default=4, help="train loader workers (data.workers)")
    parser.add_argument("--num-classes", type=int, default=500, help="identities (HITSZ-VCM: 500)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (CPU smoke run)")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--compile", action="store_true", help="train.compile: torch.compile the model")
    parser.add_argument("--data-root", default=None, help="synthetic copy to reuse/write (default: a temp dir)")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    report = benchmark(args.device, args.amp, args.batch_size, args.seq_len, args.num_instances, args.iters,
                       args.warmup, args.tiny, args.grad_checkpointing, args.workers, args.num_classes,
                       args.modes, args.data_root, compile=args.compile)
    device = torch.device(args.device).type
    stem = f"bench_train_{device}" + ("_tiny" if args.tiny else "") + ("_gc" if args.grad_checkpointing else "") + \
        ("_compile" if args.compile else "")
    label = f"VLD training throughput on {device}"
    if args.tiny:
        label = f"SMOKE RUN ({device}, tiny model): checks that the benchmark works; not the issue's measurement"
    report["label"] = label
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, stem + ".json"), "w") as f:
        json.dump(report, f, indent=2)
    text = markdown(report, label)
    with open(os.path.join(args.out, stem + ".md"), "w") as f:
        f.write(text)
    print(text + f"written {os.path.join(args.out, stem)}.json/.md")


if __name__ == "__main__":
    main()
