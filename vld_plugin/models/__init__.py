"""Models on tracklets: ``vld`` (CLIP ViT-B/16 + IMLP + STP), ``clip_tap`` (the CLIP baseline) and any
torchreid model run frame-wise."""
from ..errors import PretrainedWeightsError
from .build import TINY_OPTIONS, build_clip_tap, build_model, build_vld, create_model
from .convert import (
    convert_official_state_dict,
    download_official_checkpoint,
    to_official_state_dict,
)
from .frame_wise import frame_wise
from .vld import VLD

__all__ = [
    "VLD", "build_model", "build_vld", "build_clip_tap", "create_model", "frame_wise", "TINY_OPTIONS",
    "PretrainedWeightsError", "convert_official_state_dict", "to_official_state_dict",
    "download_official_checkpoint",
]
