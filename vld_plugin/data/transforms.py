"""The method's augmentation, split between the data-loader workers and the device.

In the workers, :class:`TrackletTransform` turns a tracklet's decoded PIL frames into a
uint8 (T, 3, H, W) tensor: PIL bilinear resize (antialiased, as torchvision's ``Resize`` on
a PIL image), then in training zero-pad + random crop and horizontal flip. On the device,
batched over (B, T, 3, H, W): :func:`normalize` (equal to ToTensor + Normalize up to float
rounding), then in training :func:`random_erase` with :data:`ERASE_FILL` and
:func:`channel_augment` (channel exchange for visible, adaptive gray for infrared) on the
normalised values: the authors' per-frame order.
"""
import numpy as np
import torch
from PIL import Image

from ..modality import INFRARED, VISIBLE

ERASE_FILL = (0.4914, 0.4822, 0.4465)  # the authors' erasing values, written into normalised tensors
GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # adaptive gray's R, G, B weights


class TrackletTransform:
    """Per-tracklet worker augmentation: PIL RGB frames -> uint8 tensor (T, 3, H, W).

    Frames are resized to ``height`` x ``width`` (PIL bilinear); ``train=False`` stops there.
    ``pad`` defaults to the authors' 10 pixels scaled by height/288. With
    ``consistent_geometry`` one crop offset and one flip decision serve all frames of a
    tracklet; otherwise each frame draws its own (the authors' per-frame transforms).
    """

    def __init__(self, height, width, train, pad=None, crop=True, flip=True, consistent_geometry=False):
        self.height, self.width, self.train = int(height), int(width), bool(train)
        pad = round(10 * self.height / 288) if pad is None else pad  # the authors' 10 px at 288x144, scaled
        self.pad = int(pad) if crop else 0
        self.flip = flip
        self.consistent_geometry = consistent_geometry

    def __repr__(self):
        return (f"TrackletTransform({self.height}x{self.width}, train={self.train}, pad={self.pad}, "
                f"flip={self.flip}, consistent_geometry={self.consistent_geometry})")

    def __call__(self, frames, rng):
        size = (self.width, self.height)
        frames = [np.asarray(f if f.size == size else f.resize(size, Image.BILINEAR)) for f in frames]
        t, h, w = len(frames), self.height, self.width
        if not self.train:
            return torch.from_numpy(np.stack([f.transpose(2, 0, 1) for f in frames]))
        p = self.pad
        dy, dx = self._draw(rng, 2 * p + 1, t) - p, self._draw(rng, 2 * p + 1, t) - p
        flips = self._draw(rng, 2, t).astype(bool) if self.flip else np.zeros(t, bool)
        out = np.zeros((t, 3, h, w), dtype=np.uint8)
        for i, f in enumerate(frames):
            # output pixel (y, x) of the padded crop is frame pixel (y + dy, x + dx); zero outside the frame
            y0, y1 = max(0, -dy[i]), min(h, h - dy[i])
            x0, x1 = max(0, -dx[i]), min(w, w - dx[i])
            src = f[y0 + dy[i]:y1 + dy[i], x0 + dx[i]:x1 + dx[i]]
            if flips[i]:
                src, x0, x1 = src[:, ::-1], w - x1, w - x0
            out[i, :, y0:y1, x0:x1] = src.transpose(2, 0, 1)
        return torch.from_numpy(out)

    def _draw(self, rng, high, t):
        """``t`` draws in [0, high), or one draw repeated when geometry is tracklet-consistent."""
        return np.repeat(rng.integers(0, high, 1), t) if self.consistent_geometry else rng.integers(0, high, t)


def normalize(img, mean, std):
    """uint8 (..., 3, H, W) -> float normalised by ``mean``/``std`` (given for [0, 1] pixels).

    Channel by channel with Python scalars: no constant tensor is copied to the device (on a GPU
    such a copy waits for the device)."""
    out = img.float()
    for c in range(3):
        out[..., c, :, :].mul_(1.0 / (255.0 * std[c])).sub_(mean[c] / std[c])
    return out


def random_erase(img, fill, p=0.5, area=(0.02, 0.4), aspect=0.3, attempts=100, per_tracklet=False):
    """Random erasing of Zhong et al., batched: img (B, T, 3, H, W) float; returns a new tensor.

    Each frame (each tracklet if ``per_tracklet``) is erased with probability ``p`` by one
    rectangle of area fraction U(area) and aspect U(aspect, 1/aspect), the first of
    ``attempts`` draws that fits, filled with ``fill`` (one value per channel).
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
    mask = (rows[:, :, None] & cols[:, None, :]).view(b, 1 if per_tracklet else t, h, w)
    out = img.clone()
    for channel in range(c):  # Python scalars: no constant tensor copied to the device
        out[:, :, channel].masked_fill_(mask, fill[channel])
    return out


def channel_augment(img, modality, exchange=0.5):
    """The authors' channel operations, batched: img (B, T, 3, H, W) float, modality (B,).

    Visible: a coin per tracklet (p ``exchange``) decides on channel exchange; if it is
    won, each frame copies its own uniformly random channel into all three. Infrared, per
    frame: a random channel copied into all three (p 3/4), else gray
    0.2989 R + 0.5870 G + 0.1140 B in all three (p 1/8), else unchanged. Other modalities
    are left alone. Returns a new tensor.
    """
    b, t = img.shape[:2]
    dev = img.device
    modality = modality.to(dev).view(b, 1)
    draw = torch.randint(0, 4, (b, t), device=dev)  # infrared: 0-2 a channel, 3 gray or unchanged
    channel = torch.where(modality == VISIBLE, torch.randint(0, 3, (b, t), device=dev), draw.clamp(max=2))
    exchanged = (modality == VISIBLE) & (torch.rand(b, 1, device=dev) < exchange)
    copied = exchanged | ((modality == INFRARED) & (draw < 3))
    grayed = (modality == INFRARED) & (draw == 3) & (torch.rand(b, t, device=dev) < 0.5)
    # a one-hot copy of the chosen channel (exact), or the gray mix (Python scalars: no constant
    # tensor copied to the device)
    # (one_hot would read the channels' range back from the device to check it)
    w = (channel[..., None] == torch.arange(3, device=dev)).to(img.dtype).view(b, t, 3, 1, 1)
    copy = img[:, :, 0:1] * w[:, :, 0:1] + img[:, :, 1:2] * w[:, :, 1:2] + img[:, :, 2:3] * w[:, :, 2:3]
    r, g, bl = GRAY_WEIGHTS
    gray = img[:, :, 0:1] * r + img[:, :, 1:2] * g + img[:, :, 2:3] * bl
    single = torch.where(grayed.view(b, t, 1, 1, 1), gray, copy)
    return torch.where((copied | grayed).view(b, t, 1, 1, 1), single, img)
