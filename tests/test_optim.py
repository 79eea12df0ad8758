"""Optimizer parameter groups and the warm-up + cosine schedule."""
import math

import pytest
import torch
from torch import nn

from vld_plugin.config import get_default_config, lr_scheduler_kwargs, optimizer_kwargs
from vld_plugin.optim import OptimConfigError, WarmupCosineLR, build_lr_scheduler, build_optimizer, is_boosted

pytestmark = pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)`")


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.hub = nn.Parameter(torch.zeros(2, 4))
        self.prompt_learner = nn.Module()
        self.prompt_learner.cls_ctx = nn.Parameter(torch.zeros(5, 4))
        self.bnneck = nn.BatchNorm1d(4)
        self.classifier = nn.Linear(4, 5, bias=False)
        self.text_encoder = nn.Linear(4, 4)
        self.text_encoder.requires_grad_(False)


def _names(model, group):
    ids = {id(p) for p in group["params"]}
    return sorted(n for n, p in model.named_parameters() if id(p) in ids)


def test_param_groups_and_lr_mult():
    cfg = get_default_config()
    model = Tiny()
    opt = build_optimizer(model, lr_mult=cfg.train.lr_mult, **optimizer_kwargs(cfg))
    assert isinstance(opt, torch.optim.AdamW)
    base, boosted = opt.param_groups
    assert _names(model, base) == ["backbone.weight", "hub"]
    assert _names(model, boosted) == ["backbone.bias", "bnneck.bias", "bnneck.weight", "classifier.weight",
                                      "prompt_learner.cls_ctx"]
    assert base["lr"] == pytest.approx(2.5e-5) and boosted["lr"] == pytest.approx(2.5e-5 * 25)
    assert base["weight_decay"] == boosted["weight_decay"] == pytest.approx(1e-4)
    assert not any(n.startswith("text_encoder") for g in opt.param_groups for n in _names(model, g))


def test_is_boosted_names():
    assert is_boosted("blocks.0.attn.in_proj_bias") and is_boosted("heads.classifier_sta.weight")
    assert not is_boosted("sta.out_proj.weight") and not is_boosted("hub")


def test_unknown_optimizer_and_frozen_model():
    with pytest.raises(OptimConfigError, match="unknown train.optim 'rmsprop'"):
        build_optimizer(Tiny(), optim="rmsprop")
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(OptimConfigError, match="no trainable parameters"):
        build_optimizer(frozen)


def _lrs(sched, opt, epochs):
    out = []
    for _ in range(epochs):
        out.append([g["lr"] for g in opt.param_groups])
        sched.step()
    return out


def test_warmup_cosine_values():
    cfg = get_default_config()
    model = Tiny()
    opt = build_optimizer(model, lr_mult=25.0, **optimizer_kwargs(cfg))
    sched = build_lr_scheduler(opt, **lr_scheduler_kwargs(cfg))
    assert isinstance(sched, WarmupCosineLR)
    lrs = _lrs(sched, opt, 24)
    base = 2.5e-5
    # warm-up: epochs 0, 1, 2 at 0.01, 0.34, 0.67 of the base lr
    for e, f in enumerate([0.01, 0.34, 0.67]):
        assert lrs[e][0] == pytest.approx(base * f) and lrs[e][1] == pytest.approx(25 * base * f)
    for e in range(3, 24):
        f = 0.01 + 0.99 * (1 + math.cos(math.pi * e / 24)) / 2
        assert lrs[e][0] == pytest.approx(base * f)
    assert lrs[23][0] < lrs[3][0] and lrs[23][0] == pytest.approx(base * (0.01 + 0.99 * (1 + math.cos(math.pi * 23 / 24)) / 2))


def test_scheduler_state_dict_roundtrip():
    model = Tiny()
    opt = build_optimizer(model)
    sched = WarmupCosineLR(opt, max_epoch=10)
    for _ in range(4):
        sched.step()
    state = sched.state_dict()
    opt2 = build_optimizer(Tiny())
    sched2 = WarmupCosineLR(opt2, max_epoch=10)
    sched2.load_state_dict(state)
    sched.step()
    sched2.step()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    assert sched2.last_epoch == 5


def test_torchreid_schedulers_and_unknown():
    opt = build_optimizer(Tiny(), optim="sgd", lr=0.1, lr_mult=1.0)
    sched = build_lr_scheduler(opt, lr_scheduler="single_step", stepsize=[2], gamma=0.5)
    assert [round(lrs[0], 6) for lrs in _lrs(sched, opt, 4)] == [0.1, 0.1, 0.05, 0.05]
    with pytest.raises(OptimConfigError, match="unknown train.lr_scheduler"):
        build_lr_scheduler(opt, lr_scheduler="poly")
