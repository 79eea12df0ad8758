"""Turn tracklets into re-id features with a trained model, like torchreid's ``FeatureExtractor``.

    from vld_plugin import FeatureExtractor
    extractor = FeatureExtractor("log/vld/config.yaml", "log/vld/checkpoint.pth")
    features = extractor([["a/1.jpg", "a/2.jpg", ...], ["b/1.jpg", ...]])  # (2, D)

Frames are chosen, resized and normalised exactly as the test loaders do (the config's test
sampling, e.g. HITSZ-VCM's first frame of each of ``video.seq_len`` chunks).

A model file ending in ``.onnx`` (written by ``projects/VLD/export.py``) runs under ONNX Runtime
instead of PyTorch, with the same preprocessing and batching: only the forward call differs.
"""
import torch

from .checkpoint import load_model_state, read_weights
from .config import load_config
from .data.base import TrackletView
from .data.frame_sampling import eval_sample_method
from .data.transforms import TrackletTransform, normalize
from .errors import CheckpointError, FeatureInputError


def num_classes_in(state, source):
    """The number of training identities of a model state dict (rows of its classifier weights)."""
    for key, value in state.items():
        if key.endswith("classifier.weight") and value.dim() == 2:
            return int(value.shape[0])
    raise CheckpointError(f"checkpoint {source} has no '*classifier.weight' to tell the number of "
                          "identities from; pass num_classes to FeatureExtractor")


def is_onnx(path):
    """Whether ``path`` names an exported ONNX model (by its suffix)."""
    return str(path).lower().endswith(".onnx")


def onnx_model(path, device, cfg):
    """The exported model ``path`` under ONNX Runtime, checked against the config: frames per tracklet,
    frame size and normalisation must be the ones the file was exported with."""
    from .export import OnnxModel

    model = OnnxModel(path, device)
    expected = (cfg.video.seq_len, cfg.data.height, cfg.data.width)
    if (model.seq_len, model.height, model.width) != expected:
        raise FeatureInputError(
            f"ONNX model {path} takes (B, {model.seq_len}, 3, {model.height}, {model.width}) tracklets but the "
            f"config gives {expected[0]} frames of {expected[1]}x{expected[2]} (video.seq_len, data.height, "
            "data.width); use the config it was exported with")
    normalisation = model.normalisation()
    if normalisation is not None and not all(
            abs(a - b) < 1e-9 for got, cfg_values in zip(normalisation, (cfg.data.norm_mean, cfg.data.norm_std))
            for a, b in zip(got, cfg_values)):
        raise FeatureInputError(
            f"ONNX model {path} was exported for inputs normalised with mean {normalisation[0]} and std "
            f"{normalisation[1]}, but the config has data.norm_mean {list(cfg.data.norm_mean)} and data.norm_std "
            f"{list(cfg.data.norm_std)}; use the config it was exported with")
    return model


