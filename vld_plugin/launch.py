"""The command-line job behind ``projects/VLD/main.py``: config, seeds, logs, then train or test.

This is the one place that builds objects from a config (``build_datamanager``, ``build_model``,
``build_engine``, through the translators of ``config.py``); the library takes plain arguments.

Every fault the user can fix ends as one ``error: ...`` line on stderr (and in the run's log)
with the error's exit code (``errors.py``); Ctrl-C and SIGTERM end with a line saying where the
last checkpoint is and the command that resumes from it.
"""
import argparse
import contextlib
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
import torch
import yaml

from .config import (
    engine_kwargs,
    engine_run_kwargs,
    load_config,
    loss_kwargs,
    lr_scheduler_kwargs,
    model_kwargs,
    optimizer_kwargs,
    videodata_kwargs,
)
from .errors import (
    ConfigError,
    DatasetNotFoundError,
    MissingDependencyError,
    OutputError,
    RunInterrupted,
    UsageError,
    VLDError,
    one_line,
)

DEMO_HINT = (
    "datasets/README.md says how to obtain and place the data; "
    "or try the synthetic demo: python projects/VLD/main.py --config-file configs/vld_demo.yaml"
)
EVAL_FOLDER = "eval"  # --eval-only writes into <data.save_dir>/eval, never over the training run's records


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are a UsageError (one line, exit 2) instead of usage text + SystemExit."""

    def error(self, message):
        raise UsageError(f"{message}; run with --help for the options")


def parse_args(argv=None):
    """Flags (in any position, also after the overrides) and ``opts``, the ``KEY VALUE`` overrides."""
    parser = _Parser(
        description="Train and evaluate VLD (or a torchreid baseline) on visible-infrared video re-id. "
                    "Overrides come as KEY VALUE pairs, e.g. train.lr 1e-5; flags may go anywhere."
    )
    parser.add_argument("--config-file", default="", help="YAML config (see configs/)")
    parser.add_argument("--eval-only", action="store_true",
                        help="evaluate trained weights (--resume CK or model.load_weights PATH); "
                             "writes into <data.save_dir>/eval")
    parser.add_argument("--resume", default="", metavar="PATH", help="checkpoint to resume training from")
    parser.add_argument("--visrank", action="store_true",
                        help="also write ranked-retrieval and distance-histogram figures (PNG) per protocol")
    args, opts = parser.parse_known_args(argv)
    flags = [o for o in opts if o.startswith("--")]
    if flags:
        raise UsageError(f"unknown option {flags[0]}; the options are --config-file, --eval-only, --resume, "
                         "--visrank (overrides are KEY VALUE pairs without dashes)")
    args.opts = opts
    return args


def set_seed(seed, deterministic=True):
    """Seed Python, NumPy and torch (all devices); ``deterministic`` makes cuDNN pick
    deterministic algorithms (benchmark off), as the released code does."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def configure_threads(workers):
    """Unless OMP_NUM_THREADS or MKL_NUM_THREADS says otherwise, give torch at most ``cores - workers - 1``
    intra-op threads (at least 1, never more than its default), so compute threads and data-loader
    workers do not oversubscribe the cores; returns the number. (On 2 cores torch's default of 2
    threads made demo epochs 1.1-12x slower than 1 thread whenever anything else wanted a core, and
    1.4x faster only on an idle machine: benchmarks/results/bench_threads.md.)"""
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, min(torch.get_num_threads(), cores - workers - 1))
    torch.set_num_threads(threads)
    return threads


def _rank():
    return int(os.environ.get("RANK", "0"))


