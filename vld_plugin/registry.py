"""Registration of the plugin's datasets and models into torchreid's factories.

Each table maps the name torchreid will know a dataset or model by to the class or builder
itself. Registration is idempotent: torchreid raises on a duplicate dataset name, so names
already bound to our object are skipped.
"""
from tabulate import tabulate

from . import compat
from .data.bupt_campus import BUPTCampus
from .data.hitsz_vcm import HitszVCM
from .errors import VLDError
from .models.build import BUILDERS

VIDEO_DATASETS = {"hitsz_vcm": HitszVCM, "bupt_campus": BUPTCampus}
MODELS = BUILDERS  # vld, clip_tap


def register_all():
    """Register every dataset and model of the plugin into torchreid; safe to call repeatedly."""
    datasets = compat.video_dataset_factory()
    for name, cls in VIDEO_DATASETS.items():
        if datasets.get(name) is not cls:
            if name in datasets:
                raise VLDError(f"torchreid already has a different video dataset named '{name}'")
            compat.data.register_video_dataset(name, cls)
    factory = compat.model_factory()
    for name, fn in MODELS.items():
        if factory.get(name) not in (None, fn):
            raise VLDError(f"torchreid already has a different model named '{name}'")
        factory[name] = fn


def registered():
    """Rows (kind, torchreid name, provider as ``module.name``) of what the plugin registers."""
    def provider(obj):
        return f"{obj.__module__}.{obj.__qualname__}"

    return [("video dataset", n, provider(c)) for n, c in VIDEO_DATASETS.items()] + \
        [("model", n, provider(f)) for n, f in MODELS.items()]


def registry_table():
    """What the plugin registers, as a text table, with whether torchreid sees each name."""
    datasets, factory = compat.video_dataset_factory(), compat.model_factory()
    rows = [(kind, name, provider, "yes" if name in (datasets if kind == "video dataset" else factory) else "no")
            for kind, name, provider in registered()]
    header = f"vld_plugin registrations (torchreid layout: {compat.LAYOUT})\n"
    return header + tabulate(rows, headers=["kind", "name", "provided by", "in torchreid"])
