"""Demo epoch time against torch's intra-op threads x data-loader workers, idle and under load.

    python benchmarks/bench_threads.py [--threads default 1] [--workers 0 1 2] [--loads idle busy]
                                       [--repeats 2] [--epochs 2] [--iters 3] [--out benchmarks/results]

Each run is a fresh process that trains the demo (configs/vld_demo.yaml: tiny VLD on the
synthetic HITSZ-VCM copy, CPU) for ``--epochs`` epochs of ``--iters`` iterations through the
engine's own ``train``, with ``data.workers`` set and, unless the setting is ``default``,
``torch.set_num_threads(N)`` (``default``: OMP_NUM_THREADS unset, torch's own choice: one thread
per core, so on 2 cores ``default`` is 2 and ``--threads default 1`` covers both). The first
epoch includes starting the persistent loader workers; the later ones are the steady epoch time.
The table also gives the steady epoch scaled to the demo's 40 iterations. The defaults (3
iterations per epoch instead of the demo's 40, 2 runs per setting) keep a measurement on 2 cores
near 10 minutes: with 2 torch threads beside a busy machine one iteration takes seconds.
``busy``: one ``while True: pass`` process per core runs beside the training (started and
killed here). Settings run interleaved (A B C A B C ...) so that load from other users hits all
alike; the table gives medians over ``--repeats`` and the load averages seen. Writes
bench_threads.json and bench_threads.md to ``--out`` (default outside the checkout, see _common.py).
"""
import argparse
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from _common import add_out_argument, cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def demo_config(root, workers, iters, epochs, save_dir):
    """The demo config with the data in ``root`` and the run's overrides."""
    from vld_plugin.config import load_config

    return load_config(DEMO, ["data.root", root, "data.workers", str(workers), "train.iters_per_epoch", str(iters),
                              "train.max_epoch", str(epochs), "test.eval_freq", "0", "data.save_dir", save_dir])


def child(args):
    """One run: train the demo for ``args.epochs`` epochs; print the epoch times as one JSON line."""
    import torch

    from vld_plugin.launch import build_datamanager, build_engine, build_model, set_seed

    if args.child_threads != "default":
        torch.set_num_threads(int(args.child_threads))
    with tempfile.TemporaryDirectory() as save_dir:
        cfg = demo_config(args.data_root, args.child_workers, args.iters, args.epochs, save_dir)
        set_seed(cfg.train.seed, cfg.train.deterministic)
        dm = build_datamanager(cfg)
        engine = build_engine(cfg, dm, build_model(cfg, dm.num_train_pids), use_gpu=False)
        engine.max_epoch, times = args.epochs, []
        for engine.epoch in range(args.epochs):
            start = time.perf_counter()
            engine.train(print_freq=cfg.train.print_freq)
            times.append(time.perf_counter() - start)
    print(json.dumps({"epoch_s": times, "torch_threads": torch.get_num_threads()}))


def loadavg():
    """The 1, 5 and 15-minute load averages, as ``uptime`` prints them."""
    return [round(x, 2) for x in os.getloadavg()]


def busy_ticks():
    """CPU time the whole machine has spent busy so far (clock ticks, from /proc/stat)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return user + nice + system + irq + softirq + steal


def proc_ticks(pid):
    """CPU time of process ``pid`` so far (clock ticks, user + system)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start_load(n):
    """``n`` busy-looping Python processes (one per core keeps the machine busy)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_load(procs):
    for p in procs:
        p.kill()
        p.wait()


def run_once(args, threads, workers, load_procs=()):
    """Time one run in a fresh process; returns its JSON record plus the 1-minute load average at start
    and the CPU (in cores) that other users' processes took during the run."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    load = os.getloadavg()[0]
    hz = os.sysconf("SC_CLK_TCK")
    ticks = busy_ticks() - sum(proc_ticks(p.pid) for p in load_procs)
    ours = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--child-threads", threads, "--child-workers",
           str(workers), "--data-root", args.data_root, "--iters", str(args.iters), "--epochs", str(args.epochs)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"run {threads} threads, {workers} workers failed:\n{proc.stderr[-3000:]}")
    wall = time.perf_counter() - start
    ticks = busy_ticks() - sum(proc_ticks(p.pid) for p in load_procs) - ticks
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = used.ru_utime + used.ru_stime - ours.ru_utime - ours.ru_stime  # the run and its loader workers
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    record.update(loadavg_1min_at_start=load, run_s=wall, others_cpu_cores=max(0.0, ticks / hz - ours) / wall)
    return record


def summarise(runs, settings, loads, epochs):
    """Median first / steady epoch seconds per (load, threads, workers)."""
    rows = []
    for load in loads:
        for threads, workers in settings:
            mine = [r for r in runs if r["load"] == load and r["threads"] == threads and r["workers"] == workers]
            steady = ([statistics.mean(r["epoch_s"][1:]) for r in mine] if epochs > 1
                      else [r["epoch_s"][0] for r in mine])
            rows.append({"load": load, "threads": threads, "torch_threads": mine[0]["torch_threads"],
                         "workers": workers, "runs": len(mine),
                         "steady_epoch_s_median": statistics.median(steady), "steady_epoch_s_all": steady,
                         "first_epoch_s_median": statistics.median(r["epoch_s"][0] for r in mine),
                         "loadavg_1min_mean": statistics.mean(r["loadavg_1min_at_start"] for r in mine),
                         "others_cpu_cores_mean": statistics.mean(r["others_cpu_cores"] for r in mine)})
    for load in loads:
        best = min(r["steady_epoch_s_median"] for r in rows if r["load"] == load)
        for r in rows:
            if r["load"] == load:
                r["vs_best"] = r["steady_epoch_s_median"] / best
    return rows


