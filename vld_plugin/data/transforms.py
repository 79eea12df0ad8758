"""The method's augmentation, split in two for speed.

In the data-loader workers, :class:`TrackletTransform` turns decoded uint8 frames into a
uint8 (T, 3, H, W) tensor: resize, zero-pad + random crop, horizontal flip, channel
exchange (visible) and adaptive gray (infrared). On the device, :func:`normalize` and
:func:`random_erase` finish the batch in float. Channel operations run on uint8 pixels
before normalisation (the authors' run after it; the copied channel is then normalised
with each channel's own mean/std, a negligible difference).
"""
import cv2
import numpy as np
import torch

from ..modality import INFRARED, VISIBLE

GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class TrackletTransform:
    """Per-tracklet augmentation on uint8 RGB frames (H, W, 3) -> uint8 tensor (T, 3, H, W).

    ``train=False`` only resizes. With ``consistent_geometry`` one crop offset and one flip
    decision serve all frames of a tracklet; otherwise each frame draws its own (the
    authors' per-frame transforms). ``channel_exchange`` is the probability that a visible
    tracklet has one random R/G/B channel copied to all three; ``adaptive_gray`` makes each
    infrared frame a random single channel (3 in 4) or, half of the rest, grayscale.
    """

    def __init__(self, height, width, train, pad=10, crop=True, flip=True, channel_exchange=0.5,
                 adaptive_gray=True, consistent_geometry=False):
        self.height, self.width, self.train = int(height), int(width), bool(train)
        self.pad = int(pad) if crop else 0
        self.flip = flip
        self.channel_exchange = float(channel_exchange)
        self.adaptive_gray = adaptive_gray
        self.consistent_geometry = consistent_geometry

    def __repr__(self):
        return (f"TrackletTransform({self.height}x{self.width}, train={self.train}, pad={self.pad}, "
                f"flip={self.flip}, channel_exchange={self.channel_exchange}, "
                f"adaptive_gray={self.adaptive_gray}, consistent_geometry={self.consistent_geometry})")

    def __call__(self, frames, modality, rng):
        size = (self.width, self.height)
        out = np.stack([f if f.shape[:2] == (self.height, self.width)
                        else cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])
        if self.train:
            out = self._augment(out, modality, rng)
        return torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))

    def _draw(self, rng, high, t):
        """``t`` draws in [0, high), or one draw repeated when geometry is tracklet-consistent."""
        return np.repeat(rng.integers(0, high, 1), t) if self.consistent_geometry else rng.integers(0, high, t)

    def _augment(self, out, modality, rng):
        t, h, w = out.shape[:3]
        if self.pad:
            p = self.pad
            padded = np.zeros((t, h + 2 * p, w + 2 * p, 3), dtype=np.uint8)
            padded[:, p:p + h, p:p + w] = out
            dy, dx = self._draw(rng, 2 * p + 1, t), self._draw(rng, 2 * p + 1, t)
            out = np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(t)])
        if self.flip:
            flips = self._draw(rng, 2, t).astype(bool)
            out[flips] = out[flips, :, ::-1]
        if modality == VISIBLE and self.channel_exchange > 0 and rng.random() < self.channel_exchange:
            c = rng.integers(0, 3)
            out[...] = out[..., c:c + 1]
        elif modality == INFRARED and self.adaptive_gray:
            for i, k in enumerate(rng.integers(0, 4, t)):
                if k < 3:
                    out[i] = out[i, ..., k:k + 1]
                elif rng.random() < 0.5:
                    out[i] = np.rint(out[i].astype(np.float32) @ GRAY_WEIGHTS)[..., None].astype(np.uint8)
        return out


def normalize(img, mean, std):
    """uint8 (..., 3, H, W) -> float normalised by ``mean``/``std`` (given for [0, 1] pixels)."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=img.device).view(3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=img.device).view(3, 1, 1)
    return (img.float() / 255.0 - mean) / std


def random_erase(img, fill, p=0.5, area=(0.02, 0.4), aspect=0.3, attempts=100, per_tracklet=False):
    """Random erasing of Zhong et al., batched: img (B, T, 3, H, W) float, erased in place-free.

    Each frame (each tracklet if ``per_tracklet``) is erased with probability ``p`` by one
    rectangle of area fraction U(area) and aspect U(aspect, 1/aspect), the first of
    ``attempts`` draws that fits, filled with ``fill`` (3 values, the authors' normalised
    mean). Returns a new tensor.
    """
    b, t, c, h, w = img.shape
    n = b if per_tracklet else b * t
    dev = img.device
    target = torch.empty(n, attempts, device=dev).uniform_(*area) * (h * w)
    ratio = torch.empty(n, attempts, device=dev).uniform_(aspect, 1.0 / aspect)
    eh = torch.round(torch.sqrt(target * ratio)).long()
    ew = torch.round(torch.sqrt(target / ratio)).long()
    fits = (eh < h) & (ew < w)
    first = fits.long().argmax(dim=1, keepdim=True)
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    apply = fits.any(dim=1) & (torch.rand(n, device=dev) < p)
    y0 = (torch.rand(n, device=dev) * (h - eh + 1)).long()
    x0 = (torch.rand(n, device=dev) * (w - ew + 1)).long()
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    mask = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1))
            & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1)) & apply.view(-1, 1, 1))
    mask = mask.view(b, 1, 1, h, w) if per_tracklet else mask.view(b, t, 1, h, w)
    fill = torch.as_tensor(fill, dtype=img.dtype, device=dev).view(1, 1, c, 1, 1)
    return torch.where(mask, fill, img)
