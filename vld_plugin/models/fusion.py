"""Temporal fusion of frame features into a tracklet feature (paper Table IV, after TF-CLIP).

Each module maps frame features (B, T, D) to (B, D) and replaces VLD's temporal average
pooling (TAP) of the frames' CLS features:

- ``conv1d``: a depthwise temporal convolution (kernel 3, zero padding) over the frames,
  then the average; light, as Table IV's +0.04M (its exact layer is not published).
- ``transformer``: learned temporal position embeddings, one pre-norm transformer encoder
  layer (D wide, CLIP's heads, 4D feed-forward) across the frames, then the average.
- ``transformer_cls``: the same with a learnable class token in front; its output is the feature.

The position embeddings make the result depend on frame order (TAP does not).
"""
import torch
import torch.nn as nn

from ..errors import ConfigError

FUSIONS = ("none", "conv1d", "transformer", "transformer_cls")


class TemporalConv1d(nn.Module):
    """Depthwise Conv1d over T (kernel 3), then the mean over T; starts as TAP (centre tap 1)."""

    def __init__(self, dim):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel_size=3, padding=1, groups=dim)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        with torch.no_grad():
            self.conv.weight[:, 0, 1] = 1.0

    def forward(self, x):
        return self.conv(x.transpose(1, 2)).mean(2)


class TemporalTransformer(nn.Module):
    """A transformer encoder layer across the T frames; mean of its outputs or its class token."""

    def __init__(self, dim, heads, seq_len, cls_token=False):
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.pos = nn.Parameter(torch.randn(seq_len + int(cls_token), dim) * 0.02)
        self.layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                                batch_first=True, norm_first=True)

    def forward(self, x):
        if self.cls is not None:
            x = torch.cat([self.cls.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        if x.shape[1] != self.pos.shape[0]:
            raise ConfigError(f"temporal fusion was built for {self.pos.shape[0] - int(self.cls is not None)} "
                             f"frames per tracklet (video.seq_len), got {x.shape[1] - int(self.cls is not None)}")
        x = self.layer(x + self.pos.to(x.dtype))
        return x[:, 0] if self.cls is not None else x.mean(1)


def build_fusion(name, dim, heads, seq_len):
    """The fusion module ``name`` (one of ``FUSIONS``) for D = ``dim``; None for 'none' (TAP)."""
    if name not in FUSIONS:
        raise ConfigError(f"vld.temporal_fusion '{name}' is unknown; choose one of {list(FUSIONS)}")
    if name == "none":
        return None
    if name == "conv1d":
        return TemporalConv1d(dim)
    return TemporalTransformer(dim, heads, seq_len, cls_token=name == "transformer_cls")
