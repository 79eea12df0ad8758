"""Helpers for ``torchrun`` data-parallel training (gloo on CPU, NCCL on GPU)."""
import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader


def init_distributed():
    """Join the process group ``torchrun`` describes in the environment; no-op for a single process.

    Returns ``(rank, world_size)``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return rank_and_world()


def shutdown_distributed():
    """Leave the process group so that the rank exits cleanly (an open gloo group can abort the
    process at interpreter exit); no-op without one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_and_world():
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_autograd(tensor):
    """Every rank's ``tensor`` (the same shape on every rank) concatenated along dim 0 in rank order,
    differentiably: the backward sums what every rank computed for each rank's part into that rank
    (a reduce-scatter)."""
    from torch.distributed import _functional_collectives as collectives

    # torch's autograd all-gather; its name before torch 2.6 was all_gather_tensor_autograd
    gather = getattr(collectives, "all_gather_single_autograd", None) or collectives.all_gather_tensor_autograd
    return gather(tensor.contiguous(), 0, dist.group.WORLD)


def gather_for_loss(outputs, targets):
    """Concatenate every rank's outputs (differentiably) and targets along the batch, in rank order.

    Each rank then computes the loss of the global batch; the all-gather's backward sums the
    gradients of all ranks into each owner (x world_size), which DDP's averaging cancels, so
    the update equals a single process over the global batch.
    """
    gathered = {k: all_gather_autograd(v) for k, v in outputs.items()}
    parts = [torch.empty_like(targets) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, targets)
    return gathered, torch.cat(parts)


def shard_rows(rows, compute):
    """``compute`` over a tensor's rows, shared by the ranks: each rank computes its contiguous share
    and the results are all-gathered differentiably (rows in order). In training under DDP this gives
    every rank's parameters the gradient of the full computation, summed over the ranks' losses,
    which DDP's averaging turns into the single-process gradient. One process: ``compute(rows)``."""
    rank, world = rank_and_world()
    if world == 1:
        return compute(rows)
    n = rows.shape[0]
    per = -(-n // world)
    mine = compute(rows[rank * per:(rank + 1) * per])
    padding = mine.new_zeros((per - mine.shape[0],) + mine.shape[1:])  # equal shares for the all-gather
    return all_gather_autograd(torch.cat([mine, padding]))[:n]


def gather_objects(obj):
    """Every rank's ``obj`` as a list in rank order (``[obj]`` without a process group)."""
    _, world = rank_and_world()
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def shard_loader(loader, rank, world):
    """A loader over this rank's contiguous slice of ``loader``'s dataset (same batch size and collate).

    Concatenating the ranks' results in rank order restores the original order. A loader
    driven by a batch sampler (no fixed ``batch_size``) runs whole on rank 0 (others get no batch).
    """
    if world == 1:
        return loader
    if loader.batch_size is None:
        return loader if rank == 0 else []
    n = len(loader.dataset)
    per = -(-n // world)
    indices = list(range(rank * per, min(n, (rank + 1) * per)))
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=indices, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=False)
