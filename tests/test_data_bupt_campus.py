import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import vld_plugin  # noqa: F401
from vld_plugin import compat
from vld_plugin.data import BUPTCampus, DatasetFormatError, VLDDataManager, read_frame
from vld_plugin.data.bupt_campus import CAMERAS
from vld_plugin.data.frame_sampling import sorted_random
from vld_plugin.data.synthetic import generate_bupt
from vld_plugin.modality import INFRARED, VISIBLE


@pytest.fixture(scope="module")
def bupt(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bupt") / "BUPTCampus")
    return root, generate_bupt(root, num_ids=20, seed=5, height=32, width=16, min_len=6, max_len=9)


def lines(root, name):
    return open(os.path.join(root, name)).read().split("\n")[:-1]


def test_registered_and_counts(bupt):
    root, s = bupt
    assert compat.video_dataset_factory()["bupt_campus"] is BUPTCampus
    ds = BUPTCampus(root=os.path.dirname(root), verbose=False)
    assert len(ds.train) == 2 * s["train"] and len(ds.train_pairs) == s["train"]
    assert ds.num_train_pids == s["train_ids"]
    train_pids = sorted({ln.split()[0] for ln in lines(root, "train.txt")})
    first = next(t for t in ds.train if t[0][0].split(os.sep)[-4] == train_pids[0])
    assert first[1] == 0  # relabelled in string order
    for v, i in ds.train_pairs:
        tv, ti = ds.train[v], ds.train[i]
        assert (tv.modality, ti.modality) == (VISIBLE, INFRARED) and tv[1:] == ti[1:] and len(tv[0]) == len(ti[0])
        assert "/IR/" in ti[0][0] and "/RGB/" in tv[0][0]
    q = lines(root, "query.txt")
    assert len(ds.query) == len(q) and len(ds.gallery) == s["gallery"]
    assert [t.modality for t in ds.query] == [INFRARED if ln.split()[1] == "IR" else VISIBLE for ln in q]
    assert [t[1] for t in ds.query] == [int(ln.split()[0]) for ln in q]
    assert [t[2] for t in ds.query] == [CAMERAS.index(ln.split()[2]) for ln in q]
    assert ds.remove_same_camera is False
    assert [p.name for p in ds.protocols] == ["visible-to-infrared", "infrared-to-visible",
                                              "visible-to-visible", "infrared-to-infrared"]


def test_auxiliary_with_fake_or_real_ir(bupt):
    root, s = bupt
    ds = BUPTCampus(root=root, auxiliary=True, verbose=False)
    aux = lines(root, "train_auxiliary.txt")
    assert len(ds.train) == 2 * (s["train"] + len(aux))
    assert ds.num_train_pids == s["train_ids"] + s["aux_ids"]
    aux_items = ds.train[2 * s["train"]:]
    assert {t[1] for t in aux_items} == set(range(s["train_ids"], s["train_ids"] + s["aux_ids"]))
    assert all("/FakeIR/" in t[0][0] and "_RGB_" in t[0][0] for t in aux_items if t.modality == INFRARED)
    assert all(os.path.isfile(p) for t in aux_items for p in t[0])
    real = BUPTCampus(root=root, auxiliary=True, auxiliary_ir="IR", verbose=False)
    assert all("/IR/" in t[0][0] for t in real.train[2 * s["train"]:] if t.modality == INFRARED)


def test_trimmed_test_option(tmp_path):
    root = str(tmp_path / "b")
    generate_bupt(root, num_ids=3, seed=1, height=16, width=8, min_len=2, max_len=3, test_fraction=0.34,
                  aux_fraction=0.0 + 0.34)
    # inflate the lists past 64 RGB lines, as the real set has thousands: each copy of a line is a
    # new tracklet id aliasing the same frames (repeated lines would be skipped as duplicates)
    paths = json.load(open(os.path.join(root, "data_paths.json")))
    for first, name in ((1000, "gallery.txt"), (2000, "query.txt")):
        old, new = lines(root, name), []
        for k in range(140):
            pid, mod, cam, tid = old[k % len(old)].split()
            paths[pid][mod][cam][str(first + k)] = paths[pid][mod][cam][tid]
            new.append(f"{pid} {mod} {cam} {first + k}")
        open(os.path.join(root, name), "w").write("\n".join(new) + "\n")
    json.dump(paths, open(os.path.join(root, "data_paths.json"), "w"))
    full = BUPTCampus(root=root, verbose=False)
    trimmed = BUPTCampus(root=root, trimmed_test=True, verbose=False)
    n_rgb = sum(t.modality == VISIBLE for t in full.gallery)
    assert sum(t.modality == VISIBLE for t in trimmed.gallery) == n_rgb - n_rgb % 64
    assert sum(t.modality == INFRARED for t in trimmed.gallery) == sum(t.modality == INFRARED for t in full.gallery)
    kept = [t for t in full.gallery if t.modality == VISIBLE][:n_rgb - n_rgb % 64]
    assert [t for t in trimmed.gallery if t.modality == VISIBLE] == kept
    assert len(trimmed.query) == len(full.query) - sum(t.modality == VISIBLE for t in full.query) % 64
    assert trimmed.skipped["gallery RGB tracklets (trimmed_test)"] == n_rgb % 64 > 0
    visible = [ln for ln in lines(root, "gallery.txt") if " RGB " in ln][:3]
    open(os.path.join(root, "query.txt"), "w").write("\n".join(visible) + "\n")
    with pytest.raises(DatasetFormatError, match="the query split is empty"):
        BUPTCampus(root=root, trimmed_test=True, verbose=False)


@pytest.mark.parametrize("name,content,message", [
    ("train.txt", "1 RGB/IR LS3", "expected 4 tokens"),
    ("train.txt", "1 RGB LS3 1", "modality must be RGB/IR"),
    ("query.txt", "1 RGB/IR LS3 1", "modality must be RGB or IR"),
    ("gallery.txt", "1 IR XX9 1", "unknown camera 'XX9'"),
    ("query.txt", "abc IR LS3 1", "must be integers"),
    ("query.txt", "9999 IR LS3 1", r"no entry \[9999\]\[IR\]\[LS3\]\[1\]"),
])
def test_malformed_lines(bupt, tmp_path, name, content, message):
    root = shutil.copytree(bupt[0], str(tmp_path / "bad"))
    old = lines(root, name)
    open(os.path.join(root, name), "w").write("\n".join([content] + old[1:]) + "\n")
    with pytest.raises(DatasetFormatError, match=f"{name} line 1: .*{message}"):
        BUPTCampus(root=root, verbose=False)


def test_bad_json_and_unequal_pair(bupt, tmp_path):
    root = shutil.copytree(bupt[0], str(tmp_path / "json"))
    paths = json.load(open(os.path.join(root, "data_paths.json")))
    pid, _, cam, tid = lines(root, "train.txt")[0].split()
    paths[pid]["IR"][cam][tid] = paths[pid]["IR"][cam][tid][:-1]
    json.dump(paths, open(os.path.join(root, "data_paths.json"), "w"))
    with pytest.raises(DatasetFormatError, match="train.txt line 1: RGB and IR lists differ in length"):
        BUPTCampus(root=root, verbose=False)
    open(os.path.join(root, "data_paths.json"), "w").write("{broken")
    with pytest.raises(DatasetFormatError, match="data_paths.json is not valid JSON"):
        BUPTCampus(root=root, verbose=False)


def test_manager_with_camera_sampler_gives_aligned_frames(bupt):
    dm = VLDDataManager(root=bupt[0], sources="bupt_campus", height=32, width=16, batch_size_train=8, workers=0,
                        num_cams=2, train_sampler="CameraModalitySampler", iters_per_epoch=2,
                        sample_method="sorted_random", transforms=[], modality_augment=False, verbose=False)
    batch = next(iter(dm.train_loader))
    assert batch["modality"].tolist() == [VISIBLE, INFRARED] * 4
    cams = batch["camid"].tolist()
    assert cams[0] == cams[1] and cams[2] == cams[3] and cams[0] != cams[2]
    assert dm.protocols("bupt_campus")[0].name == "visible-to-infrared"
    assert dm.remove_same_camera("bupt_campus") is False
    # both halves of an aligned pair, given the same frame seed, load the same frame indices
    view = dm.train_loader.dataset
    v, i = next(iter(dm.train_sampler.cams[0].values()))[0]
    for idx in (v, i):
        paths = dm.train_set[idx][0]
        want = sorted_random(len(paths), 6, np.random.default_rng(99))
        frames = np.stack([np.asarray(read_frame(paths[k]).resize((16, 32), Image.BILINEAR)) for k in want])
        assert torch.equal(view[(idx, 99)]["img"], torch.from_numpy(frames).permute(0, 3, 1, 2))
