"""HITSZ-VCM (Lin et al., CVPR 2022) as a torchreid video dataset. Format: shared/notes/datasets.md."""
import os
import re

from ..modality import INFRARED, VISIBLE
from ..errors import DatasetFormatError, DatasetNotFoundError
from .base import Protocol, Tracklet, VLDVideoDataset

INDEX_FILES = ("train_name.txt", "track_train_info.txt", "test_name.txt", "track_test_info.txt", "query_IDX.txt")
NAME_RE = re.compile(r"^(\d{4})M(\d)D(\d+)T(\d+)F(.+)$")
TRACK_MODALITY = {1: INFRARED, 2: VISIBLE}


def find_root(root, marker, subdirs):
    """The first of ``root`` and ``root/<subdir>`` that contains ``marker``."""
    candidates = [root] + [os.path.join(root, d) for d in subdirs]
    for c in candidates:
        if os.path.exists(os.path.join(c, marker)):
            return c
    raise DatasetNotFoundError(
        f"no '{marker}' under any of {candidates}; set data.root to the folder that holds it")


def read_lines(path):
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"index file not found: {path}; the dataset's info/ folder is incomplete")
    with open(path) as f:
        return [line.strip() for line in f]


def read_names(path, image_dir):
    """Frame paths and (pid, modality) of every line of a name file."""
    paths, keys = [], []
    for lineno, line in enumerate(read_lines(path), 1):
        m = NAME_RE.match(line)
        if m is None:
            raise DatasetFormatError(
                f"{path} line {lineno}: '{line}' is not a frame name like 0001M2D3T1F1.jpg (pid4 M mod D cam T n F file)")
        pid, mod, cam, _, fname = m.groups()
        folder = "ir" if mod == "1" else "rgb"
        paths.append(os.path.join(image_dir, pid, folder, "D" + cam, fname))
        keys.append((int(pid), INFRARED if mod == "1" else VISIBLE))
    return paths, keys


def read_tracks(path, names_path, names):
    """Rows (modality, start, end, pid, camid) of a track info file, checked against its name file."""
    paths, keys = names
    rows = []
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split(" ")
        if len(parts) != 5 or not all(p.lstrip("-").isdigit() for p in parts):
            raise DatasetFormatError(f"{path} line {lineno}: expected 5 integers 'modality start end pid camid', got '{line}'")
        mod, start, end, pid, cam = map(int, parts)
        if mod not in TRACK_MODALITY:
            raise DatasetFormatError(f"{path} line {lineno}: modality must be 1 (infrared) or 2 (visible), got {mod}")
        if not 1 <= start <= end <= len(paths):
            raise DatasetFormatError(
                f"{path} line {lineno}: frame range {start}-{end} is outside 1-{len(paths)} (the lines of {names_path})")
        if keys[start - 1] != (pid, TRACK_MODALITY[mod]):
            raise DatasetFormatError(
                f"{path} line {lineno}: pid {pid}/modality {mod} disagrees with {names_path} line {start}")
        rows.append((TRACK_MODALITY[mod], start, end, pid, cam))
    if not rows:
        raise DatasetFormatError(f"{path} is empty: expected one tracklet per line")
    return rows


def read_query(path, num_rows, track_path):
    tokens = " ".join(read_lines(path)).split()
    if not tokens:
        raise DatasetFormatError(f"{path} is empty: expected the 1-based rows of {track_path} that form the query")
    rows = set()
    for tok in tokens:
        if not tok.isdigit() or not 1 <= int(tok) <= num_rows:
            raise DatasetFormatError(f"{path}: '{tok}' is not a row number in 1-{num_rows} of {track_path}")
        rows.add(int(tok) - 1)
    return rows


class HitszVCM(VLDVideoDataset):
    """HITSZ-VCM: 927 identities, visible and infrared tracklets from 12 cameras.

    ``root`` is the dataset folder (or its parent holding ``HITSZ-VCM``/``hitsz_vcm``/``VCM``);
    the flat and the ``Train/``+``Test/`` layouts are detected. Tracklets shorter than
    ``min_seq_len`` are skipped (counted in ``skipped``). Training pids are relabelled 0..N-1
    over both modalities; camids become 0-based. Query = the infrared rows of
    ``query_IDX.txt`` (torchreid's engines evaluate infrared-to-visible), gallery = the rest.
    """

    remove_same_camera = True
    test_sample_method = "first_of_chunk"  # the released evaluation's frames
    protocols = [
        Protocol("infrared-to-visible", "query", INFRARED, "gallery", VISIBLE),
        Protocol("visible-to-infrared", "gallery", VISIBLE, "query", INFRARED),
    ]

    def __init__(self, root="", min_seq_len=12, **kwargs):
        self.dataset_dir = find_root(os.path.abspath(os.path.expanduser(root)), os.path.join("info", "query_IDX.txt"),
                                     ("HITSZ-VCM", "hitsz_vcm", "VCM"))
        info = os.path.join(self.dataset_dir, "info")
        split = all(os.path.isdir(os.path.join(self.dataset_dir, d)) for d in ("Train", "Test"))
        self.layout = "split" if split else "flat"
        self.min_seq_len = int(min_seq_len)
        skipped = {}
        data, paths = {}, {}
        for part in ("train", "test"):
            names_path = os.path.join(info, f"{part}_name.txt")
            track_path = os.path.join(info, f"track_{part}_info.txt")
            image_dir = os.path.join(self.dataset_dir, part.capitalize()) if split else self.dataset_dir
            names = read_names(names_path, image_dir)
            data[part] = (read_tracks(track_path, names_path, names), track_path)
            paths[part] = names[0]
        query_rows = read_query(os.path.join(info, "query_IDX.txt"), len(data["test"][0]), data["test"][1])
        bad = [i + 1 for i in sorted(query_rows) if data["test"][0][i][0] != INFRARED]
        if bad:
            raise DatasetFormatError(
                f"{info}/query_IDX.txt lists visible rows of {data['test'][1]} (row {bad[0]}, {len(bad)} in all); query rows must be infrared")
        train = self._tracklets("train", data, paths, skipped, None)
        labels = {pid: i for i, pid in enumerate(sorted({t[1] for t in train}))}
        train = [t.replace(pid=labels[t[1]]) for t in train]
        query = self._tracklets("test", data, paths, skipped, lambda i: i in query_rows)
        gallery = self._tracklets("test", data, paths, skipped, lambda i: i not in query_rows)
        super().__init__(train, query, gallery, skipped=skipped, **kwargs)

    def _tracklets(self, part, data, paths, skipped, keep_row):
        rows, track_path = data[part]
        out = []
        key = f"{part} tracklets shorter than {self.min_seq_len} frames"
        skipped.setdefault(key, 0)
        for i, (mod, start, end, pid, cam) in enumerate(rows):
            if keep_row is not None and not keep_row(i):
                continue
            if end - start + 1 < self.min_seq_len:
                skipped[key] += 1
                continue
            frames = paths[part][start - 1:end]
            if not os.path.isfile(frames[0]):
                raise DatasetFormatError(
                    f"{track_path} line {i + 1}: frame {frames[0]} not found; check data.root and the {self.layout} layout")
            out.append(Tracklet(frames, pid, cam - 1, 0, mod))
        if not out:
            raise DatasetFormatError(f"{track_path}: no {part} tracklet has at least {self.min_seq_len} frames (min_seq_len)")
        return out
