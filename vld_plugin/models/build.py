"""Builders of ``vld`` and ``clip_tap``: from the plugin config, or through torchreid's
``build_model(name, num_classes, loss, pretrained, use_gpu)``."""
import difflib

from .. import compat
from ..config import get_default_config
from ..errors import ConfigError
from .clip_loader import build_clip
from .vld import VLD

SIZE_KEYS = ("width", "layers", "heads", "patch_size", "embed_dim",
             "text_width", "text_layers", "text_heads")
SWITCH_KEYS = ("imlp", "sth", "sta", "hub_start_block", "prompt_template", "num_ctx",
               "grad_checkpointing")
# a tiny model of the same architecture (CPU tests and demos); random init only
TINY_OPTIONS = dict(width=64, layers=4, heads=4, patch_size=16, embed_dim=32, text_width=64,
                    text_layers=2, text_heads=4, image_size=(64, 32), hub_start_block=1)


def model_options(cfg):
    """The model's keyword options from a plugin config (``vld`` group, input size, seq_len)."""
    opts = {key: cfg.vld[key] for key in ("clip_name", "temporal_fusion") + SIZE_KEYS + SWITCH_KEYS}
    opts.update(image_size=(cfg.data.height, cfg.data.width), seq_len=cfg.video.seq_len)
    return opts


def create_model(num_classes, pretrained=None, **options):
    """A VLD model from ``model_options``-style keywords; ``pretrained``: 'openai', a path, None/'none'."""
    opts = model_options(get_default_config())
    unknown = sorted(set(options) - set(opts))
    if unknown:
        raise ConfigError(f"unknown model option(s) {unknown}; valid: {sorted(opts)}")
    opts.update(options)
    sizes = {key: opts[key] for key in SIZE_KEYS}
    clip = build_clip(opts["clip_name"], opts["image_size"], pretrained, **sizes)
    switches = {key: opts[key] for key in SWITCH_KEYS}
    return VLD(clip, num_classes, opts["clip_name"], seq_len=opts["seq_len"],
               temporal_fusion=opts["temporal_fusion"], **switches)


def build_vld(num_classes, loss="softmax", pretrained=True, use_gpu=True, **options):
    """torchreid entry ``vld``: the full model (paper defaults unless ``options`` override).

    ``pretrained``: True -> OpenAI CLIP weights, False -> random init, or a file path.
    ``loss`` and ``use_gpu`` are accepted for torchreid's signature; the model always returns
    the training dict the VLD losses need, and the engine places it on its device.
    """
    return create_model(num_classes, pretrained, **options)


def build_clip_tap(num_classes, loss="softmax", pretrained=True, use_gpu=True, **options):
    """torchreid entry ``clip_tap``: baseline B, CLIP + temporal average pooling (no IMLP/STH/STA)."""
    options.update(imlp=False, sth=False, sta=False)
    return create_model(num_classes, pretrained, **options)


BUILDERS = {"vld": build_vld, "clip_tap": build_clip_tap}


def build_model_from_config(cfg, num_classes):
    """The model named ``cfg.model.name``.

    ``vld`` / ``clip_tap``: sizes and switches from ``cfg.vld``, weights from ``cfg.model.pretrained``,
    input ``cfg.data.height`` x ``cfg.data.width``, T = ``cfg.video.seq_len``. Any other name is
    built by torchreid's ``build_model`` (``loss='triplet'``, so it returns logits and features for
    CE + WRT; ImageNet weights unless ``model.pretrained`` is ``none``); the engine runs it frame-wise.
    """
    name = cfg.model.name
    if name in BUILDERS:
        return BUILDERS[name](num_classes, pretrained=cfg.model.pretrained, **model_options(cfg))
    factory = compat.model_factory()
    if name not in factory:
        close = difflib.get_close_matches(name, list(factory), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; choose one of {sorted(factory)}"
        raise ConfigError(f"model.name '{name}' is neither a VLD model nor a torchreid model{hint}")
    pretrained = str(cfg.model.pretrained).lower() not in ("none", "", "false")
    return compat.models.build_model(name, num_classes, loss="triplet", pretrained=pretrained, use_gpu=False)
