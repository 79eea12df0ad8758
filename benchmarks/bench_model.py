"""Cost of VLD over the CLIP baseline (paper Table X): parameters, MACs per frame, FLOPs of a
training step and the measured forward+backward time ratio vld / clip_tap, in one run.

    python benchmarks/bench_model.py                 # full ViT-B/16 at 288x144, CPU or CUDA
    python benchmarks/bench_model.py --tiny          # smoke run of the tiny architecture (prints only)

Counts are exact and the same on any machine (``torch.utils.flop_counter``):
- MACs per frame, on one tracklet's eval forward (T frames) divided by T, for the architecture
  as Table X counts it (every token through every block; ``prune_last_block`` off):
  counter = all matmuls/convolutions incl. attention scores, FLOPs / 2; paper-style = the same
  minus the attention score/value products, which the counter behind the paper's
  13.96G / 14.08G leaves out. "executed" = what our forward runs (last block pruned).
- FLOPs of one training step (forward + backward) at the paper's batch of 32 tracklets, counted
  on meta tensors (nothing is computed).
Timing: training-mode forward + backward of a batch of B tracklets (bf16 autocast on CUDA).
The IMLP text encoder runs once per step over all identities, whatever B is, so the baseline
with IMLP is counted and timed too: vld / (clip_tap + IMLP) is the overhead of STP alone, whose
goal is at most 1.03 (measured on a GPU; CPU timings are noise). The text pass (all identities'
prompts through the frozen encoder, forward and backward into the prompts) is timed on its own line.
Results go to ``<out>/bench_model_<device>.json`` with the machine described (``--out`` defaults
to a folder outside the checkout, see _common.py; the recorded run is in benchmarks/results/).
"""
import argparse
import copy
import json
import os
import time

import torch
from _common import add_out_argument, machine
from tabulate import tabulate
from torch.utils.flop_counter import FlopCounterMode

from vld_plugin.models import TINY_OPTIONS, create_model

PAPER_BATCH = 32


def count_macs(model, frames):
    """(flop_counter MACs, paper-style MACs) per frame of an eval forward of one tracklet (on CPU:
    on meta tensors the attention products are not reported as ``scaled_dot_product`` ops)."""
    x = torch.zeros(1, *frames)
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)  # grad enabled on purpose: MHA's fused inference path is invisible to the counter
    per_op = counter.get_flop_counts()["Global"]
    total = sum(per_op.values())
    attention = sum(v for op, v in per_op.items() if "scaled_dot_product" in str(op))
    return total / 2 / frames[0], (total - attention) / 2 / frames[0]


def step_loss(out):
    """A scalar that depends on every training output (what the timed and counted steps backprop)."""
    return sum(v.float().mean() for v in out.values())


def count_step_flops(model, batch, frames):
    """FLOPs of one training step (forward + backward) on ``batch`` tracklets."""
    x = torch.zeros(batch, *frames, device="meta")
    model.train()
    with FlopCounterMode(display=False) as counter:
        step_loss(model(x)).backward()
    return counter.get_total_flops()


def counts(model, frames):
    """Table X counts and the training-step FLOPs of a CPU ``model`` (the step on a meta copy)."""
    model.prune_last_block = False
    macs_counter, macs_paper = count_macs(model, frames)
    model.prune_last_block = True
    macs_executed, _ = count_macs(model, frames)
    visual = sum(p.numel() for p in model.visual.parameters())
    stp = (model.hub.numel() if model.hub is not None else 0) + (
        sum(p.numel() for p in model.sta.parameters()) if model.sta is not None else 0)
    return {
        "params_visual_encoder_M": visual / 1e6,
        "params_visual_plus_stp_M": (visual + stp) / 1e6,
        "params_trainable_M": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6,
        "macs_per_frame_G_flop_counter": macs_counter / 1e9,
        "macs_per_frame_G_paper_style": macs_paper / 1e9,
        "macs_per_frame_G_executed": macs_executed / 1e9,
        f"train_step_TFLOP_batch{PAPER_BATCH}":
            count_step_flops(copy.deepcopy(model).to("meta"), PAPER_BATCH, frames) / 1e12,
    }


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
            loss = step_loss(model(x))
        loss.backward()
        model.zero_grad(set_to_none=True)
    return run


def text_pass(model, amp, device):
    def run():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model.text_features().float().sum()
        loss.backward()
        model.zero_grad(set_to_none=True)
    return run


