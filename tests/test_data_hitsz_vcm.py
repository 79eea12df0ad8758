import os
import shutil

import pytest
import torch

import vld_plugin  # noqa: F401  (registers the datasets)
from vld_plugin import compat
from vld_plugin.data import DatasetFormatError, DatasetNotFoundError, HitszVCM, ImageReadError, Tracklet
from vld_plugin.data.synthetic import generate_vcm
from vld_plugin.modality import INFRARED, VISIBLE

TINY = dict(num_ids=10, seed=3, height=48, width=24, num_cams=3, min_len=12, max_len=15, short_fraction=0.3)


@pytest.fixture(scope="module")
def vcm(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("vcm") / "HITSZ-VCM")
    return root, generate_vcm(root, **TINY)


def expected(summary, part, mod=None, min_len=12):
    return sum(1 for m, n in summary[f"{part}_tracklets"] if n >= min_len and (mod is None or m == mod))


def test_registered_in_torchreid():
    assert compat.video_dataset_factory()["hitsz_vcm"] is HitszVCM


def test_counts_relabel_modalities_and_membership(vcm):
    root, s = vcm
    ds = HitszVCM(root=root, verbose=False)
    assert ds.layout == "split"
    assert len(ds.train) == expected(s, "train") and len(ds.train) < len(s["train_tracklets"])
    assert sum(t.modality == VISIBLE for t in ds.train) == expected(s, "train", 2)
    assert sum(t.modality == INFRARED for t in ds.train) == expected(s, "train", 1)
    assert sorted({t[1] for t in ds.train}) == list(range(s["train_ids"]))
    assert ds.num_train_pids == s["train_ids"]
    assert len(ds.query) == expected(s, "test", 1) and all(t.modality == INFRARED for t in ds.query)
    assert len(ds.gallery) == expected(s, "test", 2) and all(t.modality == VISIBLE for t in ds.gallery)
    test_pids = set(range(s["train_ids"] + 1, s["train_ids"] + s["test_ids"] + 1))
    assert {t[1] for t in ds.query} <= test_pids and {t[1] for t in ds.gallery} <= test_pids
    assert all(len(t[0]) >= 12 for t in ds.train + ds.query + ds.gallery)
    short = len(s["train_tracklets"]) - len(ds.train)
    assert ds.skipped["train tracklets shorter than 12 frames"] == short
    # each tracklet's frames live in its own pid/modality/camera folder
    for t in ds.query[:3] + ds.gallery[:3]:
        folder = os.path.dirname(t[0][0])
        assert folder.endswith(os.path.join(f"{t[1]:04d}", "ir" if t.modality == INFRARED else "rgb", f"D{t[2] + 1}"))
        assert all(os.path.dirname(p) == folder for p in t[0])


def test_tracklet_unpacks_like_torchreid_and_pickles():
    import pickle
    t = Tracklet(["a.jpg", "b.jpg"], 3, 1, 0, INFRARED)
    paths, pid, camid, dsetid = t
    assert (paths, pid, camid, dsetid) == (("a.jpg", "b.jpg"), 3, 1, 0)
    u = pickle.loads(pickle.dumps(t))
    assert u == t and u.modality == INFRARED and isinstance(u, Tracklet)
    assert t.replace(pid=7).modality == INFRARED and t.replace(pid=7)[1] == 7


def test_protocols_and_camera_rule(vcm):
    ds = HitszVCM(root=vcm[0], verbose=False)
    assert ds.remove_same_camera is True
    p = {x.name: x for x in ds.protocols}
    assert (p["infrared-to-visible"].query_split, p["infrared-to-visible"].gallery_split) == ("query", "gallery")
    assert (p["visible-to-infrared"].query_split, p["visible-to-infrared"].query_modality) == ("gallery", VISIBLE)
    assert p["visible-to-infrared"].gallery_modality == INFRARED


def test_length_filter_is_configurable(vcm):
    root, s = vcm
    ds = HitszVCM(root=root, min_seq_len=14, verbose=False)
    assert len(ds.train) == expected(s, "train", min_len=14)
    assert len(HitszVCM(root=root, min_seq_len=1, verbose=False).train) == len(s["train_tracklets"])