def prepare_output_dir(path):
    """Create ``path`` and check that files can be written there; one-line OutputError otherwise."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"data.save_dir {path} is a file, not a folder; set data.save_dir to a folder")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as probe:  # a unique name: ranks may probe at once
            probe.write(b"ok")
    except OSError as e:
        raise OutputError(f"cannot write into data.save_dir {path}: {e.strerror or e}; "
                          "set data.save_dir to a writable folder") from None


def _saved_model_name(save_dir):
    """``model.name`` of the training run whose checkpoint is in ``save_dir``, or None."""
    from .engine import CHECKPOINT_NAME

    config = os.path.join(save_dir, "config.yaml")
    if not (os.path.isfile(os.path.join(save_dir, CHECKPOINT_NAME)) and os.path.isfile(config)):
        return None
    try:
        with open(config) as f:
            return ((yaml.safe_load(f) or {}).get("model") or {}).get("name")
    except (OSError, yaml.YAMLError, AttributeError):
        return None


def prepare_run(args):
    """Load, check and freeze the config, seed, create the save dir and (on rank 0) write the merged config.

    ``--eval-only`` needs weights (``--resume CK`` evaluates CK's) and writes into ``<save_dir>/eval``.
    """
    opts = list(args.opts)
    if args.eval_only:
        opts += ["test.evaluate", "True"]
        if args.resume:
            opts += ["model.load_weights", args.resume]
    elif args.resume:
        opts += ["model.resume", args.resume]
    if args.visrank:
        opts += ["test.visrank", "True"]
    cfg = load_config(args.config_file, opts)
    if cfg.test.evaluate:
        if not cfg.model.load_weights:
            raise ConfigError("--eval-only needs trained weights: add --resume CHECKPOINT or model.load_weights PATH")
        cfg.defrost()
        cfg.data.save_dir = os.path.join(cfg.data.save_dir, EVAL_FOLDER)
        cfg.freeze()
    elif not cfg.model.resume:
        other = _saved_model_name(cfg.data.save_dir)
        if other is not None and other != cfg.model.name:
            raise ConfigError(f"data.save_dir {cfg.data.save_dir} holds a checkpoint of model.name {other}, "
                              f"not {cfg.model.name}; set data.save_dir to another folder")
    if cfg.test.visrank:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise MissingDependencyError("--visrank / test.visrank draws figures with matplotlib, which is not "
                                         "installed: pip install 'vld_plugin[plots]' (or pip install matplotlib)"
                                         ) from None
    set_seed(cfg.train.seed, cfg.train.deterministic)
    configure_threads(cfg.data.workers)
    prepare_output_dir(cfg.data.save_dir)
    if _rank() == 0:
        try:
            with open(os.path.join(cfg.data.save_dir, "config.yaml"), "w") as f:
                f.write(cfg.dump())
        except OSError as e:
            raise OutputError(f"cannot write {cfg.data.save_dir}/config.yaml: {e.strerror}") from None
    return cfg


class _Tee:
    """Writes to the console and a file. (torchreid's ``Logger`` closes the console when it is
    garbage-collected, which breaks any later print in the same process.)"""

    def __init__(self, console, file):
        self.console, self.file = console, file

    def write(self, text):
        self.console.write(text)
        self.file.write(text)

    def flush(self):
        self.console.flush()
        self.file.flush()

    def isatty(self):
        return self.console.isatty()


@contextlib.contextmanager
def tee_stdout(cfg):
    """Copy stdout to a timestamped log file in the save dir and yield the file (rank 0); other
    ranks print nothing on stdout (the config and dataset tables appear once) and yield None."""
    console = sys.stdout
    if _rank() != 0:
        with open(os.devnull, "w") as null:
            sys.stdout = null
            try:
                yield None
            finally:
                sys.stdout = console
        return
    log_name = ("test" if cfg.test.evaluate else "train") + time.strftime("-%Y-%m-%d-%H-%M-%S.log")
    with open(os.path.join(cfg.data.save_dir, log_name), "w") as log:
        sys.stdout = _Tee(console, log)
        try:
            yield log
        finally:
            sys.stdout = console


def report_error(line, log=None):
    """Print ``error: <line>`` on stderr and into the run's log file."""
    print(f"error: {line}", file=sys.stderr)
    if log is not None and not log.closed:
        log.write(f"error: {line}\n")
        log.flush()


def build_datamanager(cfg, rank=0, world_size=1, generate=True, **overrides):
    """The paired-modality data manager of ``cfg`` (keyword ``overrides`` on top), generating the
    synthetic copy first if asked to (``data.synthetic``; never when ``generate`` is False)."""
    from .data import VLDDataManager

    if cfg.data.synthetic and generate:
        from .data.synthetic import ensure_synthetic

        for name in dict.fromkeys(list(cfg.data.sources) + list(cfg.data.targets)):
            ensure_synthetic(name, cfg.data.root, seed=cfg.train.seed)
    return VLDDataManager(**{**videodata_kwargs(cfg), "num_replicas": world_size, "rank": rank, **overrides})


def build_model(cfg, num_classes):
    """The model of ``cfg`` (``model.name``, ``model.pretrained``, the ``vld`` group) for ``num_classes`` ids."""
    from .models import build_model as build

    return build(num_classes=num_classes, **model_kwargs(cfg))


def build_engine(cfg, datamanager, model, use_gpu=None):
    """The engine with the recipe of ``cfg``: optimizer, per-epoch scheduler, VLD loss, AMP and clipping
    (on the GPU when one is available, unless ``use_gpu`` is False)."""
    from .engine import PairedModalityEngine
    from .losses import VLDLoss
    from .optim import build_lr_scheduler, build_optimizer

    use_gpu = torch.cuda.is_available() and use_gpu is not False
    model.to(torch.device("cuda", torch.cuda.current_device()) if use_gpu else "cpu")  # the optimizer's device
    optimizer = build_optimizer(model, **optimizer_kwargs(cfg))
    scheduler = build_lr_scheduler(optimizer, **lr_scheduler_kwargs(cfg))
    return PairedModalityEngine(datamanager, model, optimizer, scheduler, criterion=VLDLoss(**loss_kwargs(cfg)),
                                use_gpu=use_gpu, **engine_kwargs(cfg))


def run(cfg):
    """Build data, model and engine from ``cfg``, then train (resuming if asked) or evaluate."""
    from .distributed import init_distributed, shutdown_distributed

    rank, world_size = init_distributed()
    try:
        return _run(cfg, rank, world_size)
    finally:
        shutdown_distributed()


def _check_free_space(model, save_dir):
    """OutputError before training when ``save_dir`` cannot hold a checkpoint (weights + Adam moments)."""
    need = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    free = shutil.disk_usage(save_dir).free
    if free < need:
        raise OutputError(f"data.save_dir {save_dir} has {free / 2**20:.0f} MB free but a checkpoint needs about "
                          f"{need / 2**20:.0f} MB; free some space or set data.save_dir to another disk")


def _run(cfg, rank, world_size):
    from .checkpoint import load_weights

    datamanager = build_datamanager(cfg, rank, world_size)
    model = build_model(cfg, datamanager.num_train_pids)
    if cfg.model.load_weights:
        load_weights(model, cfg.model.load_weights)
        print(f"loaded weights from {cfg.model.load_weights}")
    if not cfg.test.evaluate and rank == 0:
        _check_free_space(model, cfg.data.save_dir)
    engine = build_engine(cfg, datamanager, model)
    kwargs = engine_run_kwargs(cfg)
    if cfg.model.resume and not cfg.test.evaluate:
        kwargs["start_epoch"] = engine.resume(cfg.model.resume)
        if kwargs["start_epoch"] >= cfg.train.max_epoch:
            print(f"{cfg.model.resume} has finished training (epoch {kwargs['start_epoch']} of train.max_epoch "
                  f"{cfg.train.max_epoch}); nothing to train. Evaluate it with --eval-only --resume "
                  f"{cfg.model.resume}, or raise train.max_epoch to train longer")
            return None
    result = engine.run(**kwargs)
    if rank == 0:
        _print_outputs(cfg)
    return result


def _print_outputs(cfg):
    """Where the run put its files."""
    from .engine import BEST_NAME, CHECKPOINT_NAME

    folder = cfg.data.save_dir
    items = [("checkpoint", CHECKPOINT_NAME), ("best checkpoint (validation)", BEST_NAME),
             ("results", "results.json"), ("config", "config.yaml")]
    lines = [f"  {label}: {os.path.join(folder, name)}" for label, name in items
             if os.path.isfile(os.path.join(folder, name))]
    logs = sorted(n for n in os.listdir(folder) if n.endswith(".log"))
    if logs:
        lines.append(f"  log: {os.path.join(folder, logs[-1])}")
    if any(n.startswith("events.out.tfevents") for n in os.listdir(folder)):
        lines.append(f"  TensorBoard: tensorboard --logdir {folder}")
    print("outputs:\n" + "\n".join(lines))


def _on_sigterm(signum, frame):
    raise RunInterrupted("stopped by SIGTERM")


def interrupted_line(cfg, args, how, started):
    """The line printed when the run (begun at time ``started``) is interrupted: where the last
    checkpoint is and how to resume."""
    from .engine import CHECKPOINT_NAME

    if cfg is None:
        return f"{how} before the run started; nothing was saved"
    if cfg.test.evaluate:
        return f"{how} during evaluation; nothing to resume (run the same command again)"
    path = os.path.join(cfg.data.save_dir, CHECKPOINT_NAME)
    if not (os.path.isfile(path) and os.path.getmtime(path) >= started):
        path = cfg.model.resume  # this run wrote none: the one it resumed from, if any
    if not path:
        return f"{how} before the first epoch ended; nothing to resume (run the same command again)"
    try:
        epoch = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
    except Exception:  # the line must be printed whatever the file holds
        epoch = "?"
    command = ["python", "projects/VLD/main.py"]
    if args.config_file:
        command += ["--config-file", args.config_file]
    command += ["--resume", path] + list(args.opts)
    return (f"{how}; the last checkpoint is {path} (after epoch {epoch} of {cfg.train.max_epoch}); "
            f"resume with: {shlex.join(command)}")


def main(argv=None):
    """Run the job; returns the process exit code (0; 2 for usage and configuration errors; 1 for
    data and runtime faults; 130 / 143 after Ctrl-C / SIGTERM)."""
    cfg, args, rank, started = None, None, _rank(), time.time()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with contextlib.ExitStack() as stack:
            log = None
            try:
                args = parse_args(argv)
                cfg = prepare_run(args)
                log = stack.enter_context(tee_stdout(cfg))
                if rank == 0:
                    print(f"config written to {os.path.join(cfg.data.save_dir, 'config.yaml')}")
                run(cfg)
            except (KeyboardInterrupt, RunInterrupted) as e:
                how = "stopped by Ctrl-C" if isinstance(e, KeyboardInterrupt) else str(e)
                if rank == 0:
                    report_error(interrupted_line(cfg, args, how, started), log)
                return 130 if isinstance(e, KeyboardInterrupt) else e.exit_code
            except VLDError as e:
                hint = f"; {DEMO_HINT}" if isinstance(e, DatasetNotFoundError) else ""
                if isinstance(e, UsageError):  # the same on every rank: printed once
                    if rank == 0:
                        report_error(f"{one_line(e)}{hint}", log)
                else:
                    where = f"rank {rank}: " if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
                    report_error(f"{where}{one_line(e)}", log)
                return e.exit_code
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
