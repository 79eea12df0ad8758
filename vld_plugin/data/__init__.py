"""The plugin's data side: HITSZ-VCM and BUPTCampus datasets, frame sampling, augmentation,
modality-aware samplers, the data manager and synthetic dataset copies."""
from ..errors import DatasetFormatError, DatasetNotFoundError, ImageReadError
from ..modality import Protocol
from .base import Tracklet, TrackletView, VLDVideoDataset, read_frame
from .bupt_campus import BUPTCampus
from .datamanager import VLDDataManager
from .hitsz_vcm import HitszVCM
from .identity_samplers import CameraModalitySampler, ModalityIdentitySampler

__all__ = [
    "DatasetFormatError", "DatasetNotFoundError", "ImageReadError", "Protocol", "Tracklet", "TrackletView",
    "VLDVideoDataset", "read_frame", "BUPTCampus", "HitszVCM", "CameraModalitySampler", "ModalityIdentitySampler",
    "VLDDataManager",
]
