"""The authors' augmentation: per-frame order and channel draws, PIL test-time resizing,
independent augmentation of aligned pairs."""
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from vld_plugin.data import Tracklet, TrackletView, VLDDataManager
from vld_plugin.data.transforms import ERASE_FILL, GRAY_WEIGHTS, TrackletTransform, normalize
from vld_plugin.modality import INFRARED, VISIBLE

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
PIXEL = (20, 120, 230)  # R, G, B of every training pixel below


def prepare(img, modality, random_erase=True, modality_augment=True):
    """The data manager's device step on a hand-made batch."""
    dm = types.SimpleNamespace(norm_mean=MEAN, norm_std=STD, random_erase=random_erase, consistent_geometry=False,
                               modality_augment=modality_augment)
    return VLDDataManager.prepare_batch(dm, {"img": img, "modality": modality}, "cpu", train=True)["img"]


def classify(frame, rgb, fill):
    """(kind, erased) of one output frame (3, H, W) whose input pixels all were ``rgb`` (normalised).

    kind: 'unchanged', 0/1/2 (that channel copied into all three) or 'gray'. The erased
    pixels, if any, must hold ``fill`` passed through the same operation.
    """
    pixels = frame.flatten(1).T  # (H*W, 3)
    values, counts = torch.unique(pixels, dim=0, return_counts=True)
    assert len(values) <= 2, "a frame holds only the background and the erasing fill"
    background, erased = values[counts.argmax()], values[counts.argmin()] if len(values) == 2 else None

    def gray(v):
        return GRAY_WEIGHTS[0] * v[0] + GRAY_WEIGHTS[1] * v[1] + GRAY_WEIGHTS[2] * v[2]

    layouts = {"unchanged": lambda v: v, "gray": lambda v: gray(v).repeat(3)}
    layouts.update({k: (lambda v, k=k: v[k].repeat(3)) for k in range(3)})
    for kind, op in layouts.items():
        if torch.allclose(background, op(rgb), atol=1e-5):
            if erased is not None:
                assert torch.allclose(erased, op(fill), atol=1e-5), f"erased pixels {erased} after '{kind}'"
            return kind, erased is not None
    raise AssertionError(f"background {background} is no channel operation of {rgb}")


