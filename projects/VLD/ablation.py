"""The paper's ablations (Tables III-VII) as runs of the training job, gathered in one table.

    python projects/VLD/ablation.py --config-file configs/vld_vcm.yaml --tables III V VI VII [--dry-run] [KEY VALUE ...]

The tables, their rows and the paper's numbers are data: ``ablation_plan.yaml`` beside this file.
Each table row is a set of config overrides on top of the config file and the extra ``KEY VALUE``
pairs. Rows that come to the same effective config (e.g. the full VLD appears in Tables III, V,
VI and VII) share one run. Each run trains and evaluates in its own ``<root>/<run>/`` with
``main.py`` (beside this file) in a subprocess, the very command the plan prints; a run that
finished with the same config is reused unless ``--rerun``. The combined table (paper's numbers
beside ours, infrared-to-visible and visible-to-infrared on the first target) goes to
``<root>/ablation.md`` and ``<root>/ablation.json``. Rows that need a part we lack are listed as
skipped with the reason.
"""
import argparse
import codecs
import collections
import json
import os
import shlex
import subprocess
import sys

import yaml
from tabulate import tabulate

from vld_plugin.config import load_config
from vld_plugin.errors import AblationError, VLDError, one_line

HERE = os.path.dirname(os.path.abspath(__file__))
PLAN = os.path.join(HERE, "ablation_plan.yaml")
MAIN = os.path.join(HERE, "main.py")
PROTOCOLS = ("infrared-to-visible", "visible-to-infrared")
METRICS = ("rank1", "mAP")
# the four numbers of every paper row: I->V R@1, I->V mAP, V->I R@1, V->I mAP (percent)
PAPER_COLUMNS = [(p, m) for p in PROTOCOLS for m in METRICS]
DONE_NAME = "ablation_run.json"  # written into a run's folder when it finished

Row = collections.namedtuple("Row", "table row overrides paper")


def load_plan(path=PLAN):
    """``(tables, default_tables)`` of a plan file: ``{table: [Row, ...]}`` in file order."""
    with open(path) as f:
        plan = yaml.safe_load(f)
    tables = collections.OrderedDict()
    for table, rows in plan["tables"].items():
        tables[str(table)] = [Row(str(table), str(r["name"]), [str(w) for kv in r["overrides"].items() for w in kv],
                                  list(r["paper"])) for r in rows]
    return tables, [str(t) for t in plan["default_tables"]]


TABLES, DEFAULT_TABLES = load_plan()
NAME_KEYS = (("imlp", "imlp"), ("sth", "sth"), ("sta", "sta"), ("hub_start_block", "hub"),
             ("prompt_template", "tpl"))


def run_name(cfg):
    """The folder name of a run, from the settings the ablations vary."""
    parts = [cfg.model.name] + [f"{short}{int(cfg.vld[key])}" for key, short in NAME_KEYS]
    if cfg.vld.temporal_fusion != "none":
        parts.append(cfg.vld.temporal_fusion)
    return "_".join(parts)


def skip_reason(cfg):
    """Why the model of ``cfg`` cannot be built here, or None."""
    if cfg.vld.sth and cfg.vld.layers and cfg.vld.hub_start_block >= cfg.vld.layers:
        return f"vld.hub_start_block {cfg.vld.hub_start_block} needs more than vld.layers {cfg.vld.layers} blocks"
    return None


def select_rows(tables, rows=()):
    """Rows of ``tables`` (names like 'III'), restricted to ``rows`` ('TABLE:ROW') when given."""
    unknown = [t for t in tables if t not in TABLES]
    if unknown:
        raise AblationError(f"unknown table(s) {unknown}; choose from {list(TABLES)}")
    chosen = [row for t in dict.fromkeys(tables) for row in TABLES[t]]
    if not rows:
        return chosen
    names = {f"{r.table}:{r.row}" for r in chosen}
    missing = [r for r in rows if r not in names]
    if missing:
        raise AblationError(f"row(s) {missing} are not in tables {list(tables)}; rows are {sorted(names)}")
    return [r for r in chosen if f"{r.table}:{r.row}" in rows]


def ablation_root(config_file, opts=(), root=""):
    """``root``, or by default ``<data.save_dir>/ablation`` of the config."""
    return root or os.path.join(load_config(config_file, opts).data.save_dir, "ablation")


