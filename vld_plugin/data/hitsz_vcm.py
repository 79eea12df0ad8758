"""HITSZ-VCM (Lin et al., CVPR 2022) as a torchreid video dataset.

Layout and index format: datasets/README.md, section HITSZ-VCM."""
import os
import re

from ..errors import DatasetFormatError
from ..modality import INFRARED, VISIBLE, Protocol
from .base import Tracklet, VLDVideoDataset, find_root, read_lines

NAME_RE = re.compile(r"^(\d{4})M(\d)D(\d+)T(\d+)F(.+)$")
TRACK_MODALITY = {1: INFRARED, 2: VISIBLE}


def read_names(path, image_dir):
    """Frame paths, (pid, modality, camera) keys and raw names of the lines of a name file."""
    paths, keys, names = [], [], []
    for lineno, line in enumerate(read_lines(path), 1):
        m = NAME_RE.match(line)
        if m is None:
            what = ("is blank" if not line else
                    f"'{line}' is not a frame name like 0001M2D3T1F1.jpg (pid4 M mod D cam T n F file)")
            raise DatasetFormatError(f"{path} line {lineno}: {what}; "
                                     "the track files count these lines, fix or remove it")
        pid, mod, cam, _, fname = m.groups()
        folder = "ir" if mod == "1" else "rgb"
        paths.append(os.path.join(image_dir, pid, folder, "D" + cam, fname))
        keys.append((int(pid), INFRARED if mod == "1" else VISIBLE, int(cam)))
        names.append(line)
    return paths, keys, names


def read_tracks(path, names_path, names):
    """Rows (modality, start, end, pid, camid) of a track info file, and the indices of exact duplicate rows.

    Every frame of a row must carry the row's pid, modality and camera in its name, and no two
    rows may share frames unless they are the same range (a duplicate, skipped by the caller).
    """
    paths, keys, frame_names = names
    rows = []
    for lineno, line in enumerate(read_lines(path), 1):
        where = f"{path} line {lineno}"
        parts = line.split(" ")
        if len(parts) != 5 or not all(p.lstrip("-").isdigit() for p in parts):
            got = "a blank line" if not line else f"'{line}'"
            raise DatasetFormatError(
                f"{where}: expected 5 integers 'modality start end pid camid', got {got}; fix or remove the line")
        mod, start, end, pid, cam = map(int, parts)
        if mod not in TRACK_MODALITY:
            raise DatasetFormatError(f"{where}: modality must be 1 (infrared) or 2 (visible), got {mod}")
        if cam < 1:
            raise DatasetFormatError(f"{where}: camid must be 1 or more (camera D<camid>), got {cam}")
        if start > end:
            raise DatasetFormatError(f"{where}: frame range {start}-{end} is inverted (start after end); fix the row")
        if not 1 <= start <= end <= len(paths):
            raise DatasetFormatError(
                f"{where}: frame range {start}-{end} is outside 1-{len(paths)} (the lines of {names_path})")
        want = (pid, TRACK_MODALITY[mod], cam)
        bad = next((k for k in range(start - 1, end) if keys[k] != want), None)
        if bad is not None:
            raise DatasetFormatError(
                f"{where}: frame '{frame_names[bad]}' ({names_path} line {bad + 1}) disagrees with the row's "
                f"pid {pid}, modality {mod}, camera D{cam}: the range {start}-{end} runs into another tracklet's "
                "frames; fix the row")
        rows.append((TRACK_MODALITY[mod], start, end, pid, cam))
    if not rows:
        raise DatasetFormatError(f"{path} is empty: expected one tracklet per line")
    duplicates, prev = set(), None
    for i in sorted(range(len(rows)), key=lambda i: (rows[i][1], rows[i][2], i)):
        if prev is not None and rows[i][1:3] == rows[prev][1:3]:
            duplicates.add(i)
            continue
        if prev is not None and rows[i][1] <= rows[prev][2]:
            first, second = sorted((prev, i))
            raise DatasetFormatError(
                f"{path} line {second + 1}: frame range {rows[second][1]}-{rows[second][2]} overlaps line {first + 1} "
                f"({rows[first][1]}-{rows[first][2]}); a frame belongs to one tracklet, fix the ranges")
        prev = i
    return rows, duplicates


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
            rows, duplicates = read_tracks(track_path, names_path, names)
            data[part] = (rows, track_path, duplicates)
            paths[part] = names[0]
        query_rows = read_query(os.path.join(info, "query_IDX.txt"), len(data["test"][0]), data["test"][1])
        bad = [i + 1 for i in sorted(query_rows) if data["test"][0][i][0] != INFRARED]
        if bad:
            raise DatasetFormatError(
                f"{info}/query_IDX.txt lists visible rows of {data['test'][1]} (row {bad[0]}, {len(bad)} in all); "
                "query rows must be infrared")
        train = self._tracklets("train", data, paths, skipped, None)
        labels = {pid: i for i, pid in enumerate(sorted({t[1] for t in train}))}
        train = [t.replace(pid=labels[t[1]]) for t in train]
        query = self._tracklets("test", data, paths, skipped, lambda i: i in query_rows)
        gallery = self._tracklets("test", data, paths, skipped, lambda i: i not in query_rows)
        super().__init__(train, query, gallery, skipped=skipped, **kwargs)

    def _tracklets(self, part, data, paths, skipped, keep_row):
        rows, track_path, duplicates = data[part]
        out = []
        key = f"{part} tracklets shorter than {self.min_seq_len} frames"
        dup_key = f"duplicate rows in {os.path.basename(track_path)}"
        skipped.setdefault(key, 0)
        skipped.setdefault(dup_key, 0)
        for i, (mod, start, end, pid, cam) in enumerate(rows):
            if keep_row is not None and not keep_row(i):
                continue
            if i in duplicates:
                skipped[dup_key] += 1
                continue
            if end - start + 1 < self.min_seq_len:
                skipped[key] += 1
                continue
            frames = paths[part][start - 1:end]
            if not os.path.isfile(frames[0]):
                raise DatasetFormatError(
                    f"{track_path} line {i + 1}: frame {frames[0]} not found; "
                    f"check data.root and the {self.layout} layout")
            out.append(Tracklet(frames, pid, cam - 1, 0, mod))
        if not out:
            raise DatasetFormatError(f"{track_path}: no {part} tracklet has at least {self.min_seq_len} frames "
                                     "(min_seq_len)")
        return out
