"""The command-line job behind ``projects/VLD/main.py``: config, seeds, logs, then train or test."""
import argparse
import contextlib
import os
import random
import sys
import time

import numpy as np
import torch

from .config import engine_run_kwargs, load_config

DEMO_HINT = (
    "datasets/README.md says how to obtain and place the data; "
    "or try the synthetic demo: python projects/VLD/main.py --config-file configs/vld_demo.yaml"
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train and evaluate VLD (or a torchreid baseline) on visible-infrared video re-id."
    )
    parser.add_argument("--config-file", default="", help="YAML config (see configs/)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate only (set model.load_weights)")
    parser.add_argument("--resume", default="", metavar="PATH", help="checkpoint to resume training from")
    parser.add_argument("--visrank", action="store_true",
                        help="also write ranked-retrieval and distance-histogram figures (PNG) per protocol")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="overrides as KEY VALUE pairs, e.g. train.lr 1e-5")
    return parser.parse_args(argv)


def set_seed(seed, deterministic=True):
    """Seed Python, NumPy and torch (all devices); ``deterministic`` makes cuDNN pick
    deterministic algorithms (benchmark off), as the released code does."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def prepare_run(args):
    """Load and freeze the config, seed, create the save dir and (on rank 0) write the merged config."""
    opts = list(args.opts)
    if args.eval_only:
        opts += ["test.evaluate", "True"]
    if args.resume:
        opts += ["model.resume", args.resume]
    if args.visrank:
        opts += ["test.visrank", "True"]
    cfg = load_config(args.config_file, opts)
    set_seed(cfg.train.seed, cfg.train.deterministic)
    os.makedirs(cfg.data.save_dir, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        with open(os.path.join(cfg.data.save_dir, "config.yaml"), "w") as f:
            f.write(cfg.dump())
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


@contextlib.contextmanager
def tee_stdout(cfg):
    """Copy everything printed to a timestamped log file in the save dir (rank 0 only)."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    log_name = ("test" if cfg.test.evaluate else "train") + time.strftime("-%Y-%m-%d-%H-%M-%S.log")
    with open(os.path.join(cfg.data.save_dir, log_name), "w") as log:
        console = sys.stdout
        sys.stdout = _Tee(console, log)
        try:
            yield
        finally:
            sys.stdout = console


def build_datamanager(cfg, rank=0, world_size=1):
    """The paired-modality data manager of ``cfg``, generating the synthetic copy first if asked to."""
    from .data import VLDDataManager

    if cfg.data.synthetic:
        from .data.synthetic import ensure_synthetic

        for name in dict.fromkeys(list(cfg.data.sources) + list(cfg.data.targets)):
            ensure_synthetic(name, cfg.data.root, seed=cfg.train.seed)
    return VLDDataManager.from_config(cfg, num_replicas=world_size, rank=rank)


def run(cfg):
    """Build data, model and engine from ``cfg``, then train (resuming if asked) or evaluate."""
    from .distributed import init_distributed, shutdown_distributed

    rank, world_size = init_distributed()
    try:
        return _run(cfg, rank, world_size)
    finally:
        shutdown_distributed()


def _run(cfg, rank, world_size):
    from .checkpoint import load_weights
    from .engine import build_engine
    from .models import build_model_from_config

    datamanager = build_datamanager(cfg, rank, world_size)
    model = build_model_from_config(cfg, datamanager.num_train_pids)
    if cfg.model.load_weights:
        load_weights(model, cfg.model.load_weights)
        print(f"loaded weights from {cfg.model.load_weights}")
    engine = build_engine(cfg, datamanager, model, use_gpu=torch.cuda.is_available())
    kwargs = engine_run_kwargs(cfg)
    if cfg.model.resume and not cfg.test.evaluate:
        kwargs["start_epoch"] = engine.resume(cfg.model.resume)
    return engine.run(**kwargs)


def main(argv=None):
    """Run the job; returns the process exit code (2 for a configuration or missing-data error)."""
    from .errors import DatasetNotFoundError, VLDError, one_line

    args = parse_args(argv)
    try:
        cfg = prepare_run(args)
        with tee_stdout(cfg):
            print(f"config written to {os.path.join(cfg.data.save_dir, 'config.yaml')}")
            run(cfg)
    except VLDError as e:
        hint = f"; {DEMO_HINT}" if isinstance(e, DatasetNotFoundError) else ""
        print(f"error: {one_line(e)}{hint}", file=sys.stderr)
        return e.exit_code
    return 0
