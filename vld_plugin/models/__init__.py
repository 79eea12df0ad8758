"""VLD models: ``vld`` (CLIP ViT-B/16 + IMLP + STP) and ``clip_tap`` (the CLIP baseline)."""
from ..errors import PretrainedWeightsError
from .build import TINY_OPTIONS, build_clip_tap, build_model_from_config, build_vld, create_model, model_options
from .convert import (
    convert_official_state_dict,
    download_official_checkpoint,
    to_official_state_dict,
)
from .vld import VLD

__all__ = [
    "VLD", "build_vld", "build_clip_tap", "build_model_from_config", "create_model",
    "model_options", "TINY_OPTIONS", "PretrainedWeightsError", "convert_official_state_dict",
    "to_official_state_dict", "download_official_checkpoint",
]
