"""The one place that knows where torchreid keeps its submodules.

torchreid from PyPI (0.2.5) nests the library under ``torchreid.reid.*``; a source
install (1.4.0, ``python setup.py develop``) exposes it as ``torchreid.*``. Every other
module of the plugin imports torchreid only through the names defined here::

    from vld_plugin.compat import data, models, engine
"""
import importlib
import importlib.util
import warnings

from .errors import MissingDependencyError

SUBMODULES = ("data", "models", "engine", "losses", "metrics", "optim", "utils")


def _detect_prefix():
    try:
        with warnings.catch_warnings():
            # torchreid from PyPI warns at import that its Cython ranking is missing; the
            # plugin ranks with its own vectorised evaluation, so the warning is noise.
            warnings.filterwarnings("ignore", message="Cython evaluation", category=UserWarning)
            pypi = importlib.util.find_spec("torchreid.reid") is not None
    except ModuleNotFoundError as e:
        if e.name != "torchreid":
            raise  # torchreid is there but one of its own dependencies is missing
        raise MissingDependencyError(
            "torchreid is not installed: run `pip install torchreid==0.2.5` "
            "(or install it from source)"
        ) from None
    return "torchreid.reid" if pypi else "torchreid"


PREFIX = _detect_prefix()
LAYOUT = "pypi" if PREFIX == "torchreid.reid" else "source"


def import_module(name):
    """Import torchreid's submodule ``name`` (e.g. ``"data.datamanager"``) in either layout."""
    return importlib.import_module(f"{PREFIX}.{name}")


data = import_module("data")
models = import_module("models")
engine = import_module("engine")
losses = import_module("losses")
metrics = import_module("metrics")
optim = import_module("optim")
utils = import_module("utils")


def model_factory():
    """torchreid's model-name -> constructor dict, which ``build_model`` looks names up in."""
    return vars(models)["__model_factory"]


def video_dataset_factory():
    """torchreid's dataset-name -> class dict for video datasets."""
    return vars(import_module("data.datasets"))["__video_datasets"]
