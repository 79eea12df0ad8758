"""The command-line job behind ``projects/VLD/main.py``: config, seeds, logs, then train or test."""
import argparse
import os
import random
import sys
import time

import numpy as np
import torch

from .config import ConfigError, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Train and evaluate VLD (or a torchreid baseline) on visible-infrared video re-id."
    )
    parser.add_argument("--config-file", default="", help="YAML config (see configs/)")
    parser.add_argument("--eval-only", action="store_true", help="evaluate only (set model.load_weights)")
    parser.add_argument("--resume", default="", metavar="PATH", help="checkpoint to resume training from")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="overrides as KEY VALUE pairs, e.g. train.lr 1e-5")
    return parser.parse_args(argv)


def set_seed(seed):
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_run(args):
    """Load and freeze the config, seed, create the save dir, write the config, tee stdout to a log."""
    opts = list(args.opts)
    if args.eval_only:
        opts += ["test.evaluate", "True"]
    if args.resume:
        opts += ["model.resume", args.resume]
    cfg = load_config(args.config_file, opts)
    set_seed(cfg.train.seed)
    os.makedirs(cfg.data.save_dir, exist_ok=True)
    with open(os.path.join(cfg.data.save_dir, "config.yaml"), "w") as f:
        f.write(cfg.dump())
    from .compat import utils

    log_name = ("test" if cfg.test.evaluate else "train") + time.strftime("-%Y-%m-%d-%H-%M-%S.log")
    sys.stdout = utils.Logger(os.path.join(cfg.data.save_dir, log_name))
    return cfg


def main(argv=None):
    """Run the job; returns the process exit code (2 for a configuration error)."""
    args = parse_args(argv)
    try:
        cfg = prepare_run(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"Config written to {os.path.join(cfg.data.save_dir, 'config.yaml')}")
    print("Nothing to run yet: the data, model and engine components are not installed in this version.")
    return 1
