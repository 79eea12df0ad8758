"""BUPTCampus (Du et al., 2023) as a torchreid video dataset.

Layout and index format: datasets/README.md, section BUPTCampus."""
import json
import os
import re

from ..errors import ConfigError, DatasetFormatError
from ..modality import INFRARED, VISIBLE, Protocol
from .base import Tracklet, VLDVideoDataset, find_root, read_lines, read_text

CAMERAS = ("LS3", "G25", "CQ1", "W4", "TSG1", "TSG2")
TEST_MODALITY = {"RGB": VISIBLE, "IR": INFRARED}
AUXILIARY_IR = ("FakeIR", "IR")  # the auxiliary set's infrared sides
TRIM_BATCH = 64  # the official test sampler drops the last len(rgb) % 64 RGB tracklets


class BUPTCampus(VLDVideoDataset):
    """BUPTCampus: aligned RGB+IR training pairs, RGB and IR query/gallery tracklets, 6 cameras.

    ``root`` holds ``data_paths.json`` (or is its parent with ``BUPTCampus``/``bupt_campus``).
    Each ``train.txt`` line gives a visible and an infrared Tracklet (listed in
    ``train_pairs``); training pids are relabelled 0..N-1 in string order. ``auxiliary``
    adds ``train_auxiliary.txt`` (its ids relabelled after the main ones) with
    ``auxiliary_ir`` ('FakeIR', the generated infrared, or 'IR') as its infrared side.
    ``trimmed_test`` reproduces the official test sampler's defect (the last len(rgb) % 64
    RGB tracklets of query and of gallery dropped); the default evaluates the full sets.
    Test pids stay ``int(pid)``; camids index ``CAMERAS``; no camera filtering.
    """

    remove_same_camera = False
    test_sample_method = "linspace"  # the released evaluation's frames
    protocols = [
        Protocol("visible-to-infrared", "query", VISIBLE, "gallery", INFRARED),
        Protocol("infrared-to-visible", "query", INFRARED, "gallery", VISIBLE),
        Protocol("visible-to-visible", "query", VISIBLE, "gallery", VISIBLE),
        Protocol("infrared-to-infrared", "query", INFRARED, "gallery", INFRARED),
    ]

    def __init__(self, root="", auxiliary=False, auxiliary_ir="FakeIR", trimmed_test=False, **kwargs):
        if auxiliary_ir not in AUXILIARY_IR:
            raise ConfigError(f"auxiliary_ir must be one of {AUXILIARY_IR}, got '{auxiliary_ir}'")
        self.dataset_dir = find_root(os.path.abspath(os.path.expanduser(root)), "data_paths.json",
                                     ("BUPTCampus", "bupt_campus"))
        self.data_dir = os.path.join(self.dataset_dir, "DATA")
        self.json_path = json_path = os.path.join(self.dataset_dir, "data_paths.json")
        try:
            self.paths = json.loads(read_text(json_path))
        except json.JSONDecodeError as e:
            raise DatasetFormatError(f"{json_path} is not valid JSON ({e.msg} at line {e.lineno}); "
                                     "re-extract the dataset") from None
        self._skipped = skipped = {}
        train, pairs = [], []
        offset = self._add_pairs("train.txt", "IR", 0, train, pairs)
        if auxiliary:
            self._add_pairs("train_auxiliary.txt", auxiliary_ir, offset, train, pairs)
        query = self._read_test("query.txt")
        gallery = self._read_test("gallery.txt")
        if trimmed_test:
            query, skipped["query RGB tracklets (trimmed_test)"] = self._trim(query)
            gallery, skipped["gallery RGB tracklets (trimmed_test)"] = self._trim(gallery)
        super().__init__(train, query, gallery, train_pairs=pairs, skipped=skipped, **kwargs)

    def _lines(self, name, modalities):
        """Parsed (pid, modality, camid, camera, tid, where) of a list file; blank lines are ignored,
        repeated lines skipped and counted."""
        path = os.path.join(self.dataset_dir, name)
        out, seen = [], set()
        dup_key = f"repeated lines in {name}"
        self._skipped.setdefault(dup_key, 0)
        for lineno, line in enumerate(read_lines(path), 1):
            if not line:
                continue
            parts = line.split(" ")
            where = f"{path} line {lineno}"
            if len(parts) != 4:
                raise DatasetFormatError(f"{where}: expected 4 tokens 'pid modality camera tid', got '{line}'")
            pid, mod, cam, tid = parts
            if not pid.isdigit() or not tid.isdigit():
                raise DatasetFormatError(f"{where}: pid and tid must be integers, got '{pid}' and '{tid}'")
            if mod not in modalities:
                raise DatasetFormatError(f"{where}: modality must be {' or '.join(modalities)}, got '{mod}'")
            if cam not in CAMERAS:
                raise DatasetFormatError(f"{where}: unknown camera '{cam}', expected one of {', '.join(CAMERAS)}")
            if (pid, mod, cam, tid) in seen:
                self._skipped[dup_key] += 1
                continue
            seen.add((pid, mod, cam, tid))
            out.append((pid, mod, CAMERAS.index(cam), cam, tid, where))
        if not out:
            raise DatasetFormatError(f"{path} is empty: expected one tracklet per line")
        return out

    def _frames(self, pid, mod, cam, tid, where, fake=False):
        """The frame paths of one list line; each must lie in ``<pid>/<mod>/<cam>/`` and be named
        ``<pid>_<mod>_<cam>_...`` (pid compared as a number)."""
        mod = "RGB" if fake else mod
        entry = f"entry [{pid}][{mod}][{cam}][{tid}] in {self.json_path}"
        try:
            rel = self.paths[pid][mod][cam][tid]
        except (KeyError, TypeError):
            raise DatasetFormatError(f"{where}: no {entry}; the list and the JSON disagree") from None
        if not rel or not isinstance(rel, list):
            raise DatasetFormatError(f"{where}: the {entry} lists no frames (expected a list of paths)")
        n = str(int(pid))
        c, m = re.escape(cam), re.escape(mod)
        pattern = re.compile(rf"0*{n}/{m}/{c}/0*{n}_{m}_{c}_")
        bad = next((r for r in rel if not isinstance(r, str) or not pattern.match(r)), None)
        if bad is not None:
            raise DatasetFormatError(
                f"{where}: the {entry} lists frame '{bad}', not one of pid {n}'s {mod} frames of camera {cam} "
                f"(expected {n}/{mod}/{cam}/{n}_{mod}_{cam}_*); fix data_paths.json")
        if fake:
            rel = [r.replace("/RGB/", "/FakeIR/", 1) for r in rel]
        frames = [os.path.join(self.data_dir, r) for r in rel]
        if not os.path.isfile(frames[0]):
            raise DatasetFormatError(f"{where}: frame {frames[0]} not found; check data.root (it must hold DATA/)")
        return frames

    def _add_pairs(self, name, ir_source, offset, train, pairs):
        lines = self._lines(name, ("RGB/IR",))
        labels = {pid: i + offset for i, pid in enumerate(sorted({ln[0] for ln in lines}))}
        for pid, _, camid, cam, tid, where in lines:
            rgb = self._frames(pid, "RGB", cam, tid, where)
            ir = self._frames(pid, "IR", cam, tid, where, fake=ir_source == "FakeIR")
            if len(rgb) != len(ir):
                raise DatasetFormatError(f"{where}: RGB and {ir_source} lists differ in length "
                                         f"({len(rgb)} vs {len(ir)})")
            pairs.append((len(train), len(train) + 1))
            train += [Tracklet(rgb, labels[pid], camid, 0, VISIBLE), Tracklet(ir, labels[pid], camid, 0, INFRARED)]
        return offset + len(labels)

    def _read_test(self, name):
        return [Tracklet(self._frames(pid, mod, cam, tid, where), int(pid), camid, 0, TEST_MODALITY[mod])
                for pid, mod, camid, cam, tid, where in self._lines(name, tuple(TEST_MODALITY))]

    @staticmethod
    def _trim(items):
        rgb = [i for i, t in enumerate(items) if t.modality == VISIBLE]
        drop = set(rgb[len(rgb) - len(rgb) % TRIM_BATCH:])
        return [t for i, t in enumerate(items) if i not in drop], len(drop)
