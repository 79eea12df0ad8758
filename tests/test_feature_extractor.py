import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vld_plugin import FeatureExtractor
from vld_plugin.checkpoint import FORMAT, CheckpointError, save_checkpoint
from vld_plugin.config import load_config
from vld_plugin.data import ImageReadError
from vld_plugin.feature_extractor import FeatureInputError
from vld_plugin.launch import build_model
from vld_plugin.models.frame_wise import FrameWise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
# the demo's tiny VLD, smaller still: 32x16 input, 4 frames, 2 blocks (hub from block 1)
OPTS = ["data.height", "32", "data.width", "16", "video.seq_len", "4", "vld.layers", "2", "vld.text_layers", "1",
        "test.batch_size", "3"]
NUM_IDS = 5
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A randomly initialised tiny VLD (BNNeck statistics made non-trivial), saved two ways."""
    tmp = tmp_path_factory.mktemp("fx")
    torch.manual_seed(0)
    cfg = load_config(DEMO, OPTS + ["model.pretrained", "none"])
    model = build_model(cfg, NUM_IDS)
    for name, buf in model.named_buffers():
        if "running" in name:
            buf.uniform_(0.5, 1.5)
    model.eval()
    engine_ckpt = str(tmp / "checkpoint.pth")
    save_checkpoint({"format": FORMAT, "epoch": 1, "model": model.state_dict()}, engine_ckpt)
    plain = str(tmp / "plain.pth")
    torch.save(model.state_dict(), plain)
    return model, engine_ckpt, plain, tmp


def write_tracklet(folder, n, rng, size=(32, 16)):
    """``n`` random JPEG frames (some of another size); returns their paths."""
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = size if i % 3 else (size[0] * 2, size[1] * 2)  # every third frame needs resizing
        path = os.path.join(folder, f"{i:03d}.png")
        cv2.imwrite(path, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        paths.append(path)
    return paths


def reference_uint8(paths, seq_len=4, size=(32, 16)):
    """First frame of each of seq_len chunks (ceil(n / seq_len) frames each), resized, as (T, 3, H, W)."""
    c = -(-len(paths) // seq_len)
    idx = [min(k * c, len(paths) - 1) for k in range(seq_len)]
    frames = []
    for i in idx:
        img = Image.open(paths[i]).convert("RGB")
        if img.size != size[::-1]:
            img = img.resize(size[::-1], Image.BILINEAR)
        frames.append(np.asarray(img).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(frames))


def test_features_equal_model_eval_output(saved):
    model, ckpt, plain, _ = saved
    images = torch.randn(5, 4, 3, 32, 16)
    with torch.no_grad():
        expected = torch.cat([model(images[:3]), model(images[3:])])
    for path in (ckpt, plain):
        extractor = FeatureExtractor(DEMO, path, opts=OPTS, device="cpu")
        feats = extractor(images)
        assert feats.shape == (5, 128) and feats.dtype == torch.float32  # [feat_cls, feat_sta], width 64
        assert torch.equal(feats, expected)
    assert extractor.model.classifier["cls"].classifier.weight.shape[0] == NUM_IDS  # read from the checkpoint


def test_paths_and_uint8_tensor_give_the_features_of_the_normalised_frames(saved):
    model, ckpt, _, tmp = saved
    rng = np.random.default_rng(3)
    tracklets = [write_tracklet(str(tmp / f"t{k}"), n, rng) for k, n in enumerate([9, 4, 13, 2])]
    extractor = FeatureExtractor(DEMO, ckpt, opts=OPTS, device="cpu")
    from_paths = extractor(tracklets)
    u8 = torch.stack([reference_uint8(p) for p in tracklets])
    from_u8 = extractor(u8)
    assert torch.equal(from_paths, from_u8)
    normalised = ((u8.double() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)).float()
    with torch.no_grad():
        expected = torch.cat([model(normalised[:3]), model(normalised[3:])])
    torch.testing.assert_close(from_paths, expected, rtol=1e-4, atol=1e-5)
    # a tracklet's features do not depend on which others share its batch
    one_by_one = FeatureExtractor(DEMO, ckpt, opts=OPTS, device="cpu", batch_size=1)(tracklets)
    torch.testing.assert_close(one_by_one, from_paths, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(from_paths[0], from_paths[1], atol=1e-3)


def test_cfg_object_and_checkpoint_from_config(saved):
    _, ckpt, _, _ = saved
    cfg = load_config(DEMO, OPTS)
    images = torch.randn(2, 4, 3, 32, 16)
    a = FeatureExtractor(cfg=cfg, model_path=ckpt, device="cpu")(images)
    b = FeatureExtractor(DEMO, opts=OPTS + ["model.load_weights", ckpt], device="auto")(images)
    torch.testing.assert_close(a, b.cpu())


def test_clear_errors(saved):
    _, ckpt, _, tmp = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        FeatureExtractor(DEMO, str(tmp / "nope.pth"), opts=OPTS)
    with pytest.raises(CheckpointError, match="no checkpoint given"):
        FeatureExtractor(DEMO, opts=OPTS)
    with pytest.raises(CheckpointError, match="does not fit this model: .*unexpected"):
        FeatureExtractor(DEMO, ckpt, opts=OPTS + ["vld.sta", "False"], num_classes=NUM_IDS)
    with pytest.raises(CheckpointError, match="of another shape"):
        FeatureExtractor(DEMO, ckpt, opts=OPTS + ["vld.width", "32"])
    extractor = FeatureExtractor(DEMO, ckpt, opts=OPTS)
    for bad in (torch.zeros(2, 4, 3, 64, 32), torch.zeros(2, 6, 3, 32, 16), torch.zeros(4, 3, 32, 16)):
        with pytest.raises(FeatureInputError, match=r"expected a tensor \(B, 4, 3, 32, 16\)"):
            extractor(bad)
    paths = write_tracklet(str(tmp / "e"), 4, np.random.default_rng(0))
    with pytest.raises(FeatureInputError, match="but item 0 is a path; wrap a single tracklet"):
        extractor(paths)
    with pytest.raises(FeatureInputError, match="but item 2 is a path"):
        extractor([paths, paths, paths[0]])
    with pytest.raises(ImageReadError, match="not found: .*missing.png"):
        extractor([paths, paths[:2] + [str(tmp / "missing.png")]])
    corrupt = str(tmp / "corrupt.jpg")
    with open(corrupt, "wb") as f:
        f.write(b"\xff\xd8 not a jpeg")
    with pytest.raises(ImageReadError, match="cannot decode image .*corrupt.jpg"):
        extractor([[corrupt] * 4])
    for e in (FeatureInputError, ImageReadError):
        try:
            extractor(paths if e is FeatureInputError else [[corrupt]])
        except e as err:
            assert "\n" not in str(err)


def test_torchreid_model_runs_frame_wise_and_averages_over_frames(tmp_path):
    opts = ["model.name", "osnet_x0_25", "data.height", "64", "data.width", "32", "video.seq_len", "3"]
    torch.manual_seed(1)
    model = build_model(load_config(DEMO, opts + ["model.pretrained", "none"]), 4).eval()
    path = str(tmp_path / "osnet.pth")
    torch.save({"state_dict": model.state_dict()}, path)  # torchreid's checkpoint layout
    images = torch.randn(2, 3, 3, 64, 32)
    feats = FeatureExtractor(DEMO, path, opts=opts)(images)
    with torch.no_grad():
        expected = super(FrameWise, model).forward(images.flatten(0, 1)).view(2, 3, -1).mean(1)
    assert feats.shape == (2, 512)
    torch.testing.assert_close(feats, expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda_is_a_clear_error(saved):
    with pytest.raises(FeatureInputError, match="CUDA is not available"):
        FeatureExtractor(DEMO, saved[1], opts=OPTS, device="cuda")
