"""A short training run of the tiny model; under torchrun it is data-parallel (gloo on CPU).

Used by test_distributed.py: ``main(out_path, save_dir)`` trains 2 epochs of 3 global batches,
evaluates after each epoch, and rank 0 saves the final weights and the gathered test features.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakes import FakeDataManager, TinyVideoModel  # noqa: E402

from vld_plugin.distributed import init_distributed, shutdown_distributed  # noqa: E402
from vld_plugin.engine import PairedModalityEngine  # noqa: E402
from vld_plugin.optim import build_optimizer  # noqa: E402


def main(out_path, save_dir):
    rank, world = init_distributed()
    dm = FakeDataManager(augment=False, iters=3, rank=rank, world=world)
    torch.manual_seed(0)
    model = TinyVideoModel(dm.num_train_pids)
    # SGD: its update is proportional to the gradient, so the comparison probes the gradients
    # themselves (Adam would magnify float-rounding differences of near-zero gradients)
    optimizer = build_optimizer(model, optim="sgd", lr=0.05, lr_mult=2.0)
    engine = PairedModalityEngine(dm, model, optimizer, use_gpu=False, amp="off")
    rank1 = engine.run(save_dir=save_dir, max_epoch=2, eval_freq=1, print_freq=100)
    feats, meta = engine.extract(dm.test_loader["fake"]["gallery"])
    if rank == 0:
        torch.save({"model": model.state_dict(), "feats": feats, "pids": torch.from_numpy(meta["pids"]),
                    "rank1": rank1, "world": world}, out_path)
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
