"""Evaluation speed at HITSZ-VCM test size: vld_plugin's evaluate_rank against torchreid's.

One synthetic float32 distance matrix (what the engines produce) of 5,159 queries x 5,643
gallery tracklets (427 identities, 12 cameras, identity-clustered features so the metrics
are not trivial; equal values within a row nudged apart so NumPy's unstable argsort and our
stable tie rule agree), ranked by both implementations in the same run. The script checks
that CMC is identical and mAP equal to 1e-12 (float64 summation order), then writes
bench_eval.json and bench_eval.md to ``--out`` (default outside the checkout, see _common.py;
the recorded run is in benchmarks/results/). Times are wall-clock, with the process's CPU time
beside them (less disturbed by other work on a shared machine). With a GPU, ours is also timed
on CUDA tensors (ranked on the CPU: the time includes the copies).

    python benchmarks/bench_eval.py [--repeats 5] [--out benchmarks/results]
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from _common import add_out_argument, machine

from vld_plugin import compat
from vld_plugin.evaluation import evaluate_rank

NUM_Q, NUM_G, NUM_IDS, NUM_CAMS, DIM = 5159, 5643, 427, 12, 256


def synthetic(seed=0):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, NUM_IDS, NUM_Q), rng.integers(0, NUM_IDS, NUM_G)
    q_camids, g_camids = rng.integers(0, NUM_CAMS, NUM_Q), rng.integers(0, NUM_CAMS, NUM_G)
    centres = rng.standard_normal((NUM_IDS, DIM))
    qf = centres[q_pids] + 2 * rng.standard_normal((NUM_Q, DIM))
    gf = centres[g_pids] + 2 * rng.standard_normal((NUM_G, DIM))
    d = (-(qf @ gf.T)).astype(np.float32)  # inner-product distance
    while True:  # nudge equal values within a row apart
        order = np.argsort(d, axis=1, kind="stable")
        rows, cols = np.nonzero(np.diff(np.take_along_axis(d, order, 1), axis=1) == 0)
        if not len(rows):
            return d, q_pids, g_pids, q_camids, g_camids
        idx = order[rows, cols + 1]
        d[rows, idx] = np.nextafter(d[rows, idx], np.float32(np.inf))


def timed(fn, repeats):
    """``fn()``'s result, and its wall-clock and CPU times (s) over ``repeats`` runs."""
    wall, cpu, out = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return out, wall, cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median reported)")
    add_out_argument(parser)
    args = parser.parse_args(argv)
    stem = os.path.join(args.out, "bench_eval")
    load_at_start = os.getloadavg()

    d, q_pids, g_pids, q_camids, g_camids = synthetic()
    labels = (q_pids, g_pids, q_camids, g_camids)

    ref, (ref_s,), (ref_cpu_s,) = timed(lambda: compat.metrics.evaluate_rank(d, *labels, max_rank=20,
                                                                             use_cython=False), 1)
    ours, *ours_times = timed(lambda: evaluate_rank(d, *labels, max_rank=20), args.repeats)
    cmc_identical = bool(np.array_equal(ours[0], ref[0]))
    map_diff = abs(ours[1] - float(ref[1]))
    if not cmc_identical or map_diff > 1e-12 * max(1.0, float(ref[1])):
        raise SystemExit(f"MISMATCH: cmc identical={cmc_identical}, |mAP diff|={map_diff:.3g}")

    variants = {"ours, CPU": ours_times}
    if torch.cuda.is_available():
        dg = torch.from_numpy(d).cuda()
        glabels = [torch.as_tensor(x, device="cuda") for x in labels]
        evaluate_rank(dg, *glabels)  # warm-up
        variants["ours, CUDA tensors"] = timed(lambda: evaluate_rank(dg, *glabels), args.repeats)[1:]

    result = {
        "benchmark": "evaluate_rank at HITSZ-VCM test size",
        "shape": [NUM_Q, NUM_G], "identities": NUM_IDS, "cameras": NUM_CAMS, "max_rank": 20,
        "machine": {**machine(), "torch_threads": torch.get_num_threads(), "torchreid_layout": compat.LAYOUT,
                    "load_average_at_start": load_at_start},
        "torchreid_evaluate_rank_python_s": ref_s,
        "ours_median_s": {k: statistics.median(w) for k, (w, _) in variants.items()},
        "torchreid_evaluate_rank_python_cpu_s": ref_cpu_s,
        "ours_median_cpu_s": {k: statistics.median(c) for k, (_, c) in variants.items()},
        "speedup_vs_torchreid": {k: ref_s / statistics.median(w) for k, (w, _) in variants.items()},
        "speedup_vs_torchreid_cpu": {k: ref_cpu_s / statistics.median(c) for k, (_, c) in variants.items()},
        "all_times_s": {k: w for k, (w, _) in variants.items()},
        "all_cpu_times_s": {k: c for k, (_, c) in variants.items()},
        "check": {"cmc_identical": cmc_identical, "abs_mAP_diff": map_diff,
                  "rank1": float(ours[0][0]), "mAP": ours[1], "mINP": ours[2]},
    }
    os.makedirs(args.out, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(result, f, indent=2)
    m = result["machine"]
    lines = [
        f"# evaluate_rank at HITSZ-VCM test size ({NUM_Q} x {NUM_G}, {NUM_IDS} ids, {NUM_CAMS} cameras)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), "
        f"load average at start {m['load_average_at_start']}{', GPU ' + m['gpu'] if 'gpu' in m else ''}; "
        f"Python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, torchreid layout {m['torchreid_layout']}.", "",
        "| implementation | time (s) | speed-up | CPU time (s) | speed-up in CPU time |", "|---|---|---|---|---|",
        f"| torchreid evaluate_rank (pure Python) | {ref_s:.2f} | 1x | {ref_cpu_s:.2f} | 1x |",
    ]
    for k, v in result["ours_median_s"].items():
        lines.append(f"| {k} (median of {args.repeats}) | {v:.3f} | {result['speedup_vs_torchreid'][k]:.0f}x | "
                     f"{result['ours_median_cpu_s'][k]:.3f} | {result['speedup_vs_torchreid_cpu'][k]:.0f}x |")
    lines += ["", f"Same numbers: CMC identical = {cmc_identical}, |mAP difference| = {map_diff:.2g} "
                  f"(rank-1 {ours[0][0]:.4f}, mAP {ours[1]:.4f}, mINP {ours[2]:.4f})."]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"written {stem}.json/.md")


if __name__ == "__main__":
    main()
