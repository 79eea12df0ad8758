"""The demo's epoch time through the CLI beside a busy load: torch's default threads against the launcher's rule.

Starts one ``while True: pass`` process per core, then runs
``projects/VLD/main.py --config-file configs/vld_demo.yaml train.max_epoch E`` with
``OMP_NUM_THREADS=<cores>`` (torch's default) and without it (the launcher caps the threads at
``cores - data.workers - 1``), alternating, and writes the epoch times the runs print.

    python benchmarks/bench_demo_busy.py --out benchmarks/results
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from _common import add_out_argument, cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCH_LINE = re.compile(r"^epoch (\d+)/\d+ .* ([0-9.]+)s \(")


def epoch_times(setting, epochs, iters, root, save_dir):
    """Seconds per epoch printed by one demo run under ``setting`` ('default' or 'ours')."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("MKL_NUM_THREADS", None)
    if setting == "default":
        env["OMP_NUM_THREADS"] = str(os.cpu_count())
    cmd = [sys.executable, os.path.join(REPO, "projects", "VLD", "main.py"), "--config-file",
           os.path.join(REPO, "configs", "vld_demo.yaml"), "train.max_epoch", str(epochs),
           "train.iters_per_epoch", str(iters), "data.root", root, "data.save_dir", save_dir]
    out = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [float(m.group(2)) for m in map(EPOCH_LINE.match, out.splitlines()) if m]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--iters", type=int, default=40, help="iterations per epoch (the demo's 40)")
    parser.add_argument("--repeats", type=int, default=2)
    add_out_argument(parser)
    args = parser.parse_args(argv)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count())]
    runs = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(1, args.repeats + 1):
                for setting in ("default", "ours"):
                    times = epoch_times(setting, args.epochs, args.iters, os.path.join(tmp, "data"),
                                        os.path.join(tmp, f"run-{setting}-{rep}"))
                    runs.append({"setting": setting, "run": rep, "epoch_s": times})
                    print(setting, rep, times, flush=True)
    finally:
        for p in busy:
            p.kill()
    machine = f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end"
    lines = [f"# Demo epoch time beside a busy load ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"Machine: {machine}; {os.cpu_count()} `while True: pass` processes running throughout; "
             f"{args.epochs} epochs of {args.iters} iterations. default = OMP_NUM_THREADS={os.cpu_count()}, "
             "ours = the launcher's thread rule.", "",
             "| setting | run | " + " | ".join(f"epoch {e + 1} s" for e in range(args.epochs)) + " |",
             "|---|---|" + "---|" * args.epochs]
    lines += [f"| {r['setting']} | {r['run']} | " + " | ".join(f"{t:.1f}" for t in r["epoch_s"]) + " |" for r in runs]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bench_demo_busy.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "bench_demo_busy.json"), "w") as f:
        json.dump({"machine": machine, "epochs": args.epochs, "iters": args.iters, "runs": runs}, f, indent=2)
    print(f"written {os.path.join(args.out, 'bench_demo_busy.md')}")


if __name__ == "__main__":
    main()
