"""Damaged or inconsistent data is never used silently: each case raises one line naming the
file (and line), or is a counted skip shown in the dataset summary (datasets/README.md)."""
import io
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image, ImageFile

import vld_plugin  # noqa: F401  (registers the datasets)
from vld_plugin.data import BUPTCampus, DatasetFormatError, HitszVCM, ImageReadError, read_frame
from vld_plugin.data.hitsz_vcm import NAME_RE
from vld_plugin.data.synthetic import generate_bupt, generate_vcm

BOM = b"\xef\xbb\xbf"
VCM_FILES = ("train_name.txt", "track_train_info.txt", "test_name.txt", "track_test_info.txt", "query_IDX.txt")
BUPT_FILES = ("train.txt", "train_auxiliary.txt", "query.txt", "gallery.txt")


@pytest.fixture(scope="module")
def vcm_src(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("vcm") / "HITSZ-VCM")
    generate_vcm(root, num_ids=6, seed=2, height=32, width=16, num_cams=3, min_len=12, max_len=13, short_fraction=0)
    return root


@pytest.fixture(scope="module")
def bupt_src(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bupt") / "BUPTCampus")
    generate_bupt(root, num_ids=6, seed=2, height=32, width=16, min_len=3, max_len=4)
    return root


@pytest.fixture
def vcm(vcm_src, tmp_path):
    """A private copy of the tiny HITSZ-VCM; returns (root, info folder)."""
    root = shutil.copytree(vcm_src, str(tmp_path / "HITSZ-VCM"))
    return root, os.path.join(root, "info")


@pytest.fixture
def bupt(bupt_src, tmp_path):
    return shutil.copytree(bupt_src, str(tmp_path / "BUPTCampus"))


def read(path):
    return open(path, encoding="utf-8").read().split("\n")[:-1]


def read_bytes_lines(path):
    return open(path, "rb").read().split(b"\n")[:-1]


def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def raises(cls, call):
    """The message of the ``cls`` (exactly) that ``call`` raises; it must be one line."""
    with pytest.raises(cls) as e:
        call()
    assert type(e.value) is cls and "\n" not in str(e.value)
    return str(e.value)


def jpeg(seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (48, 24, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def png():
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 4, 3), 7, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- 1, 2: frames
@pytest.mark.parametrize("keep", [0.5, 0.95, -2, -1], ids=["half", "most", "no-EOI", "half-EOI"])
def test_truncated_jpeg(tmp_path, keep):
    data = jpeg()
    path = str(tmp_path / "1.jpg")
    open(path, "wb").write(data[:int(len(data) * keep)] if keep > 0 else data[:keep])
    msg = raises(ImageReadError, lambda: read_frame(path))
    assert path in msg and "truncated" in msg


def test_truncated_jpeg_caught_even_when_pil_allows_truncation(tmp_path, monkeypatch):
    """With LOAD_TRUNCATED_IMAGES on (set by some library), PIL fills the rest grey without a word."""
    data = jpeg()
    path = str(tmp_path / "1.jpg")
    open(path, "wb").write(data[:len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    Image.open(path).load()  # PIL alone accepts it
    msg = raises(ImageReadError, lambda: read_frame(path))
    assert path in msg and "truncated" in msg


def test_truncated_png(tmp_path, monkeypatch):
    path = str(tmp_path / "1.png")
    open(path, "wb").write(png()[:-12])  # IEND chunk gone: PIL decodes it without a word
    assert raises(ImageReadError, lambda: read_frame(path)).startswith(f"image {path} is truncated")


def test_complete_frames_still_load(tmp_path):
    """No false alarm: a JPEG with a few padding bytes after its end marker, a PNG, a grey JPEG."""
    path = str(tmp_path / "padded.jpg")
    open(path, "wb").write(jpeg() + b"\0" * 8)
    assert read_frame(path).size == (24, 48)
    path = str(tmp_path / "a.png")
    open(path, "wb").write(png())
    assert read_frame(path).mode == "RGB"
    path = str(tmp_path / "grey.JPG")
    Image.new("L", (4, 6), 9).save(path, "JPEG")
    assert read_frame(path).mode == "RGB"


@pytest.mark.parametrize("content", ["random", "empty", "text", "png"])
def test_corrupt_frame(tmp_path, content):
    data = {"random": np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes(),
            "empty": b"", "text": b"hello, I am not a picture\n", "png": png()}[content]
    path = str(tmp_path / "3.jpg")
    open(path, "wb").write(data)
    msg = raises(ImageReadError, lambda: read_frame(path))
    assert msg.startswith(f"image {path} is a PNG file" if content == "png" else f"cannot decode image {path}:")


def test_damaged_frames_in_a_dataset(vcm):
    root, _ = vcm
    ds = HitszVCM(root=root, mode="train", sample_method="all", verbose=False)
    victim = ds.train[0][0][3]
    data = open(victim, "rb").read()
    open(victim, "wb").write(data[:len(data) // 2])
    msg = raises(ImageReadError, lambda: ds[0])
    assert victim in msg and "truncated" in msg
    os.remove(victim)  # a frame other than the first missing: an error when it is read
    assert raises(ImageReadError, lambda: ds[0]).startswith(f"image file not found: {victim}")
    os.remove(ds.train[1][0][0])  # a first frame missing: an error when the dataset is built
    msg = raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False))
    assert re.search(r"track_train_info.txt line \d+: frame .* not found", msg)


# ----------------------------------------------------------------------------- 3: ranges vs names
def name_key(name):
    """(pid, modality digit, camera) as a frame name encodes them."""
    return NAME_RE.match(name).groups()[:3]


@pytest.mark.parametrize("change", ["identity", "modality", "camera"])
def test_vcm_range_runs_into_another_tracklet(vcm, change):
    root, info = vcm
    names, rows = read(os.path.join(info, "train_name.txt")), read(os.path.join(info, "track_train_info.txt"))
    differs = {"identity": lambda a, b: a[0] != b[0],
               "modality": lambda a, b: a[0] == b[0] and a[1] != b[1],
               "camera": lambda a, b: a[:2] == b[:2] and a[2] != b[2]}[change]
    i = next(i for i, r in enumerate(rows) if int(r.split()[2]) < len(names)
             and differs(name_key(names[int(r.split()[2]) - 1]), name_key(names[int(r.split()[2])])))
    mod, start, end, pid, cam = map(int, rows[i].split())
    rows[i] = f"{mod} {start} {end + 1} {pid} {cam}"  # one frame too many: the next tracklet's first
    write(os.path.join(info, "track_train_info.txt"), rows)
    msg = raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False))
    track = os.path.join(info, "track_train_info.txt")
    assert msg.startswith(f"{track} line {i + 1}: frame '{names[end]}' ({info}/train_name.txt line {end + 1})")


def test_vcm_every_frame_of_a_row_is_checked(vcm):
    root, info = vcm
    names, rows = read(os.path.join(info, "test_name.txt")), read(os.path.join(info, "track_test_info.txt"))
    mod, start, end, pid, cam = map(int, rows[1].split())
    k = end - 2  # a frame inside the row, not its first or last
    names[k] = names[k].replace(f"D{cam}T", f"D{cam % 3 + 1}T", 1)
    write(os.path.join(info, "test_name.txt"), names)
    msg = raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False))
    assert msg.startswith(f"{info}/track_test_info.txt line 2: frame '{names[k]}' ({info}/test_name.txt line {k + 1})")


