"""Model builders: ``vld`` and ``clip_tap`` on an open_clip CLIP (:func:`create_model`), and any
torchreid model run frame-wise on tracklets (:func:`build_model`); ``build_vld`` / ``build_clip_tap``
are the entries registered into torchreid's ``build_model``."""
import contextlib
import difflib
import inspect
import os
import urllib.parse

import torch
from torch.utils import model_zoo

from .. import compat
from ..errors import ConfigError, PretrainedWeightsError
from .clip_loader import build_clip, resolve_pretrained
from .frame_wise import frame_wise
from .vld import VLD

# a tiny model of the same architecture (CPU tests and demos); random init only
TINY_OPTIONS = dict(width=64, layers=4, heads=4, patch_size=16, embed_dim=32, text_width=64,
                    text_layers=2, text_heads=4, image_size=(64, 32), hub_start_block=1)


def create_model(num_classes, pretrained=None, clip_name="ViT-B-16-quickgelu", image_size=(288, 144),
                 width=0, layers=0, heads=0, patch_size=0, embed_dim=0, text_width=0, text_layers=0, text_heads=0,
                 **vld_options):
    """A :class:`VLD` on the open_clip CLIP ``clip_name`` at ``image_size`` (H, W).

    Non-zero sizes shrink the CLIP (a tiny model of the same architecture); ``pretrained``:
    'openai', a checkpoint path, or None / 'none' for random init. ``vld_options`` are the
    ``VLD`` constructor's (``seq_len``, ``imlp``, ``sth``, ``sta``, ``hub_start_block``, ...), whose
    defaults are the paper's.
    """
    valid = [p for p in inspect.signature(VLD).parameters if p not in ("clip", "num_classes", "clip_name")]
    unknown = sorted(set(vld_options) - set(valid))
    if unknown:
        raise ConfigError(f"unknown model option(s) {unknown}; valid: {sorted(valid)}")
    clip = build_clip(clip_name, image_size, pretrained, width=width, layers=layers, heads=heads,
                      patch_size=patch_size, embed_dim=embed_dim, text_width=text_width,
                      text_layers=text_layers, text_heads=text_heads)
    return VLD(clip, num_classes, clip_name, **vld_options)


def build_vld(num_classes, loss="softmax", pretrained=True, use_gpu=True, **options):
    """torchreid entry ``vld``: the full model (paper defaults unless ``options`` override).

    ``pretrained``: True -> OpenAI CLIP weights, False -> random init, or a file path. torchreid
    passes ``loss`` and ``use_gpu`` to every builder; a VLD model always returns the training dict
    its losses need, and whoever trains it places it on a device.
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


def build_model(name, num_classes, pretrained=None, **options):
    """The model ``name`` on tracklets (B, T, 3, H, W): the one contract the engine and the feature
    extractor see (training dict in train mode, (B, D) feature in eval mode).

    ``vld`` / ``clip_tap``: :func:`create_model` with ``options``. Any other name is torchreid's
    ``build_model(name, loss='triplet')`` (logits and features for CE + WRT; ImageNet weights unless
    ``pretrained`` means none; a failed download is one line, see :func:`download_errors_as_one_line`)
    made frame-wise with temporal average pooling (:func:`frame_wise`); it takes no ``options``.
    """
    name = check_model_name(name)
    if name in BUILDERS:
        return BUILDERS[name](num_classes, pretrained=pretrained, **options)
    if options:
        raise ConfigError(f"torchreid model {name} takes no model options, got {sorted(options)}")
    use_imagenet = resolve_pretrained(pretrained) is not None
    with download_errors_as_one_line(name) if use_imagenet else contextlib.nullcontext():
        model = compat.models.build_model(name, num_classes, loss="triplet", pretrained=use_imagenet, use_gpu=False)
    return frame_wise(model)


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
