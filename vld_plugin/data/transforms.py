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

class TrackletTransform:
    """Per-tracklet augmentation on uint8 RGB frames (H, W, 3) -> uint8 tensor (T, 3, H, W).

    ``train=False`` only resizes. ``pad`` defaults to the authors' 10 pixels scaled by
    height/288. With ``consistent_geometry`` one crop offset and one flip
    decision serve all frames of a tracklet; otherwise each frame draws its own (the
    authors' per-frame transforms). ``channel_exchange`` is the probability that a visible
    tracklet has one random R/G/B channel copied to all three; ``adaptive_gray`` makes each
    infrared frame a random single channel (3 in 4) or, half of the rest, grayscale
    (OpenCV's 0.299/0.587/0.114 luma).
    """

    def __init__(self, height, width, train, pad=None, crop=True, flip=True, channel_exchange=0.5,
                 adaptive_gray=True, consistent_geometry=False):
        self.height, self.width, self.train = int(height), int(width), bool(train)
        pad = round(10 * self.height / 288) if pad is None else pad  # the authors' 10 px at 288x144, scaled
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
        frames = [f if f.shape[:2] == (self.height, self.width) else cv2.resize(f, size, interpolation=cv2.INTER_LINEAR)
                  for f in frames]
        t, h, w = len(frames), self.height, self.width
        if not self.train:
            return torch.from_numpy(np.stack(frames).transpose(0, 3, 1, 2).copy())
        p = self.pad
        dy, dx = self._draw(rng, 2 * p + 1, t) - p, self._draw(rng, 2 * p + 1, t) - p
        flips = self._draw(rng, 2, t).astype(bool) if self.flip else np.zeros(t, bool)
        channels = self._channels(modality, t, rng)
        out = np.zeros((t, 3, h, w), dtype=np.uint8)
        for i, f in enumerate(frames):
            # output pixel (y, x) of the padded crop is frame pixel (y + dy, x + dx); zero outside the frame
            y0, y1 = max(0, -dy[i]), min(h, h - dy[i])
            x0, x1 = max(0, -dx[i]), min(w, w - dx[i])
            src = f[y0 + dy[i]:y1 + dy[i], x0 + dx[i]:x1 + dx[i]]
            if flips[i]:
                src, x0, x1 = src[:, ::-1], w - x1, w - x0
            if channels[i] is None:
                src = cv2.cvtColor(np.ascontiguousarray(src), cv2.COLOR_RGB2GRAY)[..., None]
                channels[i] = (0, 0, 0)
            for c, k in enumerate(channels[i]):
                out[i, c, y0:y1, x0:x1] = src[..., k]
        return torch.from_numpy(out)

    def _draw(self, rng, high, t):
        """``t`` draws in [0, high), or one draw repeated when geometry is tracklet-consistent."""
        return np.repeat(rng.integers(0, high, 1), t) if self.consistent_geometry else rng.integers(0, high, t)

    def _channels(self, modality, t, rng):
        """Per frame, the source channel of each output channel, or None for grayscale."""
        channels = [(0, 1, 2)] * t
        if modality == VISIBLE and self.channel_exchange > 0 and rng.random() < self.channel_exchange:
            channels = [(int(rng.integers(0, 3)),) * 3] * t
        elif modality == INFRARED and self.adaptive_gray:
            for i, k in enumerate(rng.integers(0, 4, t)):
                if k < 3:
                    channels[i] = (int(k),) * 3
                elif rng.random() < 0.5:
                    channels[i] = None
        return channels


def normalize(img, mean, std):
    """uint8 (..., 3, H, W) -> float normalised by ``mean``/``std`` (given for [0, 1] pixels)."""
    mean = torch.as_tensor(mean, dtype=torch.float32, device=img.device).view(3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=img.device).view(3, 1, 1)
    return img.float().mul_(1.0 / (255.0 * std)).sub_(mean / std)


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
    ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None]) & apply[:, None]
    cols = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])
    mask = (rows[:, :, None] & cols[:, None, :]).view(b, 1 if per_tracklet else t, 1, h, w)
    fill = torch.as_tensor(fill, dtype=img.dtype, device=dev).view(1, 1, c, 1, 1)
    return torch.where(mask, fill, img)
