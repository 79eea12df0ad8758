"""VLD for torchreid: HITSZ-VCM and BUPTCampus datasets, the VLD model, a paired-modality engine.

Importing the package registers everything into torchreid (see ``registry.py``).
"""
from .registry import register_all, registered

__version__ = "0.1.0"

register_all()

from .feature_extractor import FeatureExtractor  # noqa: E402