def test_flat_layout_and_parent_root(tmp_path):
    root = str(tmp_path / "VCM")
    s = generate_vcm(root, layout="flat", **TINY)
    ds = HitszVCM(root=str(tmp_path), verbose=False)  # the parent folder is found too
    assert ds.layout == "flat" and len(ds.train) == expected(s, "train")
    assert os.path.isfile(ds.train[0][0][0]) and "Train" not in ds.train[0][0][0]


def test_items_load_with_test_counterpart_sampling(vcm):
    ds = HitszVCM(root=vcm[0], mode="query", seq_len=6, sample_method="restricted_random", verbose=False)
    item = ds[0]
    assert item["img"].shape == (6, 3, 288, 144) and item["img"].dtype == torch.uint8
    assert item["modality"] == INFRARED and item["pid"] == ds.query[0][1]
    assert torch.equal(ds[0]["img"], item["img"])  # first_of_chunk at test time: deterministic


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("file,line,content,message", [
    ("track_train_info.txt", 0, "2 1 24 1", "line 1: expected 5 integers"),
    ("track_train_info.txt", 0, "2 1 x 1 1", "line 1: expected 5 integers"),
    ("track_train_info.txt", 0, "3 1 13 1 1", "line 1: modality must be 1"),
    ("track_train_info.txt", 1, "2 1 999999 1 1", "line 2: frame range 1-999999 is outside"),
    ("track_train_info.txt", 0, "2 1 13 2 1", "disagrees with"),
    ("train_name.txt", 2, "0001X2D1T1F3.jpg", "line 3: '0001X2D1T1F3.jpg' is not a frame name"),
    ("query_IDX.txt", 0, "1 2 99999", "'99999' is not a row number"),
])
def test_malformed_index_lines(vcm, tmp_path, file, line, content, message):
    root = _copy(vcm[0], str(tmp_path / "bad"))
    path = os.path.join(root, "info", file)
    lines = open(path).read().splitlines()
    lines[line] = content
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=message):
        HitszVCM(root=root, verbose=False)


def test_missing_root_and_index_file(vcm, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="set data.root"):
        HitszVCM(root=str(tmp_path / "nowhere"))
    root = _copy(vcm[0], str(tmp_path / "noinfo"))
    os.remove(os.path.join(root, "info", "track_test_info.txt"))
    with pytest.raises(DatasetNotFoundError, match="track_test_info.txt"):
        HitszVCM(root=root)


def test_query_listing_visible_rows_is_an_error(vcm, tmp_path):
    root = _copy(vcm[0], str(tmp_path / "visq"))
    rows = open(os.path.join(root, "info", "track_test_info.txt")).read().splitlines()
    visible_row = next(i + 1 for i, r in enumerate(rows) if r.startswith("2 "))
    open(os.path.join(root, "info", "query_IDX.txt"), "w").write(f"{visible_row}\n")
    with pytest.raises(DatasetFormatError, match="query rows must be infrared"):
        HitszVCM(root=root)


def test_empty_split_after_filter(vcm):
    with pytest.raises(DatasetFormatError, match="no train tracklet has at least 999 frames"):
        HitszVCM(root=vcm[0], min_seq_len=999)


def test_missing_and_corrupt_images(vcm, tmp_path):
    root = _copy(vcm[0], str(tmp_path / "img"))
    ds = HitszVCM(root=root, mode="train", sample_method="all", verbose=False)
    victim = ds.train[0][0][2]
    open(victim, "wb").write(b"not a jpeg")
    with pytest.raises(ImageReadError, match="cannot decode image .*corrupt"):
        ds[0]
    os.remove(victim)
    with pytest.raises(ImageReadError, match="image file not found"):
        ds[0]
    os.remove(ds.train[1][0][0])
    with pytest.raises(DatasetFormatError, match="line .*frame .* not found"):
        HitszVCM(root=root, verbose=False)


def test_combineall_keeps_modalities(vcm):
    root, s = vcm
    ds = HitszVCM(root=root, combineall=True, verbose=False)
    n = expected(s, "train") + expected(s, "test")
    assert len(ds.train) == n and all(isinstance(t, Tracklet) for t in ds.train)
    assert ds.num_train_pids == s["train_ids"] + s["test_ids"]
    assert sorted({t[1] for t in ds.train}) == list(range(s["train_ids"] + s["test_ids"]))