def markdown(report):
    m = report["machine"]
    lines = [f"# Demo epoch time: torch threads x loader workers ({m['cores']} cores)", "",
             f"Machine: {m['cpu']}, {m['cores']} cores (nproc), Python {m['python']}, torch {m['torch']}; torch's "
             f"default here is {m['torch_default_threads']} intra-op threads. Load averages (uptime, 1/5/15 min): "
             f"{m['loadavg_start']} at the start, {m['loadavg_end']} at the end (other users' jobs run too).", "",
             f"Demo config (configs/vld_demo.yaml), {report['epochs']} epochs of {report['iters']} iterations "
             f"(the demo's own: 40) per run, each run a fresh process; settings interleaved, "
             f"{report['repeats']} runs each. Steady epoch = mean of epochs 2..{report['epochs']} of a run "
             "(epoch 1 also starts the loader workers). idle = no load added here; busy = one `while True: pass` "
             "process per core beside it. Other users' jobs may run too: the load average at the start of a run "
             "(which counts this script's processes) and the CPU that other processes took during it (cores; "
             "machine busy time from /proc/stat less this run's and the busy loops' own) say how much.", "",
             "| load | torch threads | workers | steady epoch s (median) | per 40-iteration epoch s | vs best | "
             "all runs | first epoch s | load avg 1 min | others' CPU (cores) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        threads = r["threads"] if r["threads"] != "default" else f"default ({r['torch_threads']})"
        lines.append(f"| {r['load']} | {threads} | {r['workers']} | {r['steady_epoch_s_median']:.2f} | "
                     f"{r['steady_epoch_s_median'] * 40 / report['iters']:.1f} | {r['vs_best']:.2f}x | "
                     f"{', '.join(f'{s:.2f}' for s in r['steady_epoch_s_all'])} | "
                     f"{r['first_epoch_s_median']:.2f} | {r['loadavg_1min_mean']:.2f} | "
                     f"{r['others_cpu_cores_mean']:.2f} |")
    lines += ["", f"Total {report['total_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", default=["default", "1"],
                        help="torch.set_num_threads values ('default': leave torch's choice)")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2], help="data.workers values")
    parser.add_argument("--loads", nargs="+", choices=["idle", "busy"], default=["idle", "busy"])
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting (median reported)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (the first is reported apart)")
    parser.add_argument("--iters", type=int, default=3, help="train.iters_per_epoch (the demo's: 40)")
    parser.add_argument("--data-root", default="", help="synthetic copy to reuse (default: a temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--child-workers", type=int, default=0, help=argparse.SUPPRESS)
    add_out_argument(parser)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    import torch

    from vld_plugin.data.synthetic import ensure_synthetic

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a kill still stops the load processes

    start, tmp = time.perf_counter(), None
    if not args.data_root:
        tmp = tempfile.TemporaryDirectory(prefix="bench_threads_")
        args.data_root = tmp.name
    ensure_synthetic("hitsz_vcm", args.data_root, seed=demo_config(args.data_root, 0, 1, 1, "").train.seed)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = {"cpu": cpu_model(), "cores": cores, "python": platform.python_version(), "torch": torch.__version__,
               "torch_default_threads": torch.get_num_threads(), "loadavg_start": loadavg()}
    settings = [(t, w) for t in args.threads for w in args.workers]
    runs = []
    try:
        for repeat in range(args.repeats):
            for load in args.loads:
                procs = start_load(cores) if load == "busy" else []
                try:
                    for threads, workers in settings:
                        record = run_once(args, threads, workers, procs)
                        record.update(load=load, threads=threads, workers=workers, repeat=repeat)
                        runs.append(record)
                        print(f"[{repeat + 1}/{args.repeats}] {load:4} threads {threads:7} workers {workers}: "
                              f"epochs {', '.join(f'{s:.2f}' for s in record['epoch_s'])} s "
                              f"(load {record['loadavg_1min_at_start']:.2f}, others' CPU "
                              f"{record['others_cpu_cores']:.2f} cores)", flush=True)
                finally:
                    stop_load(procs)
    finally:
        if tmp is not None:
            tmp.cleanup()
    machine["loadavg_end"] = loadavg()
    report = {"benchmark": "demo epoch time vs torch threads x loader workers", "machine": machine,
              "epochs": args.epochs, "iters": args.iters, "repeats": args.repeats,
              "rows": summarise(runs, settings, args.loads, args.epochs), "runs": runs,
              "total_s": time.perf_counter() - start}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "bench_threads")
    with open(stem + ".json", "w") as f:
        json.dump(report, f, indent=2)
    text = markdown(report)
    with open(stem + ".md", "w") as f:
        f.write(text)
    print(text + f"written {stem}.json/.md")


if __name__ == "__main__":
    main()