@pytest.mark.parametrize("change", ["identity", "modality", "camera"])
def test_bupt_json_frames_of_another_tracklet(bupt, change):
    json_path = os.path.join(bupt, "data_paths.json")
    paths = json.load(open(json_path))
    pid, mod, cam, tid = read(os.path.join(bupt, "gallery.txt"))[0].split()
    frames = paths[pid][mod][cam][tid]
    other_mod = "IR" if mod == "RGB" else "RGB"
    other_cam = next(c for c in ("LS3", "G25") if c != cam)
    wrong = {"identity": frames[1].replace(f"{pid}/", "99/", 1).replace(f"/{pid}_", "/99_", 1),
             "modality": frames[1].replace(f"/{mod}/", f"/{other_mod}/").replace(f"_{mod}_", f"_{other_mod}_"),
             "camera": frames[1].replace(cam, other_cam)}[change]
    frames[1] = wrong
    json.dump(paths, open(json_path, "w"))
    msg = raises(DatasetFormatError, lambda: BUPTCampus(root=bupt, verbose=False))
    assert msg.startswith(f"{bupt}/gallery.txt line 1: the entry [{pid}][{mod}][{cam}][{tid}] in {json_path} "
                          f"lists frame '{wrong}'")


# ----------------------------------------------------------------------------- 4: encodings
def test_bom_is_accepted(vcm, bupt, vcm_src, bupt_src):
    root, info = vcm
    for name in VCM_FILES:
        path = os.path.join(info, name)
        data = open(path, "rb").read()
        open(path, "wb").write(BOM + data)
    ds, ref = HitszVCM(root=root, verbose=False), HitszVCM(root=vcm_src, verbose=False)
    assert [os.path.relpath(p, root) for t in ds.train for p in t[0]] == \
        [os.path.relpath(p, vcm_src) for t in ref.train for p in t[0]]
    assert [t[1:] for t in ds.query + ds.gallery] == [t[1:] for t in ref.query + ref.gallery]
    for name in BUPT_FILES + ("data_paths.json",):
        path = os.path.join(bupt, name)
        data = open(path, "rb").read()
        open(path, "wb").write(BOM + data)
    ds, ref = BUPTCampus(root=bupt, verbose=False), BUPTCampus(root=bupt_src, verbose=False)
    assert [t[1:] for t in ds.train + ds.query + ds.gallery] == [t[1:] for t in ref.train + ref.query + ref.gallery]


