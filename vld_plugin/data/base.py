"""What the plugin's video datasets share: the Tracklet item, protocols, safe frame reading and
a torchreid ``VideoDataset`` base that knows modalities."""
import collections
import os
import struct

import numpy as np
import torch
from PIL import Image
from tabulate import tabulate

from .. import compat
from ..errors import DatasetFormatError, DatasetNotFoundError, ImageReadError
from ..modality import INFRARED, NAMES, VISIBLE, modality_of
from .frame_sampling import check_method, eval_sample_method, sample_indices
from .transforms import TrackletTransform


class Tracklet(tuple):
    """A torchreid video item ``(img_paths, pid, camid, dsetid)`` that also knows ``.modality``.

    It unpacks to exactly four values, so torchreid's engines and samplers keep working.
    """

    def __new__(cls, img_paths, pid, camid, dsetid, modality):
        self = super().__new__(cls, (tuple(img_paths), int(pid), int(camid), int(dsetid)))
        self.modality = int(modality)
        return self

    def __getnewargs__(self):
        return (*self, self.modality)

    def __repr__(self):
        return (f"Tracklet({len(self[0])} frames, pid={self[1]}, camid={self[2]}, dsetid={self[3]}, "
                f"modality={NAMES.get(self.modality, self.modality)})")

    def replace(self, pid=None, camid=None, dsetid=None):
        """A copy with some of pid/camid/dsetid changed."""
        return Tracklet(self[0], self[1] if pid is None else pid, self[2] if camid is None else camid,
                        self[3] if dsetid is None else dsetid, self.modality)


# A complete file of these formats ends with its end marker (JPEG EOI, PNG IEND chunk), maybe
# followed by a few padding bytes; truncation cuts it off.
END_MARKERS = {"JPEG": b"\xff\xd9", "MPO": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}
TAIL_BYTES = 32
EXTENSION_FORMATS = {".jpg": ("JPEG", "MPO"), ".jpeg": ("JPEG", "MPO"), ".png": ("PNG",)}
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error, Image.DecompressionBombError)


