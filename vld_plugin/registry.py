"""Registration of the plugin's datasets and models into torchreid's factories.

Each entry names what torchreid will know it by and the ``module:attribute`` that provides
it. Registration is idempotent: torchreid raises on a duplicate dataset name, so names
already bound to our object are skipped.
"""
import importlib

from tabulate import tabulate

from . import compat
from .errors import VLDError

# (torchreid name, "module:attribute")
VIDEO_DATASETS = [
    ("hitsz_vcm", "vld_plugin.data.hitsz_vcm:HitszVCM"),
    ("bupt_campus", "vld_plugin.data.bupt_campus:BUPTCampus"),
]
MODELS = [
    ("vld", "vld_plugin.models:build_vld"),
    ("clip_tap", "vld_plugin.models:build_clip_tap"),
]


def _load(target):
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def register_all():
    """Register every dataset and model of the plugin into torchreid; safe to call repeatedly."""
    datasets = compat.video_dataset_factory()
    for name, target in VIDEO_DATASETS:
        cls = _load(target)
        if datasets.get(name) is not cls:
            if name in datasets:
                raise VLDError(f"torchreid already has a different video dataset named '{name}'")
            compat.data.register_video_dataset(name, cls)
    factory = compat.model_factory()
    for name, target in MODELS:
        fn = _load(target)
        if factory.get(name) not in (None, fn):
            raise VLDError(f"torchreid already has a different model named '{name}'")
        factory[name] = fn


def registered():
    """Rows (kind, torchreid name, provider) of what the plugin registers."""
    return [("video dataset", n, t) for n, t in VIDEO_DATASETS] + [("model", n, t) for n, t in MODELS]


def registry_table():
    """What the plugin registers, as a text table, with whether torchreid sees each name."""
    datasets, factory = compat.video_dataset_factory(), compat.model_factory()
    rows = []
    for kind, name, target in registered():
        seen = name in (datasets if kind == "video dataset" else factory)
        rows.append((kind, name, target, "yes" if seen else "no"))
    header = f"vld_plugin registrations (torchreid layout: {compat.LAYOUT})\n"
    if not rows:
        return header + "(nothing registered yet)"
    return header + tabulate(rows, headers=["kind", "name", "provided by", "in torchreid"])