STP_TIME_GOAL = 1.03  # vld / (clip_tap + IMLP), forward + backward, on a GPU


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=0, help="tracklets per step (0: 32 on CUDA, 2 on CPU)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (0: 10 on CUDA, 2 on CPU)")
    parser.add_argument("--num-classes", type=int, default=500, help="identities (HITSZ-VCM: 500)")
    parser.add_argument("--tiny", action="store_true", help="tiny architecture (smoke run)")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batch = args.batch or (PAPER_BATCH if cuda else 2)
    steps = args.steps or (10 if cuda else 2)
    options = dict(TINY_OPTIONS, seq_len=6) if args.tiny else {}
    height, width = options.get("image_size", (288, 144))

    frames = (6, 3, height, width)
    report = {"machine": machine(device), "device": str(device), "input": f"{height}x{width}",
              "seq_len": 6, "batch_tracklets_timed": batch, "num_classes": args.num_classes,
              "amp_bf16": cuda, "tiny": args.tiny}
    models = {}
    for name, switches in (("clip_tap", dict(imlp=False, sth=False, sta=False)),
                           ("clip_tap_imlp", dict(sth=False, sta=False)), ("vld", {})):
        torch.manual_seed(0)
        model = create_model(args.num_classes, None, **options, **switches)
        report[name] = counts(model, frames)
        models[name] = model.to(device).train()
    x = torch.randn(batch, *frames, device=device)
    steps_to_time = {name: train_step(model, x, cuda) for name, model in models.items()}
    steps_to_time["text_pass"] = text_pass(models["vld"], cuda, device)
    times = step_times(steps_to_time, steps, device)
    report["text_pass_s"] = times["text_pass"]
    for name in models:
        report[name]["train_step_s"] = times[name]
    flops = {name: report[name][f"train_step_TFLOP_batch{PAPER_BATCH}"] for name in models}
    report[f"flop_ratio_vld_over_clip_tap_batch{PAPER_BATCH}"] = flops["vld"] / flops["clip_tap"]
    report[f"flop_ratio_stp_vld_over_clip_tap_imlp_batch{PAPER_BATCH}"] = flops["vld"] / flops["clip_tap_imlp"]
    report["time_ratio_vld_over_clip_tap"] = times["vld"] / times["clip_tap"]
    report["time_ratio_stp_vld_over_clip_tap_imlp"] = times["vld"] / times["clip_tap_imlp"]
    report["stp_time_goal"] = STP_TIME_GOAL
    report["stp_time_goal_met"] = report["time_ratio_stp_vld_over_clip_tap_imlp"] <= STP_TIME_GOAL if cuda else None

    path = os.path.join(args.out, f"bench_model_{device.type}.json")
    if not args.tiny:  # the tiny smoke run only prints
        os.makedirs(args.out, exist_ok=True)
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
    columns = ("params_visual_encoder_M", "params_visual_plus_stp_M", "macs_per_frame_G_paper_style",
               "macs_per_frame_G_flop_counter", "macs_per_frame_G_executed",
               f"train_step_TFLOP_batch{PAPER_BATCH}", "train_step_s")
    table = [[name] + [report[name][c] for c in columns] for name in models]
    print(tabulate(table, floatfmt=".3f", headers=[
        "", "visual M", "+STP M", "MACs/frame G\n(paper-style)", "MACs/frame G\n(counter)",
        "MACs/frame G\n(executed)", f"train step TFLOP\n(batch {PAPER_BATCH})", f"train step s\n(batch {batch})"]))
    print(f"FLOPs per training step, batch {PAPER_BATCH}: vld / clip_tap = "
          f"{report[f'flop_ratio_vld_over_clip_tap_batch{PAPER_BATCH}']:.4f}; STP alone, vld / (clip_tap + IMLP) = "
          f"{report[f'flop_ratio_stp_vld_over_clip_tap_imlp_batch{PAPER_BATCH}']:.4f}")
    print(f"measured time, batch {batch} on {device}: vld / clip_tap = {report['time_ratio_vld_over_clip_tap']:.4f}; "
          f"STP alone = {report['time_ratio_stp_vld_over_clip_tap_imlp']:.4f} (goal <= {STP_TIME_GOAL} on a GPU"
          f"{'' if cuda else '; not judged on the CPU'})")
    print(f"IMLP text pass ({args.num_classes} identities, forward + backward): {times['text_pass']:.4f} s "
          f"= {times['text_pass'] / times['vld']:.1%} of a vld step")
    if not args.tiny:
        print(f"written {path}")


if __name__ == "__main__":
    main()