def read_frame(path):
    """Decode an image file to a loaded RGB PIL image; one attempt, ImageReadError naming the file.

    Raises for a missing, unreadable, undecodable or truncated file and for a file whose format
    is not its extension's (a PNG named .jpg). Truncation is caught twice: PIL's ``load`` raises
    (``ImageFile.LOAD_TRUNCATED_IMAGES`` off), and a JPEG/PNG must end with its end marker (its
    last 32 bytes are read), which also catches a cut through the marker alone and holds when
    another library has set that PIL flag.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ImageReadError(f"image file not found: {path}; "
                             "check the dataset root and that the archive is fully extracted") from None
    except OSError as e:
        raise ImageReadError(f"cannot read image file {path}: {e.strerror}; check that it is a readable file") from None
    with f:
        try:
            with Image.open(f) as img:
                img.load()
                rgb = img if img.mode == "RGB" else img.convert("RGB")
                fmt = img.format
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL_BYTES))
            tail = f.read()
        except DECODE_ERRORS as e:
            cut = "truncated" in str(e).lower()
            state = "truncated" if cut else "corrupt or not an image"
            raise ImageReadError(f"cannot decode image {path}: the file is {state}; "
                                 "re-extract it from the dataset archive") from None
    want = EXTENSION_FORMATS.get(os.path.splitext(path)[1].lower())
    if want and fmt not in want:
        raise ImageReadError(f"image {path} is a {fmt} file, not {want[0]} as its extension says; "
                             "re-extract it from the dataset archive")
    if fmt in END_MARKERS and END_MARKERS[fmt] not in tail:
        raise ImageReadError(f"image {path} is truncated (no {fmt} end marker); re-extract it from the dataset archive")
    return rgb


def find_root(root, marker, subdirs):
    """The first of ``root`` and ``root/<subdir>`` that contains ``marker`` (a dataset's index file)."""
    candidates = [root] + [os.path.join(root, d) for d in subdirs]
    for c in candidates:
        if os.path.exists(os.path.join(c, marker)):
            return c
    raise DatasetNotFoundError(
        f"no '{marker}' under any of {candidates}; set data.root to the folder that holds it")


def read_text(path):
    """The text of an index file as UTF-8, a leading BOM dropped; other bytes raise DatasetFormatError with the line."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise DatasetFormatError(f"{path} line {lineno}: byte 0x{data[e.start]:02x} is not UTF-8 text; "
                                 "save the file as UTF-8 (or re-extract it from the dataset archive)") from None


def read_lines(path):
    """The stripped lines of an index file (UTF-8, BOM allowed); trailing blank lines are dropped."""
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"index file not found: {path}; the dataset's folder is incomplete")
    lines = [line.strip() for line in read_text(path).split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def load_item(item, method, seq_len, transform, seed=None, index=0):
    """Load one tracklet as torchreid's video item dict plus ``modality``.

    ``seed`` fixes the frame choice (the samplers give both tracklets of an aligned pair the
    same seed); otherwise it is drawn from torch's RNG, which DataLoader seeds per worker.
    The augmentation draws from (``seed``, dataset ``index``), so the two tracklets of a pair
    share frame indices but not crops or flips. A :class:`TrackletTransform` gets the whole
    tracklet (uint8 output); any other callable (torchreid's per-frame PIL transforms) is
    applied frame by frame.
    """
    img_paths, pid, camid, dsetid = item
    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, (1,)).item())
    indices = sample_indices(method, len(img_paths), seq_len, np.random.default_rng(seed))
    frames = [read_frame(img_paths[i]) for i in indices]
    if isinstance(transform, TrackletTransform):
        img = transform(frames, np.random.default_rng([seed, index]))
    else:
        img = torch.stack([transform(f) for f in frames])
    return {"img": img, "pid": pid, "camid": camid, "dsetid": dsetid, "modality": modality_of(item)}


def split_index(index):
    """Samplers may yield ``(index, frame_seed)``; torchreid's yield plain ints."""
    return (int(index[0]), int(index[1])) if isinstance(index, tuple) else (int(index), None)


class TrackletView(torch.utils.data.Dataset):
    """A list of tracklets served with one sampling method and transform (the data manager's loaders)."""

    def __init__(self, items, seq_len, sample_method, transform):
        self.items, self.seq_len, self.transform = items, seq_len, transform
        self.sample_method = check_method(sample_method)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        index, seed = split_index(index)
        return load_item(self.items[index], self.sample_method, self.seq_len, self.transform, seed, index)


class VLDVideoDataset(compat.data.VideoDataset):
    """torchreid ``VideoDataset`` whose items are :class:`Tracklet` s, with ``protocols``,
    ``remove_same_camera``, aligned ``train_pairs`` (or None) and ``skipped`` counts.

    Besides torchreid's ``random``/``evenly``/``all`` it samples ``restricted_random``,
    ``first_of_chunk``, ``sorted_random``, ``linspace``; in query/gallery mode a random
    train method becomes its deterministic counterpart. Frames are read once, never retried.
    """

    protocols = []
    remove_same_camera = True
    test_sample_method = "first_of_chunk"  # test frames of the dataset's own protocol

    def __init__(self, train, query, gallery, seq_len=6, sample_method="restricted_random",
                 train_pairs=None, skipped=None, transform=None, **kwargs):
        self.train_pairs = train_pairs
        self.skipped = dict(skipped or {})
        for name, items in (("train", train), ("query", query), ("gallery", gallery)):
            if not items:
                raise DatasetFormatError(f"{type(self).__name__}: the {name} split is empty; "
                                         "check the dataset's index files")
        if transform is None:
            transform = TrackletTransform(288, 144, train=False)
        super().__init__(train, query, gallery, seq_len=seq_len, sample_method=check_method(sample_method),
                         transform=transform, **kwargs)

    def __getitem__(self, index):
        index, seed = split_index(index)
        method = self.sample_method
        if self.mode != "train":
            method = eval_sample_method(method, self.test_sample_method)
        return load_item(self.data[index], method, self.seq_len, self.transform, seed, index)

    def combine_all(self):
        """torchreid's combineall, keeping Tracklets (query/gallery pids relabelled after train's)."""
        if self._train_only:
            return
        pids = sorted({item[1] for item in self.gallery} | {item[1] for item in self.query})
        label = {pid: i + self.num_train_pids for i, pid in enumerate(pids)}
        self.train = list(self.train) + [t.replace(pid=label[t[1]]) for t in self.query + self.gallery]
        self.num_train_pids = self.get_num_pids(self.train)

    def summary_rows(self):
        """(subset, ids, visible tracklets, infrared tracklets, cameras) per split."""
        rows = []
        for name, items in (("train", self.train), ("query", self.query), ("gallery", self.gallery)):
            mods = collections.Counter(modality_of(t) for t in items)
            rows.append((name, self.get_num_pids(items), mods[VISIBLE], mods[INFRARED], self.get_num_cams(items)))
        return rows

    def show_summary(self):
        print(f"=> Loaded {self.__class__.__name__}")
        print(tabulate(self.summary_rows(), headers=["subset", "# ids", "# visible", "# infrared", "# cameras"]))
        for what, count in self.skipped.items():
            if count:
                print(f"  skipped {count} {what}")
