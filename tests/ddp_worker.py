"""A short training run of a tiny model; under torchrun it is data-parallel (gloo on CPU).

Used by test_distributed.py: ``main(out_path, save_dir, model)`` trains 2 epochs of 3 global batches,
evaluates after each epoch, and rank 0 saves the final weights and the gathered test features.
``model``: ``fake`` (``fakes.TinyVideoModel``) or ``vld`` (a tiny VLD with IMLP, STH and STA, whose
text pass each rank shares; its BNNecks are plain linear heads, since batch normalisation over a
rank's half batch is not batch normalisation over the whole batch). Rank 0 also records how many
identities its text encoder encoded.
"""
import sys

import torch
from fakes import DIM, FakeDataManager, H, T, TinyVideoModel, W

from vld_plugin.distributed import init_distributed, shutdown_distributed
from vld_plugin.engine import PairedModalityEngine
from vld_plugin.models import TINY_OPTIONS, create_model
from vld_plugin.optim import build_optimizer


def tiny_vld(num_classes):
    model = create_model(num_classes, None, **dict(TINY_OPTIONS, image_size=(H, W), patch_size=2, seq_len=T))
    for head in model.classifier.values():
        head.bnneck = torch.nn.Identity()
    return model


def main(out_path, save_dir, kind="fake"):
    rank, world = init_distributed()
    dm = FakeDataManager(augment=False, iters=3, rank=rank, world=world)
    torch.manual_seed(0)
    model = TinyVideoModel(dm.num_train_pids) if kind == "fake" else tiny_vld(dm.num_train_pids)
    text_rows = []
    if kind == "vld":
        model.text_encoder.register_forward_hook(lambda module, args, out: text_rows.append(args[0].shape[0]))
    # SGD: its update is proportional to the gradient, so the comparison probes the gradients
    # themselves (Adam would magnify float-rounding differences of near-zero gradients)
    optimizer = build_optimizer(model, optim="sgd", lr=0.05, lr_mult=2.0)
    engine = PairedModalityEngine(dm, model, optimizer, use_gpu=False, amp="off")
    rank1 = engine.run(save_dir=save_dir, max_epoch=2, eval_freq=1, print_freq=100)
    feats, meta = engine.extract(dm.test_loader["fake"]["gallery"])
    if rank == 0:
        torch.save({"model": model.state_dict(), "feats": feats, "pids": torch.from_numpy(meta["pids"]),
                    "rank1": rank1, "world": world, "text_rows": text_rows, "dim": DIM}, out_path)
    shutdown_distributed()


if __name__ == "__main__":
    main(*sys.argv[1:])
