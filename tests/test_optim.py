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
    opt = build_optimizer(model, **optimizer_kwargs(cfg))
    assert isinstance(opt, torch.optim.AdamW)
    base, boosted = opt.param_groups
    # the released rule: names containing bias, classifier or prompt_learner (a BNNeck outside a
    # classifier head is not boosted, its bias is)
    assert _names(model, base) == ["backbone.weight", "bnneck.weight", "hub"]
    assert _names(model, boosted) == ["backbone.bias", "bnneck.bias", "classifier.weight", "prompt_learner.cls_ctx"]
    assert base["lr"] == pytest.approx(2.5e-5) and boosted["lr"] == pytest.approx(2.5e-5 * 25)
    assert base["weight_decay"] == boosted["weight_decay"] == pytest.approx(1e-4)
    assert not any(n.startswith("text_encoder") for g in opt.param_groups for n in _names(model, g))


def test_is_boosted_names():
    assert is_boosted("blocks.0.attn.in_proj_bias") and is_boosted("heads.classifier_sta.weight")
    assert is_boosted("bias_free_name_with_bias_inside.weight")  # 'contains', not 'ends with'
    assert not is_boosted("sta.out_proj.weight") and not is_boosted("hub")


def _released_boosted(official_name):
    return any(part in official_name for part in ("bias", "classifier", "prompt_learner"))


def test_vld_boosted_set_equals_released_rule_on_official_names():
    """Every trainable VLD parameter, renamed to the released model's name, is boosted exactly
    when the released rule boosts it (BNNecks inside the classifier heads included)."""
    from vld_plugin.config import load_config
    from vld_plugin.launch import build_model
    from vld_plugin.models.convert import NAME_MAP

    cfg = load_config("configs/vld_demo.yaml")
    model = build_model(cfg, 6)
    to_official = [(ours, theirs) for theirs, ours in NAME_MAP]
    checked = 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        official = next(t + name[len(o):] for o, t in to_official
                        if name == o or (o.endswith(".") and name.startswith(o)))
        assert is_boosted(name) == _released_boosted(official), (name, official)
        checked += 1
    assert checked == sum(p.requires_grad for p in model.parameters())
    boosted = {n for n, p in model.named_parameters() if p.requires_grad and is_boosted(n)}
    assert {"classifier.cls.bnneck.weight", "classifier.sta.bnneck.bias", "prompt_learner.cls_ctx",
            "sta.in_proj_bias"} <= boosted
    assert "hub" not in boosted and "sta.in_proj_weight" not in boosted


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


def _released_lr(base_lr, epoch, recipe_lr=2.5e-5, epochs=24, warmup=3):
    """timm's CosineLRScheduler as the released code configures it, per epoch: warm-up start and
    floor both recipe_lr x 0.01 (absolute, the same for every group), cosine over e / epochs."""
    low = recipe_lr * 0.01
    if epoch < warmup:
        return low + epoch * (base_lr - low) / warmup
    return low + 0.5 * (base_lr - low) * (1 + math.cos(math.pi * epoch / epochs))


def test_warmup_cosine_equals_released_schedule_for_every_parameter():
    from vld_plugin.config import load_config
    from vld_plugin.launch import build_model

    cfg = load_config("", ["model.pretrained", "none", "vld.width", "64", "vld.layers", "2", "vld.heads", "4",
                           "vld.patch_size", "16", "vld.embed_dim", "32", "vld.text_width", "64",
                           "vld.text_layers", "1", "vld.text_heads", "4", "vld.hub_start_block", "0"])
    model = build_model(cfg, 5)
    opt = build_optimizer(model, **optimizer_kwargs(cfg))
    sched = build_lr_scheduler(opt, **lr_scheduler_kwargs(cfg))
    assert isinstance(sched, WarmupCosineLR)
    lr_of = {}
    for group in opt.param_groups:
        for p in group["params"]:
            lr_of[id(p)] = group
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    for epoch in range(24):
        for name, p in named:
            base = 2.5e-5 * (25 if is_boosted(name) else 1)
            assert lr_of[id(p)]["lr"] == pytest.approx(_released_lr(base, epoch), rel=1e-9, abs=0), (name, epoch)
        sched.step()
    # the figures the released schedule gives the x25 group
    boosted = next(g for g in opt.param_groups if g["name"] == "boosted")
    assert _released_lr(6.25e-4, 0) == pytest.approx(2.5e-7)
    assert _released_lr(6.25e-4, 1) == pytest.approx(2.0850e-4, rel=1e-4)
    assert boosted["lr"] == pytest.approx(_released_lr(6.25e-4, 24)) == pytest.approx(2.5e-7)


def test_per_group_floor_switch():
    cfg = get_default_config()
    cfg.train.per_group_lr_floor = True
    opt = build_optimizer(Tiny(), **optimizer_kwargs(cfg))
    sched = build_lr_scheduler(opt, **lr_scheduler_kwargs(cfg))
    lrs = _lrs(sched, opt, 24)
    base = 2.5e-5
    for e, f in enumerate([0.01, 0.34, 0.67]):
        assert lrs[e][0] == pytest.approx(base * f) and lrs[e][1] == pytest.approx(25 * base * f)
    for e in range(3, 24):
        f = 0.01 + 0.99 * (1 + math.cos(math.pi * e / 24)) / 2
        assert lrs[e][0] == pytest.approx(base * f) and lrs[e][1] == pytest.approx(25 * base * f)


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
