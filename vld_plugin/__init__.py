"""VLD for torchreid: HITSZ-VCM and BUPTCampus datasets, the VLD model, a paired-modality engine.

Importing the package registers everything into torchreid (see ``registry.py``).
"""
from .registry import register_all, registered

__version__ = "0.1.0"
__all__ = ["FeatureExtractor", "register_all", "registered", "__version__"]

register_all()


def __getattr__(name):
    """``vld_plugin.FeatureExtractor``, imported on first use (it pulls in the engine and TensorBoard)."""
    if name == "FeatureExtractor":
        from .feature_extractor import FeatureExtractor

        return FeatureExtractor
    raise AttributeError(f"module 'vld_plugin' has no attribute '{name}'")
