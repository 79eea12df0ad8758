"""The training recipe's optimizer and learning-rate schedule.

AdamW with two parameter groups: the base learning rate, and ``lr * lr_mult`` for every
parameter whose name contains ``bias``, ``classifier`` (the BNNeck heads included) or
``prompt_learner`` (the released code's x25 rule); weight decay on all of them. Frozen
parameters (``requires_grad=False``, e.g. the CLIP text encoder) are left out. The schedule
is a linear warm-up followed by a cosine decay, stepped once per epoch; as in the released
code (timm's scheduler), the warm-up start and the cosine floor are one absolute value for
every group (``lr * warmup_factor`` and ``lr * min_lr_factor``), unless ``per_group_floor``.
"""
import math

import torch
from torch.optim.lr_scheduler import LRScheduler

from . import compat
from .errors import OptimConfigError

BOOSTED_NAME_PARTS = ("bias", "classifier", "prompt_learner")


def is_boosted(name):
    """True for parameters trained at ``lr * lr_mult``: names containing bias, classifier or prompt_learner."""
    return any(part in name for part in BOOSTED_NAME_PARTS)


def param_groups(model, lr, weight_decay, lr_mult):
    """Parameter groups ``[base, boosted]`` (empty ones dropped) of the trainable parameters."""
    base, boosted = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (boosted if is_boosted(name) else base).append(p)
    groups = [
        {"params": base, "lr": lr, "weight_decay": weight_decay, "name": "base"},
        {"params": boosted, "lr": lr * lr_mult, "weight_decay": weight_decay, "name": "boosted"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise OptimConfigError("the model has no trainable parameters (all have requires_grad=False)")
    return groups


def build_optimizer(model, optim="adamw", lr=2.5e-5, weight_decay=1e-4, lr_mult=25.0, momentum=0.9,
                    sgd_dampening=0.0, sgd_nesterov=False, adam_beta1=0.9, adam_beta2=0.999):
    """The optimizer over ``param_groups``; keyword names follow torchreid's ``build_optimizer`` (+ ``lr_mult``).

    Adam and AdamW use torch's fused kernels when every parameter is on a CUDA device (one kernel
    per step instead of several per parameter; the same update)."""
    groups = param_groups(model, lr, weight_decay, lr_mult)
    fused = all(p.is_cuda for p in model.parameters()) or None  # None: torch's default (foreach)
    if optim in ("adamw", "adam"):
        cls = torch.optim.AdamW if optim == "adamw" else torch.optim.Adam
        return cls(groups, lr=lr, betas=(adam_beta1, adam_beta2), weight_decay=weight_decay, fused=fused)
    if optim == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, dampening=sgd_dampening,
                               nesterov=sgd_nesterov, weight_decay=weight_decay)
    raise OptimConfigError(f"unknown train.optim '{optim}'; choose adamw, adam or sgd")


class WarmupCosineLR(LRScheduler):
    """Per-epoch warm-up + cosine schedule; epoch ``e`` trains group g at ``lr_g(e)``.

    With ``start_g`` the warm-up start and ``floor_g`` the cosine floor of group g (base lr
    ``base_g``): ``lr_g(e) = start_g + (base_g - start_g) * e / warmup_epochs`` for
    ``e < warmup_epochs``, else ``floor_g + (base_g - floor_g) * (1 + cos(pi * e / max_epoch)) / 2``
    (timm's cosine, not shifted by the warm-up). By default ``start_g = lr * warmup_factor`` and
    ``floor_g = lr * min_lr_factor`` for every group, with ``lr`` the recipe's base learning rate
    (the smallest group lr when not given), as the released code; ``per_group_floor=True``
    scales both by each group's own base lr instead.
    """

    def __init__(self, optimizer, max_epoch, warmup_epochs=3, warmup_factor=0.01, min_lr_factor=0.01,
                 lr=None, per_group_floor=False, last_epoch=-1):
        if max_epoch <= 0 or warmup_epochs < 0:
            raise OptimConfigError(f"need train.max_epoch > 0 and train.warmup_epochs >= 0, "
                                   f"got {max_epoch} and {warmup_epochs}")
        self.max_epoch = max_epoch
        self.warmup_epochs = warmup_epochs
        self.warmup_factor = warmup_factor
        self.min_lr_factor = min_lr_factor
        self.lr = lr
        self.per_group_floor = per_group_floor
        super().__init__(optimizer, last_epoch)

    def group_lr(self, base, epoch):
        """Learning rate during ``epoch`` (0-based) of a group whose base lr is ``base``."""
        reference = base if self.per_group_floor else (self.lr if self.lr is not None else min(self.base_lrs))
        if epoch < self.warmup_epochs:
            start = reference * self.warmup_factor
            return start + (base - start) * epoch / self.warmup_epochs
        floor = reference * self.min_lr_factor
        cosine = (1.0 + math.cos(math.pi * min(epoch, self.max_epoch) / self.max_epoch)) / 2.0
        return floor + (base - floor) * cosine

    def get_lr(self):
        return [self.group_lr(base, self.last_epoch) for base in self.base_lrs]


def build_lr_scheduler(optimizer, lr_scheduler="warmup_cosine", stepsize=(20,), gamma=0.1, max_epoch=24,
                       warmup_epochs=3, warmup_factor=0.01, min_lr_factor=0.01, lr=None, per_group_floor=False):
    """``warmup_cosine`` (the recipe) or one of torchreid's (single_step, multi_step, cosine).

    Keyword names follow torchreid's ``build_lr_scheduler`` (+ the warm-up and floor settings).
    """
    if lr_scheduler == "warmup_cosine":
        return WarmupCosineLR(optimizer, max_epoch, warmup_epochs, warmup_factor, min_lr_factor, lr=lr,
                              per_group_floor=per_group_floor)
    if lr_scheduler in ("single_step", "multi_step", "cosine"):
        step = stepsize[0] if lr_scheduler == "single_step" else list(stepsize)
        return compat.optim.build_lr_scheduler(optimizer, lr_scheduler=lr_scheduler, stepsize=step,
                                               gamma=gamma, max_epoch=max_epoch)
    raise OptimConfigError(
        f"unknown train.lr_scheduler '{lr_scheduler}'; choose warmup_cosine, single_step, multi_step or cosine"
    )