class FeatureExtractor:
    """A trained model in eval mode that maps tracklets to (B, D) features.

    Args:
        config_file: the run's YAML config (e.g. ``<save_dir>/config.yaml``); or give ``cfg``.
        model_path: checkpoint to load (ours, an official VLD one, or a plain state dict), or an
            exported ``.onnx`` model (run by ONNX Runtime; needs the ``export`` extra); defaults to
            ``model.load_weights`` of the config.
        opts: config overrides ``[KEY, VALUE, ...]``.
        cfg: a config node used instead of ``config_file`` (``opts`` still apply).
        device: 'auto' (CUDA when available; an ONNX model: the CPU), 'cpu', 'cuda' or 'cuda:N'.
        batch_size: tracklets per forward pass (default ``test.batch_size``).
        num_classes: training identities of the checkpoint (default: read from its classifier).
    """

    def __init__(self, config_file="", model_path="", opts=(), cfg=None, device="auto", batch_size=None,
                 num_classes=None):
        from .launch import build_model

        if cfg is not None:
            cfg = cfg.clone()
            cfg.defrost()
        # every weight comes from the checkpoint: nothing pretrained is loaded or downloaded
        cfg = self.cfg = load_config(config_file, list(opts) + ["model.pretrained", "none"], cfg=cfg)
        model_path = model_path or cfg.model.load_weights
        if not model_path:
            raise CheckpointError("no checkpoint given: pass model_path or set model.load_weights")
        if is_onnx(model_path):
            self.device = torch.device("cpu")  # where the batches are prepared; the session runs on `device`
            self.model = onnx_model(model_path, "cpu" if device == "auto" else device, cfg)
        else:
            state = read_weights(model_path)
            self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                       "cpu" if device == "auto" else device)
            if self.device.type == "cuda" and not torch.cuda.is_available():
                raise FeatureInputError(f"device '{device}' was asked for but CUDA is not available; "
                                        "use device='auto' or 'cpu'")
            model = build_model(cfg, num_classes or num_classes_in(state, model_path))
            load_model_state(model, state, model_path)
            self.model = model.to(self.device).eval()
        self.batch_size = int(batch_size or cfg.test.batch_size)
        self.seq_len = cfg.video.seq_len
        self.sample_method = eval_sample_method(cfg.video.sample_method, override=cfg.video.test_sample_method)
        self.transform = TrackletTransform(cfg.data.height, cfg.data.width, train=False)
        if is_onnx(model_path) and self.sample_method == "all":
            raise FeatureInputError(f"ONNX model {model_path} takes exactly {self.seq_len} frames per tracklet, "
                                    "but the config's test sampling 'all' keeps every frame; set "
                                    "video.test_sample_method to another method (e.g. evenly)")

    def __repr__(self):
        where = f"onnxruntime {self.model.providers[0]}" if is_onnx(getattr(self.model, "path", "")) else \
            f"device={self.device}"
        return (f"FeatureExtractor({self.cfg.model.name}, {self.cfg.data.height}x{self.cfg.data.width}, "
                f"{self.sample_method} x {self.seq_len}, {where})")

    @torch.no_grad()
    def __call__(self, tracklets):
        """Features (B, D), float32 on the CPU, of ``tracklets``: a list of tracklets, each a list
        of image paths, or a tensor (B, T, 3, H, W), uint8 pixels or float already normalised."""
        if torch.is_tensor(tracklets):
            images = self._check_tensor(tracklets)
            batches = (images[i:i + self.batch_size] for i in range(0, len(images), self.batch_size))
        else:
            batches = (batch["img"] for batch in self._loader(tracklets))
        feats = [self._forward(batch) for batch in batches]
        return torch.cat(feats)

    def _forward(self, images):
        images = images.to(self.device)
        if images.dtype == torch.uint8:
            images = normalize(images, self.cfg.data.norm_mean, self.cfg.data.norm_std)
        return self.model(images).float().cpu()

    def _check_tensor(self, images):
        expected = (self.cfg.data.height, self.cfg.data.width)
        t = getattr(self.model, "seq_len", None)
        if images.dim() != 5 or images.shape[2] != 3 or tuple(images.shape[3:]) != expected or \
                (t is not None and images.shape[1] != t) or len(images) == 0:
            frames = t if t is not None else "T"
            raise FeatureInputError(
                f"expected a tensor (B, {frames}, 3, {expected[0]}, {expected[1]}) with B >= 1 "
                f"(video.seq_len, data.height, data.width of the config), got {tuple(images.shape)}")
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise FeatureInputError(f"expected uint8 pixels or float normalised images, got dtype {images.dtype}")
        return images

    def _loader(self, tracklets):
        if isinstance(tracklets, (str, bytes)) or not isinstance(tracklets, (list, tuple)) or not tracklets:
            raise FeatureInputError("expected a non-empty list of tracklets, each a list of image paths, "
                                    f"or a (B, T, 3, H, W) tensor; got {type(tracklets).__name__}")
        for i, paths in enumerate(tracklets):
            if isinstance(paths, str):
                raise FeatureInputError(f"expected a list of tracklets, each a list of image paths, but item {i} is "
                                        "a path; wrap a single tracklet in a list: extractor([paths])")
            if not isinstance(paths, (list, tuple)) or not paths or not all(isinstance(p, str) for p in paths):
                raise FeatureInputError(f"tracklet {i} must be a non-empty list of image paths")
        items = [(tuple(paths), 0, 0, 0) for paths in tracklets]
        view = TrackletView(items, self.seq_len, self.sample_method, self.transform)
        batch_size = 1 if self.sample_method == "all" else self.batch_size  # 'all': lengths differ
        # frames are decoded in this process (one-line errors); each index comes with frame seed 0,
        # so the choice is deterministic and torch's RNG is left alone
        return torch.utils.data.DataLoader(view, batch_size=batch_size, sampler=[(i, 0) for i in range(len(items))])