def test_non_utf8_index_files(vcm, bupt):
    root, info = vcm
    path = os.path.join(info, "train_name.txt")
    lines = open(path, "rb").read().split(b"\n")
    lines[2] = lines[2].replace(b"F", "F\u00e9".encode("latin-1"), 1)  # a Latin-1 e-acute
    open(path, "wb").write(b"\n".join(lines))
    msg = raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False))
    assert msg.startswith(f"{path} line 3: byte 0xe9 is not UTF-8")
    path = os.path.join(bupt, "query.txt")
    open(path, "ab").write(b"1 IR LS3 \xff\n")
    msg = raises(DatasetFormatError, lambda: BUPTCampus(root=bupt, verbose=False))
    assert msg.startswith(f"{path} line {len(read_bytes_lines(path))}: byte 0xff")
    path = os.path.join(bupt, "data_paths.json")
    open(path, "ab").write(b"\n\x80")
    message = raises(DatasetFormatError, lambda: BUPTCampus(root=bupt, verbose=False))
    assert message.startswith(f"{path} line 2: byte 0x80")


# ----------------------------------------------------------------------------- 5: other damage
def test_blank_lines(vcm, bupt, bupt_src):
    root, info = vcm
    for name in VCM_FILES:  # trailing blank lines are harmless
        open(os.path.join(info, name), "a").write("\n\n")
    HitszVCM(root=root, verbose=False)
    for name, at, message in (("train_name.txt", 4, "line 5: is blank"),
                              ("track_train_info.txt", 1, "line 2: expected 5 integers")):
        path = os.path.join(info, name)
        lines = read(path)
        write(path, lines[:at] + [""] + lines[at:])
        assert raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False)).startswith(f"{path} {message}")
        write(path, lines)
    for name in BUPT_FILES:  # a BUPTCampus list has no line numbers to shift: blank lines are ignored
        lines = read(os.path.join(bupt, name))
        write(os.path.join(bupt, name), [lines[0], "", *lines[1:], ""])
    ds, ref = BUPTCampus(root=bupt, verbose=False), BUPTCampus(root=bupt_src, verbose=False)
    assert [t[1:] for t in ds.train + ds.query + ds.gallery] == [t[1:] for t in ref.train + ref.query + ref.gallery]


def test_vcm_bad_ranges(vcm):
    root, info = vcm
    track = os.path.join(info, "track_train_info.txt")
    rows = read(track)
    mod, start, end, pid, cam = map(int, rows[0].split())
    write(track, [f"{mod} {end} {start} {pid} {cam}"] + rows[1:])
    assert raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False)).startswith(
        f"{track} line 1: frame range {end}-{start} is inverted")
    write(track, rows + [f"{mod} {start + 1} {end} {pid} {cam}"])  # overlaps row 1, same identity and camera
    assert raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False)).startswith(
        f"{track} line {len(rows) + 1}: frame range {start + 1}-{end} overlaps line 1")
    write(track, [f"{mod} {start} {end} {pid} 0"] + rows[1:])
    assert raises(DatasetFormatError, lambda: HitszVCM(root=root, verbose=False)).startswith(
        f"{track} line 1: camid must be 1 or more")


def test_duplicate_rows_are_counted_skips(vcm, bupt, vcm_src, bupt_src, capsys):
    root, info = vcm
    track = os.path.join(info, "track_train_info.txt")
    rows = read(track)
    write(track, rows + [rows[0], rows[2]])
    ds = HitszVCM(root=root, verbose=True)
    assert ds.skipped["duplicate rows in track_train_info.txt"] == 2
    assert len(ds.train) == len(HitszVCM(root=vcm_src, verbose=False).train)
    assert "skipped 2 duplicate rows in track_train_info.txt" in capsys.readouterr().out
    gallery = read(os.path.join(bupt, "gallery.txt"))
    write(os.path.join(bupt, "gallery.txt"), gallery + [gallery[1]])
    ds = BUPTCampus(root=bupt, verbose=True)
    assert ds.skipped["repeated lines in gallery.txt"] == 1
    assert len(ds.gallery) == len(BUPTCampus(root=bupt_src, verbose=False).gallery) == len(gallery)
    assert "skipped 1 repeated lines in gallery.txt" in capsys.readouterr().out