def build_plan(config_file, tables, opts=(), root="", rows=()):
    """The ablation plan: ``(entries, runs)``.

    ``entries``: one dict per table row (``table``, ``row``, ``overrides``, ``paper``, ``run`` or
    None, ``skipped`` reason or None). ``runs``: ordered ``{run name: {overrides, save_dir, config,
    target}}``, one per distinct effective config, in ``ablation_root(config_file, opts, root)``.
    """
    root = ablation_root(config_file, opts, root)
    entries, runs = [], collections.OrderedDict()
    for row in select_rows(tables, rows):
        cfg = load_config(config_file, list(opts) + row.overrides)
        entry = dict(table=row.table, row=row.row, overrides=row.overrides, paper=row.paper, run=None,
                     skipped=skip_reason(cfg))
        entries.append(entry)
        if entry["skipped"]:
            continue
        name = run_name(cfg)
        save_dir = os.path.join(root, name)
        cfg.defrost()
        cfg.data.save_dir = save_dir
        config = cfg.dump()
        if name in runs and runs[name]["config"] != config:
            raise RuntimeError(f"two different configs map to run name {name}")  # a bug in NAME_KEYS
        runs.setdefault(name, dict(overrides=list(opts) + row.overrides, save_dir=save_dir, config=config,
                                   target=cfg.data.targets[0]))
        entry["run"] = name
    return entries, runs


def command(config_file, run):
    """The training command of a run: exactly what :func:`execute` runs (and the plan prints)."""
    return [sys.executable, os.path.relpath(MAIN), "--config-file", config_file, *run["overrides"],
            "data.save_dir", run["save_dir"]]


def finished(run):
    """True when the run's folder holds a results.json of a finished run with this exact config."""
    path = os.path.join(run["save_dir"], DONE_NAME)
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(run["save_dir"], "results.json")):
        return False
    with open(path) as f:
        return json.load(f).get("config") == run["config"]


def run_streaming(args, env=None):
    """Run ``args``, passing its output through; returns ``(exit code, last non-empty stderr line)``."""
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    for chunk in iter(lambda: proc.stderr.read1(4096), b""):
        text = decoder.decode(chunk)
        sys.stderr.write(text)
        sys.stderr.flush()
        tail = (tail + text)[-4096:]
    lines = [s.strip() for s in tail.replace("\r", "\n").splitlines() if s.strip()]
    return proc.wait(), lines[-1] if lines else ""


def execute(config_file, run):
    """Train and evaluate one run in a subprocess; returns None on success, else a one-line reason."""
    rc, last = run_streaming(command(config_file, run))
    if rc != 0:
        return f"exit code {rc}: {last or 'no message'}"
    if not os.path.isfile(os.path.join(run["save_dir"], "results.json")):
        return "finished without writing results.json"
    with open(os.path.join(run["save_dir"], DONE_NAME), "w") as f:
        json.dump({"config": run["config"], "overrides": run["overrides"]}, f, indent=2)
    return None


def read_results(run):
    """``{protocol: {rank1, mAP, ...}}`` of the run's first target from its results.json."""
    path = os.path.join(run["save_dir"], "results.json")
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise AblationError(f"cannot read {path}: {e}; delete the run's folder and run the ablation again") from None
    if not isinstance(results, dict) or run["target"] not in results:
        raise AblationError(f"{path} has no results for target {run['target']}; delete the run's folder and rerun")
    return results[run["target"]]


def _pct(value):
    return "" if value is None else f"{100 * value:.1f}"


def combined_table(entries):
    """The markdown table of all rows: paper and ours side by side, in percent."""
    headers = ["Table", "Row"]
    for protocol in ("I→V", "V→I"):
        for metric in ("R1", "mAP"):
            headers += [f"{protocol} {metric} paper", f"{protocol} {metric} ours"]
    headers += ["run / note"]
    lines = []
    for e in entries:
        line = [e["table"], e["row"]]
        for (protocol, metric), paper in zip(PAPER_COLUMNS, e["paper"]):
            ours = (e.get("ours") or {}).get(protocol, {}).get(metric)
            line += [f"{paper:.1f}", _pct(ours)]
        if e["skipped"]:
            line.append("skipped: " + e["skipped"])
        else:
            line.append(e["run"] + (f" failed: {e['failed']}" if e.get("failed") else ""))
        lines.append(line)
    return tabulate(lines, headers=headers, tablefmt="github", disable_numparse=True)


