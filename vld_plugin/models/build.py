"""Builders of ``vld`` and ``clip_tap``: from the plugin config, or through torchreid's
``build_model(name, num_classes, loss, pretrained, use_gpu)``."""
import contextlib
import difflib
import os
import urllib.parse

import torch
from torch.utils import model_zoo

from .. import compat
from ..config import NO_WEIGHTS, get_default_config
from ..errors import ConfigError, PretrainedWeightsError
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


def check_model_name(name):
    """``name`` if it is a VLD model or in torchreid's model factory, else ConfigError naming the closest."""
    names = set(BUILDERS) | set(compat.model_factory())
    if name not in names:
        close = difflib.get_close_matches(name, sorted(names), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; choose one of {sorted(names)}"
        raise ConfigError(f"model.name '{name}' is neither a VLD model nor a torchreid model{hint}")
    return name


def build_model_from_config(cfg, num_classes):
    """The model named ``cfg.model.name``.

    ``vld`` / ``clip_tap``: sizes and switches from ``cfg.vld``, weights from ``cfg.model.pretrained``,
    input ``cfg.data.height`` x ``cfg.data.width``, T = ``cfg.video.seq_len``. Any other name is
    built by torchreid's ``build_model`` (``loss='triplet'``, so it returns logits and features for
    CE + WRT; ImageNet weights unless ``model.pretrained`` is ``none``;
    a failed download is one line: see :func:`download_errors_as_one_line`); the engine runs it frame-wise.
    """
    name = check_model_name(cfg.model.name)
    if name in BUILDERS:
        return BUILDERS[name](num_classes, pretrained=cfg.model.pretrained, **model_options(cfg))
    pretrained = str(cfg.model.pretrained).strip().lower() not in NO_WEIGHTS
    with download_errors_as_one_line(name) if pretrained else contextlib.nullcontext():
        return compat.models.build_model(name, num_classes, loss="triplet", pretrained=pretrained, use_gpu=False)


@contextlib.contextmanager
def download_errors_as_one_line(name):
    """While torchreid builds model ``name``: its ImageNet weights download (torch's ``load_url``,
    gdown for OSNet) as usual, but a failed download (offline) raises PretrainedWeightsError, one
    line naming the URL and the file to put it in, instead of torchreid's long traceback."""
    def missing(url, path, reason):
        return PretrainedWeightsError(
            f"cannot download the ImageNet weights of torchreid model {name} ({reason}): fetch {url} "
            f"to {path}, or set model.pretrained none for random init")

    def load_url(url, model_dir=None, *args, **kwargs):
        folder = model_dir or os.path.join(torch.hub.get_dir(), "checkpoints")  # where torch caches it
        path = os.path.join(folder, kwargs.get("file_name") or os.path.basename(urllib.parse.urlparse(url).path))
        if os.path.isfile(path):
            return original(url, model_dir, *args, **kwargs)
        try:
            return original(url, model_dir, *args, **kwargs)
        except Exception as e:  # urllib's assorted network errors
            raise missing(url, path, str(e).splitlines()[0] if str(e) else type(e).__name__) from None

    def download(url=None, output=None, *args, **kwargs):  # torchreid calls it only for a missing file
        try:
            result = saved(url, output, *args, **kwargs)
        except Exception as e:  # gdown's assorted network and Drive-quota errors
            raise missing(url, output, str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        if not result:
            raise missing(url, output, "gdown returned nothing")
        return result

    try:
        import gdown
    except ImportError:
        gdown = None
    original, saved = model_zoo.load_url, gdown.download if gdown else None
    model_zoo.load_url = load_url
    if gdown:
        gdown.download = download
    try:
        yield
    finally:
        model_zoo.load_url = original
        if gdown:
            gdown.download = saved
