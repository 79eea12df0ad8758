import numpy as np
import pytest
import torch
from PIL import Image

import vld_plugin  # noqa: F401
from vld_plugin.config import load_config
from vld_plugin.data import VLDDataManager, read_frame
from vld_plugin.data.frame_sampling import first_of_chunk
from vld_plugin.data.synthetic import generate_vcm
from vld_plugin.data.transforms import TrackletTransform, normalize, random_erase
from vld_plugin.launch import build_datamanager
from vld_plugin.modality import INFRARED, VISIBLE

TINY = dict(num_ids=14, seed=4, height=48, width=24, num_cams=3, min_len=12, max_len=15, short_fraction=0.0)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("vcm"))
    generate_vcm(root, **TINY)
    return root


def manager(root, **kw):
    args = dict(root=root, sources="hitsz_vcm", height=32, width=16, batch_size_train=8, batch_size_test=5,
                workers=0, num_instances=2, iters_per_epoch=2, seq_len=6, verbose=False)
    args.update(kw)
    return VLDDataManager(**args)


def test_train_batches_are_paired_and_prepare_batch_normalises(root):
    dm = manager(root)
    assert dm.num_train_pids == 8 and len(dm.train_loader) == 2
    batch = next(iter(dm.train_loader))
    assert batch["img"].shape == (8, 6, 3, 32, 16) and batch["img"].dtype == torch.uint8
    assert batch["modality"].tolist() == [VISIBLE, INFRARED] * 4
    pids = batch["pid"].tolist()
    assert pids[0:4] == [pids[0]] * 4 and pids[4:8] == [pids[4]] * 4 and pids[0] != pids[4]
    out = dm.prepare_batch(batch, "cpu", train=False)
    expect = (batch["img"].float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    assert out["img"].dtype == torch.float32 and torch.allclose(out["img"], expect, atol=1e-6)
    assert out["pid"].dtype == torch.int64 and out["modality"].dtype == torch.int64


def test_test_loaders_use_first_of_chunk_frames(root):
    dm = manager(root)
    q = dm.test_dataset["hitsz_vcm"]["query"]
    batch = next(iter(dm.test_loader["hitsz_vcm"]["query"]))
    assert batch["pid"].tolist() == [t[1] for t in q[:5]] and set(batch["modality"].tolist()) == {INFRARED}
    paths = q[0][0]
    want = np.stack([np.asarray(read_frame(paths[i]).resize((16, 32), Image.BILINEAR))
                     for i in first_of_chunk(len(paths), 6)])
    assert torch.equal(batch["img"][0], torch.from_numpy(want).permute(0, 3, 1, 2))
    assert [p.name for p in dm.protocols("hitsz_vcm")] == ["infrared-to-visible", "visible-to-infrared"]
    assert dm.remove_same_camera("hitsz_vcm") is True
    assert len(dm.test_dataset["hitsz_vcm"]["gallery"]) == len(dm.test_loader["hitsz_vcm"]["gallery"].dataset)


def test_from_config_and_workers(root):
    cfg = load_config(opts=["data.root", root, "data.height", "32", "data.width", "16", "data.workers", "1",
                            "train.batch_size", "8", "sampler.num_instances", "2", "train.iters_per_epoch", "3"])
    dm = build_datamanager(cfg, verbose=False)
    assert len(dm.train_loader) == 3
    seen = [b["pid"].tolist() for b in dm.train_loader]
    assert len(seen) == 3 and all(len(p) == 8 for p in seen)
    dm.train_sampler.set_epoch(0)
    assert [b["pid"].tolist() for b in dm.train_loader] == seen  # sampler determinism through the loader


def test_unknown_names(root):
    with pytest.raises(ValueError, match="unknown train_sampler 'Foo'"):
        manager(root, train_sampler="Foo")
    with pytest.raises(ValueError, match="modality-aware dataset"):
        manager(root, sources="mars")
    with pytest.raises(ValueError, match="unknown frame sample method"):
        manager(root, sample_method="nope")


def frames(t=6, h=20, w=10, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for _ in range(t)]


def test_tracklet_transform_geometry():
    f = [frames(1)[0]] * 6  # identical frames: differences come from the augmentation only
    a = np.array(f[0])
    per_frame = TrackletTransform(20, 10, train=True)
    out = per_frame(f, np.random.default_rng(0))
    assert out.shape == (6, 3, 20, 10) and out.dtype == torch.uint8
    assert len({o.numpy().tobytes() for o in out}) > 1
    same = TrackletTransform(20, 10, train=True, consistent_geometry=True)
    out = same(f, np.random.default_rng(0))
    assert all(torch.equal(out[0], o) for o in out)
    # a crop at offset (pad, pad) without flip is the identity: find it among many draws
    plain = TrackletTransform(20, 10, train=True, flip=False, pad=2)
    hits = sum(torch.equal(plain(f[:1], np.random.default_rng(s))[0], torch.from_numpy(a).permute(2, 0, 1))
               for s in range(200))
    assert 0 < hits < 40  # about 1 in 25 draws
    # every augmented frame is some zero-padded crop of the frame, possibly flipped
    padded = np.zeros((24, 14, 3), np.uint8)
    padded[2:22, 2:12] = a
    crops = {padded[y:y + 20, x:x + 10, :][:, ::d].tobytes() for y in range(5) for x in range(5) for d in (1, -1)}
    flip = TrackletTransform(20, 10, train=True, pad=2)
    outs = [o.permute(1, 2, 0).numpy() for s in range(10) for o in flip(f, np.random.default_rng(s))]
    assert all(np.ascontiguousarray(o).tobytes() in crops for o in outs)
    assert len({o.tobytes() for o in outs}) > 20
    test = TrackletTransform(10, 5, train=False)(f[:2], None)
    assert torch.equal(test[0], torch.from_numpy(np.array(f[0].resize((5, 10), Image.BILINEAR))).permute(2, 0, 1))


def test_random_erase_batched():
    torch.manual_seed(0)
    img = torch.randn(4, 6, 3, 40, 20)
    fill = [0.1, 0.2, 0.3]
    out = random_erase(img, fill, p=1.0)
    erased = (out != img).any(dim=2)  # (B, T, H, W)
    for b in range(4):
        for t in range(6):
            ys, xs = torch.nonzero(erased[b, t], as_tuple=True)
            area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
            assert area == len(ys)  # one filled rectangle
            assert 0.015 * 800 <= area <= 0.45 * 800
            assert torch.allclose(out[b, t, :, ys[0], xs[0]], torch.tensor(fill))
    assert torch.equal(random_erase(img, fill, p=0.0), img)
    half = random_erase(img.repeat(8, 1, 1, 1, 1), fill, p=0.5)
    frac = (half != img.repeat(8, 1, 1, 1, 1)).flatten(2).any(2).float().mean()
    assert 0.35 < frac < 0.65
    tr = random_erase(img, fill, p=1.0, per_tracklet=True)
    m = (tr != img).any(dim=2)
    assert all(torch.equal(m[b, 0], m[b, t]) for b in range(4) for t in range(6))
    n = normalize(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), [0.5] * 3, [0.25] * 3)
    assert torch.allclose(n, torch.full((1, 3, 2, 2), 2.0))