def print_plan(config_file, entries, runs):
    """The plan as a table of rows and the command of every distinct run."""
    rows = [[e["table"], e["row"], "skipped: " + e["skipped"] if e["skipped"] else e["run"], " ".join(e["overrides"])]
            for e in entries]
    print(tabulate(rows, headers=["Table", "Row", "run", "overrides"], disable_numparse=True))
    print(f"\n{len(runs)} distinct run(s):")
    for name, run in runs.items():
        state = " (finished, reused)" if finished(run) else ""
        print(f"  {name}{state}: {shlex.join(command(config_file, run))}")


def run_ablation(config_file, tables, opts=(), root="", rows=(), rerun=False):
    """Run every planned run (reusing finished ones unless ``rerun``), then write the combined
    table; returns ``(entries, markdown, md_path, json_path)``. Entries gain ``ours`` (the run's
    metrics per protocol) or ``failed`` (a one-line reason)."""
    root = ablation_root(config_file, opts, root)
    entries, runs = build_plan(config_file, tables, opts, root, rows)
    failures = {}
    for name, run in runs.items():
        if rerun or not finished(run):
            print(f"=> ablation run {name}: {shlex.join(command(config_file, run))}", flush=True)
            failures[name] = execute(config_file, run)
    for e in entries:
        if e["run"] and failures.get(e["run"]):
            e["failed"] = failures[e["run"]]
        elif e["run"]:
            e["ours"] = read_results(runs[e["run"]])
    markdown = combined_table(entries)
    os.makedirs(root, exist_ok=True)
    md_path, json_path = os.path.join(root, "ablation.md"), os.path.join(root, "ablation.json")
    with open(md_path, "w") as f:
        f.write(f"# Ablations ({config_file}{' ' + ' '.join(opts) if opts else ''})\n\n"
                "Percent; paper: the paper's tables (HITSZ-VCM); ours: first target of the config.\n\n")
        f.write(markdown + "\n\n## Commands\n\n")
        f.writelines(f"- `{name}`: `{shlex.join(command(config_file, run))}`\n" for name, run in runs.items())
    with open(json_path, "w") as f:
        json.dump({"config_file": config_file, "opts": list(opts), "rows": entries,
                   "runs": {n: {k: v for k, v in r.items() if k != "config"} for n, r in runs.items()}}, f, indent=2)
    return entries, markdown, md_path, json_path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Run the paper's ablations (Tables III-VII) and write one table.")
    parser.add_argument("--config-file", required=True, help="YAML config the variants start from")
    parser.add_argument("--tables", nargs="+", default=DEFAULT_TABLES, metavar="TABLE",
                        help=f"tables to run, of {list(TABLES)} (default {' '.join(DEFAULT_TABLES)})")
    parser.add_argument("--rows", nargs="+", default=[], metavar="TABLE:ROW", help="only these rows, e.g. III:B VII:1")
    parser.add_argument("--root", default="",
                        help="folder of the runs and the table (default <data.save_dir>/ablation)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, train nothing")
    parser.add_argument("--rerun", action="store_true", help="train again runs that already finished")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="overrides for every run, as KEY VALUE pairs")
    args = parser.parse_args(argv)
    # overrides right after --tables/--rows were taken as names: config keys (with a dot) start them
    for name in ("rows", "tables"):
        values = getattr(args, name)
        cut = next((i for i, v in enumerate(values) if "." in v), len(values))
        setattr(args, name, values[:cut])
        args.opts = values[cut:] + args.opts
    return args


def main(argv=None):
    """The command line; returns the exit code (2: bad arguments or config, 1: a run failed)."""
    args = parse_args(argv)
    try:
        if args.dry_run:
            entries, runs = build_plan(args.config_file, args.tables, args.opts, args.root, args.rows)
            print_plan(args.config_file, entries, runs)
            return 0
        entries, markdown, md_path, json_path = run_ablation(args.config_file, args.tables, args.opts, args.root,
                                                             args.rows, args.rerun)
    except VLDError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    print(markdown)
    print(f"combined table written to {md_path} and {json_path}")
    return 1 if any(e.get("failed") for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