@pytest.fixture(scope="module")
def augmented():
    """600 tracklets (visible, infrared alternating) x 6 frames of one constant colour, augmented."""
    torch.manual_seed(0)
    b, t = 600, 6
    img = torch.tensor(PIXEL, dtype=torch.uint8).view(1, 1, 3, 1, 1).expand(b, t, 3, 16, 8).contiguous()
    modality = torch.tensor([VISIBLE, INFRARED] * (b // 2))
    out = prepare(img, modality)
    rgb = normalize(torch.tensor(PIXEL, dtype=torch.uint8).view(3, 1, 1), MEAN, STD).flatten()
    fill = torch.tensor(ERASE_FILL)
    kinds = [[classify(out[i, j], rgb, fill) for j in range(t)] for i in range(b)]
    return modality, kinds


def test_erasing_fill_is_the_authors():
    assert ERASE_FILL == (0.4914, 0.4822, 0.4465) and GRAY_WEIGHTS == (0.2989, 0.5870, 0.1140)


def test_visible_coin_per_tracklet_channel_per_frame(augmented):
    modality, kinds = augmented
    visible = [[k for k, _ in frames] for m, frames in zip(modality.tolist(), kinds) if m == VISIBLE]
    assert all(set(f) == {"unchanged"} or "unchanged" not in f for f in visible), "the coin is per tracklet"
    assert not any("gray" in f for f in visible)
    exchanged = [f for f in visible if f[0] != "unchanged"]
    assert 0.4 < len(exchanged) / len(visible) < 0.6  # coin p 0.5 over 300 tracklets (sd 0.03)
    # each frame draws its own channel: all six alike has probability 1/243 per tracklet
    assert sum(len(set(f)) > 1 for f in exchanged) / len(exchanged) > 0.95
    frames = [k for f in exchanged for k in f]
    for c in range(3):
        assert abs(frames.count(c) / len(frames) - 1 / 3) < 0.05  # about 900 frames (sd 0.016)


def test_infrared_channel_gray_or_unchanged_per_frame(augmented):
    modality, kinds = augmented
    frames = [k for m, f in zip(modality.tolist(), kinds) if m == INFRARED for k, _ in f]
    n = len(frames)  # 1800 frames
    for c in range(3):
        assert abs(frames.count(c) / n - 1 / 4) < 0.04  # sd 0.010
    assert abs(frames.count("gray") / n - 1 / 8) < 0.03  # sd 0.008
    assert abs(frames.count("unchanged") / n - 1 / 8) < 0.03
    tracklets = [[k for k, _ in f] for m, f in zip(modality.tolist(), kinds) if m == INFRARED]
    assert sum(len(set(f)) > 1 for f in tracklets) / len(tracklets) > 0.9  # drawn per frame


def test_erasing_comes_before_the_channel_operation(augmented):
    _, kinds = augmented
    erased = [k for f in kinds for k, e in f if e]
    # classify() checked each erased region: fill[k] in all three channels after channel k,
    # gray(fill) after gray, the fill as is when unchanged; all occur, about half the frames are erased
    assert {0, 1, 2, "gray", "unchanged"} <= set(erased)
    assert 0.4 < len(erased) / (len(kinds) * 6) < 0.6


def test_switches_turn_erasing_and_channel_operations_off():
    torch.manual_seed(1)
    img = torch.randint(0, 256, (8, 6, 3, 16, 8), dtype=torch.uint8)
    modality = torch.tensor([VISIBLE, INFRARED] * 4)
    out = prepare(img, modality, random_erase=False, modality_augment=False)
    assert torch.equal(out, normalize(img, MEAN, STD))
    assert not torch.equal(prepare(img, modality, random_erase=False), out)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """Noise JPEGs smaller and larger than 288x144 (one grayscale): resizing them matters."""
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w, mode) in enumerate([(100, 50, "RGB"), (300, 150, "RGB"), (576, 288, "RGB"), (1000, 400, "RGB"),
                                      (288, 144, "RGB"), (300, 150, "L")]):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = str(folder / f"{i:02d}.jpg")
        Image.fromarray(pixels).convert(mode).save(path, quality=95)
        paths.append(path)
    return paths


def test_test_time_path_matches_torchvision(jpegs):
    view = TrackletView([Tracklet(jpegs, 0, 0, 0, VISIBLE)], len(jpegs), "first_of_chunk",
                        TrackletTransform(288, 144, train=False))
    batch = next(iter(torch.utils.data.DataLoader(view, batch_size=1)))
    assert batch["img"].shape == (1, len(jpegs), 3, 288, 144) and batch["img"].dtype == torch.uint8
    ours = normalize(batch["img"], MEAN, STD)[0]
    reference = T.Compose([T.Resize((288, 144)), T.ToTensor(), T.Normalize(MEAN, STD)])
    std = torch.tensor(STD).view(3, 1, 1)
    for i, path in enumerate(jpegs):
        want = reference(Image.open(path).convert("RGB"))
        assert (ours[i] - want).mul(std).abs().max() <= 1 / 255, path  # in [0, 1] pixel units


def write_tracklet(folder, n=20):
    """``n`` constant PNG frames 32x16; frame i has value 10 * (i + 1) so the decoded pixel names it."""
    folder.mkdir()
    paths = []
    for i in range(n):
        path = str(folder / f"{i:03d}.png")
        Image.fromarray(np.full((32, 16, 3), 10 * (i + 1), np.uint8)).save(path)
        paths.append(path)
    return paths


def test_aligned_pair_shares_frames_not_augmentation(tmp_path):
    pair = [Tracklet(write_tracklet(tmp_path / "rgb"), 0, 0, 0, VISIBLE),
            Tracklet(write_tracklet(tmp_path / "ir"), 0, 0, 0, INFRARED)]
    view = TrackletView(pair, 6, "restricted_random", TrackletTransform(32, 16, train=True, pad=4))
    indices, seen = [], []
    for seed in range(20):
        rgb, ir = view[(0, seed)]["img"], view[(1, seed)]["img"]
        assert torch.equal(rgb, view[(0, seed)]["img"])  # deterministic given (index, seed)
        frames = [x.amax(dim=(1, 2, 3)) for x in (rgb, ir)]  # the frame value; the crop adds zeros only
        assert torch.equal(frames[0], frames[1])
        indices.append(tuple(frames[0].tolist()))
        seen.append(torch.equal(rgb == 0, ir == 0))  # the zero border: crop offset and flip
    assert len(set(indices)) > 10  # the seed chooses the frames
    assert not any(seen)  # the pair members are padded, cropped and flipped independently
