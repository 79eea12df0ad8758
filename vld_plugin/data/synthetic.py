"""Synthetic HITSZ-VCM and BUPTCampus copies in exactly the real layouts and index formats.

    python -m vld_plugin.data.synthetic --format vcm --root datasets/HITSZ-VCM --num-ids 70 --seed 1

Each identity has a body shape (height, build, head, leg length, bag), a clothing pattern
(stripes, checks, dots, ...) with two colours for visible frames and two unrelated
intensities for infrared ones (so the pattern and shape transfer across modalities and
colour does not), and a gait (frequency, swing) that moves arms and legs across frames.
Cameras add background, brightness, blur and noise; tracklets add scale, position, drift
and colour jitter. Everything is a function of the seed. :func:`caption` describes an
identity in words (visible: with colours; infrared: grey levels only), the image-text pairs
the demo's miniature CLIP is pretrained on (``vld_plugin.models.mini_clip``).
"""
import argparse
import json
import math
import os

import cv2
import numpy as np

from ..errors import ConfigError, OutputError
from .bupt_campus import CAMERAS


# ----------------------------------------------------------------------------- rendering
def make_identity(rng):
    """Random appearance and motion parameters of one identity."""
    def colour(value):
        hsv = np.uint8([[[rng.integers(0, 180), rng.integers(60, 256), value]]])
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)

    def rgb_pair():  # one bright, one dark colour, so the pattern also shows in gray
        pair = np.stack([colour(rng.integers(170, 256)), colour(rng.integers(40, 110))])
        return pair[::-1].copy() if rng.random() < 0.5 else pair

    def ir_pair():
        a = rng.uniform(0.35, 1.0)
        return np.float32([a, np.clip(a + rng.choice([-1, 1]) * rng.uniform(0.3, 0.55), 0.1, 1.0)])

    return dict(
        height=rng.uniform(0.70, 0.94), build=rng.uniform(0.20, 0.40), head=rng.uniform(0.055, 0.085),
        leg=rng.uniform(0.40, 0.55), bag=int(rng.integers(0, 3)),  # 0 none, 1 backpack, 2 hand bag
        upper=int(rng.integers(0, 6)), upper_period=rng.uniform(0.18, 0.45),
        lower=int(rng.integers(0, 3)), lower_period=rng.uniform(0.15, 0.35),
        upper_rgb=rgb_pair(), lower_rgb=rgb_pair(),
        skin_rgb=np.float32([rng.uniform(150, 235)] * 3) * np.float32([1.0, 0.85, 0.72]),
        upper_ir=ir_pair(), lower_ir=ir_pair(), skin_ir=rng.uniform(0.8, 1.0),
        gait=rng.uniform(0.05, 0.22), swing=rng.uniform(0.12, 0.45),
    )


PATTERN_WORDS = ("plain", "horizontal stripes", "vertical stripes", "checks", "diagonal stripes", "two-tone")
HUE_WORDS = ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (195, "cyan"), (255, "blue"),
             (290, "purple"), (345, "pink"), (360, "red"))  # upper hue bound in degrees -> name


def colour_name(rgb):
    """English name of an RGB colour (0-255): hue word, 'dark' / 'pale' by value and saturation."""
    hsv = cv2.cvtColor(np.uint8([[np.clip(rgb, 0, 255)]]), cv2.COLOR_RGB2HSV)[0, 0].astype(int)
    hue = "grey" if hsv[1] < 40 else next(word for bound, word in HUE_WORDS if hsv[0] * 2 < bound)
    if hsv[2] < 128:
        return f"dark {hue}"
    return f"pale {hue}" if 40 <= hsv[1] < 90 else hue


def _grey_level(value):
    """Name of an infrared intensity (0-1)."""
    return "dark" if value < 0.4 else "grey" if value < 0.65 else "light" if value < 0.85 else "white"


def _garment(kind, period, shades, noun):
    """'top with red and dark blue thin horizontal stripes', 'plain grey trousers', ...; without
    ``shades`` (None) the pattern alone: 'top with thin horizontal stripes', 'plain trousers'."""
    if kind == 0:  # pattern mask empty: shades[1] everywhere
        return f"plain {shades[1]} {noun}" if shades else f"plain {noun}"
    if kind == 5:  # pattern mask is the lower half: shades[0] below, shades[1] above
        return f"{noun} {shades[1]} above and {shades[0]} below" if shades else f"two-tone {noun}"
    width = "thin " if period < 0.3 else "wide "
    if not shades:
        return f"{noun} with {width}{PATTERN_WORDS[kind]}"
    first, second = sorted(shades)  # one order for both stripe colours
    return f"{noun} with {first} and {second} {width}{PATTERN_WORDS[kind]}"


def caption(ident, modality, shades=True):
    """A caption of identity ``ident`` (from :func:`make_identity`) as seen in ``modality``.

    Visible ('rgb') captions name clothing colours; infrared ('ir', 'fakeir') ones only grey
    levels (infrared intensities are unrelated to the visible colours). Both describe body
    shape, clothing patterns and carried objects, e.g. "a tall slim person with long legs,
    a top with dark blue and red thin horizontal stripes, plain dark green trousers and a
    backpack, observed in day conditions." ``shades=False`` leaves out colours and grey
    levels (a terser caption: the same words in both modalities but 'day' / 'night').
    """
    ir = modality != "rgb"
    height = "short" if ident["height"] < 0.78 else "tall" if ident["height"] > 0.86 else "medium height"
    build = "slim" if ident["build"] < 0.27 else "broad" if ident["build"] > 0.33 else "average"
    legs = "short legs" if ident["leg"] < 0.45 else "long legs" if ident["leg"] > 0.5 else "average legs"
    if not shades:
        upper = lower = None
    elif ir:
        upper = [_grey_level(v) for v in ident["upper_ir"]]
        lower = [_grey_level(v) for v in ident["lower_ir"]]
    else:
        upper = [colour_name(c) for c in ident["upper_rgb"]]
        lower = [colour_name(c) for c in ident["lower_rgb"]]
    lower_kind = ident["lower"] if ident["lower"] < 2 else 5
    top = _garment(ident["upper"], ident["upper_period"], upper, "top")
    trousers = _garment(lower_kind, ident["lower_period"], lower, "trousers")
    bag = ("no bag", "a backpack", "a hand bag")[ident["bag"]]
    when = "night" if ir else "day"
    return f"a {height} {build} person with {legs}, a {top}, {trousers} and {bag}, observed in {when} conditions."


def make_camera(rng):
    """Per-camera nuisances: background, gain, blur."""
    return dict(bg=rng.uniform(40, 200, 3).astype(np.float32), bg_ir=rng.uniform(0.05, 0.45),
                grad=rng.uniform(-60, 60), stripes=rng.uniform(0.05, 0.3), gain=rng.uniform(0.75, 1.25),
                blur=rng.uniform(0.0, 1.3))


def make_track(rng):
    """Per-tracklet jitter: scale, position, drift, gait phase, colour and intensity shifts."""
    return dict(scale=rng.uniform(0.9, 1.05), dx=rng.uniform(-0.08, 0.08), dy=rng.uniform(-0.04, 0.04),
                drift=rng.uniform(-0.006, 0.006), phase=rng.uniform(0, 2 * np.pi),
                tint=rng.uniform(0.85, 1.15, 3).astype(np.float32), ir_shift=rng.uniform(-0.08, 0.08))


def _limb(yy, xx, x0, y0, length, angle, half_width):
    """Mask of a bar hanging from (x0, y0), rotated by ``angle`` (radians) from vertical."""
    along = yy - y0
    x_axis = x0 + along * math.tan(angle)
    return (along >= 0) & (along <= length * math.cos(angle)) & (np.abs(xx - x_axis) <= half_width)


def _pattern(kind, u, v, period):
    """Binary clothing pattern on part coordinates u (across, -1..1) and v (down, 0..1)."""
    if kind == 0:
        return np.zeros_like(u, dtype=bool)
    if kind == 1:  # horizontal stripes
        return np.sin(2 * np.pi * v / period) > 0
    if kind == 2:  # vertical stripes
        return np.sin(np.pi * u / period) > 0
    if kind == 3:  # checks
        return (np.sin(np.pi * u / period) > 0) ^ (np.sin(2 * np.pi * v / period) > 0)
    if kind == 4:  # diagonal stripes
        return np.sin(np.pi * (u + 2 * v) / period) > 0
    return v > 0.5  # two-tone: top and bottom halves


def render(ident, cam, track, t, modality, height, width, rng):
    """One frame (H, W, 3) uint8 of an identity at time ``t``; modality 'rgb', 'ir' or 'fakeir'."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy /= height
    xx /= width
    body = ident["height"] * track["scale"]
    top = (1 - body) / 2 + track["dy"]
    cx = 0.5 + track["dx"] + track["drift"] * t
    phase = track["phase"] + 2 * np.pi * ident["gait"] * t
    bob = 0.01 * abs(math.sin(phase))
    top += bob
    aspect = height / width  # x is measured in widths: convert body lengths in heights to widths
    head_r = ident["head"] * body
    neck = top + 2 * head_r
    hip = top + body * (1 - ident["leg"])
    half = ident["build"] / 2 * track["scale"]
    swing = ident["swing"] * math.sin(phase)

    head = ((xx - cx) * (width / height)) ** 2 + (yy - top - head_r) ** 2 <= head_r ** 2
    taper = 1 - 0.2 * np.clip((yy - neck) / max(hip - neck, 1e-3), 0, 1)
    torso = (yy >= neck) & (yy <= hip) & (np.abs(xx - cx) <= half * taper)
    arm_len, arm_w = (hip - neck) * 1.05, 0.045
    arms = _limb(yy * aspect, xx, cx - half - arm_w, neck * aspect, arm_len * aspect, swing, arm_w) | \
        _limb(yy * aspect, xx, cx + half + arm_w, neck * aspect, arm_len * aspect, -swing, arm_w)
    leg_len, leg_w = top + body - hip, half * 0.42
    legs = _limb(yy * aspect, xx, cx - half * 0.45, hip * aspect, leg_len * aspect, -swing * 0.8, leg_w) | \
        _limb(yy * aspect, xx, cx + half * 0.45, hip * aspect, leg_len * aspect, swing * 0.8, leg_w)
    bag = np.zeros_like(torso)
    if ident["bag"] == 1:
        bag = ((yy >= neck + 0.02) & (yy <= neck + 0.6 * (hip - neck))
               & (xx >= cx + half * 0.9) & (xx <= cx + half * 1.6))
    elif ident["bag"] == 2:
        bag = (yy >= hip - 0.02) & (yy <= hip + 0.12) & (np.abs(xx - (cx - half - 0.12)) <= 0.09)

    up_p = _pattern(ident["upper"], (xx - cx) / half, (yy - neck) / max(hip - neck, 1e-3), ident["upper_period"])
    lo_p = _pattern(ident["lower"] if ident["lower"] < 2 else 5, (xx - cx) / half, (yy - hip) / max(leg_len, 1e-3),
                    ident["lower_period"])
    ir = modality != "rgb"
    if ir:
        bg = cam["bg_ir"] + 0.15 * (yy - 0.5) + cam["stripes"] * 0.3 * (np.sin(yy * 40 + cam["grad"]) > 0.7)
        img = bg[..., None].repeat(3, axis=2) * 255
        up = np.where(up_p, ident["upper_ir"][0], ident["upper_ir"][1]) + track["ir_shift"]
        lo = np.where(lo_p, ident["lower_ir"][0], ident["lower_ir"][1]) + track["ir_shift"]
        vals = [(legs, lo), (torso, up), (arms, ident["skin_ir"] * 0.9), (head, ident["skin_ir"]), (bag, 0.25)]
        for mask, val in vals:
            img[mask] = (np.broadcast_to(val, mask.shape)[mask] * 255)[:, None]
        if modality == "fakeir":  # a generator's imperfect infrared: smoother, slightly off levels
            img = cv2.GaussianBlur(img, (0, 0), 1.2) * 0.9 + 20
    else:
        img = np.empty((height, width, 3), np.float32)
        img[:] = cam["bg"]
        img += (cam["grad"] * (yy - 0.5))[..., None]
        img += (cam["stripes"] * 120 * (np.sin(xx * 30 + yy * 10) > 0.8))[..., None]
        tint = track["tint"]
        up = np.where(up_p[..., None], ident["upper_rgb"][0], ident["upper_rgb"][1]) * tint
        lo = np.where(lo_p[..., None], ident["lower_rgb"][0], ident["lower_rgb"][1]) * tint
        vals = [(legs, lo), (torso, up), (arms, ident["skin_rgb"]), (head, ident["skin_rgb"]),
                (bag, np.float32([60, 50, 40]))]
        for mask, val in vals:
            img[mask] = np.broadcast_to(val, (height, width, 3))[mask]
    img = img * cam["gain"]
    if cam["blur"] > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), cam["blur"])
    img += rng.normal(0, 4, img.shape[:2])[..., None] if ir else rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(path, img, quality):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OutputError(f"cannot encode a JPEG for {path}")
    buf.tofile(path)


class World:
    """Deterministic identities and cameras: each is a function of (seed, kind, key) only."""

    def __init__(self, seed, height, width):
        self.seed, self.height, self.width = seed, height, width
        self._ids, self._cams = {}, {}

    def rng(self, *key):
        return np.random.default_rng([self.seed, *key])

    def identity(self, pid):
        if pid not in self._ids:
            self._ids[pid] = make_identity(self.rng(1, pid))
        return self._ids[pid]

    def camera(self, modality, cam):
        key = (modality, cam)
        if key not in self._cams:
            self._cams[key] = make_camera(self.rng(2, modality, cam))
        return self._cams[key]

    def frames(self, pid, cam, modalities, length, track_key):
        """Frame lists, one per modality, of one tracklet; modalities share pose (aligned)."""
        rng = self.rng(3, *track_key)
        track = make_track(rng)
        out = {m: [] for m in modalities}
        for t in range(length):
            for m in modalities:
                cam_m = self.camera(0 if m == "rgb" else 1, cam)
                out[m].append(render(self.identity(pid), cam_m, track, t, m, self.height, self.width, rng))
        return out


def _split_ids(num_ids, fractions):
    counts = [max(1, round(num_ids * f)) for f in fractions]
    first = num_ids - sum(counts)
    if first < 1:
        raise ConfigError(f"--num-ids {num_ids} is too small for the requested splits")
    return [first] + counts


# ----------------------------------------------------------------------------- HITSZ-VCM
def generate_vcm(root, num_ids=70, seed=1, height=128, width=64, num_cams=4, test_fraction=0.43,
                 min_len=12, max_len=30, short_fraction=0.05, layout="split", missing_modality=0, quality=90):
    """Write a HITSZ-VCM copy under ``root``; return a summary of what was written.

    Train ids are 1..N_train, test ids follow. Every identity appears in both modalities
    (except the first ``missing_modality`` train ids: visible only) in 2-3 cameras each,
    1-2 tracklets per camera, lengths in [min_len, max_len]; a ``short_fraction`` of extra
    tracklets are shorter than ``min_len``.
    """
    if layout not in ("split", "flat"):
        raise ConfigError(f"layout must be 'split' or 'flat', got '{layout}'")
    if num_cams < 2:
        raise ConfigError("num_cams must be at least 2 (identities are seen in 2+ cameras per modality)")
    n_train, n_test = _split_ids(num_ids, [test_fraction])
    world = World(seed, height, width)
    info = os.path.join(root, "info")
    os.makedirs(info, exist_ok=True)
    summary = {"train_ids": n_train, "test_ids": n_test}
    query_rows = []
    for part, pids in (("train", range(1, n_train + 1)), ("test", range(n_train + 1, num_ids + 1))):
        image_dir = os.path.join(root, part.capitalize()) if layout == "split" else root
        names, tracks, lengths = [], [], []
        for pid in pids:
            rng = world.rng(4, pid)
            modalities = (2,) if part == "train" and pid <= missing_modality else (2, 1)
            for mod in modalities:  # 2 visible, 1 infrared
                cams = np.sort(rng.choice(np.arange(1, num_cams + 1), int(rng.integers(2, min(3, num_cams) + 1)),
                                          replace=False))
                for cam in cams:
                    n_tracks = int(rng.integers(1, 3))
                    plan = [int(rng.integers(min_len, max_len + 1)) for _ in range(n_tracks)]
                    if rng.random() < short_fraction * 1.5:  # about short_fraction of all tracklets
                        plan.append(int(rng.integers(max(1, min_len // 3), min_len)))
                    frame_no = 0
                    folder = os.path.join(image_dir, f"{pid:04d}", "ir" if mod == 1 else "rgb", f"D{cam}")
                    for tno, length in enumerate(plan, 1):
                        kind = ["ir" if mod == 1 else "rgb"]
                        frames = world.frames(pid, int(cam), kind, length, (pid, mod, cam, tno))
                        start = len(names) + 1
                        for img in next(iter(frames.values())):
                            frame_no += 1
                            names.append(f"{pid:04d}M{mod}D{cam}T{tno}F{frame_no}.jpg")
                            _write(os.path.join(folder, f"{frame_no}.jpg"), img, quality)
                        tracks.append(f"{mod} {start} {len(names)} {pid} {cam}")
                        lengths.append((mod, length))
                        if part == "test" and mod == 1:
                            query_rows.append(len(tracks))
        with open(os.path.join(info, f"{part}_name.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
        with open(os.path.join(info, f"track_{part}_info.txt"), "w") as f:
            f.write("\n".join(tracks) + "\n")
        summary[f"{part}_tracklets"] = lengths
        summary[f"{part}_frames"] = len(names)
    with open(os.path.join(info, "query_IDX.txt"), "w") as f:
        f.write(" ".join(map(str, query_rows)) + "\n")
    summary["query_rows"] = query_rows
    return summary


# ----------------------------------------------------------------------------- BUPTCampus
def generate_bupt(root, num_ids=60, seed=1, height=128, width=64, test_fraction=0.35, aux_fraction=0.15,
                  min_len=8, max_len=24, quality=90):
    """Write a BUPTCampus copy under ``root`` (DATA/, data_paths.json, four lists); return a summary.

    Train and test ids appear in 2-3 of the six cameras with 1-2 aligned RGB+IR tracklets
    each; auxiliary ids in one camera. FakeIR frames exist for every RGB tracklet. Each test
    id has one query tracklet (alternately IR and RGB) and all its other tracklets, in both
    modalities, in the gallery.
    """
    n_train, n_test, n_aux = _split_ids(num_ids, [test_fraction, aux_fraction])
    world = World(seed, height, width)
    data_dir = os.path.join(root, "DATA")
    paths, lists = {}, {"train": [], "train_auxiliary": [], "query": [], "gallery": []}
    roles = ["train"] * n_train + ["test"] * n_test + ["aux"] * n_aux
    for pid, role in enumerate(roles, 1):
        rng = world.rng(5, pid)
        n_cams = 1 if role == "aux" else int(rng.integers(2, 4))
        cams = [CAMERAS[i] for i in sorted(rng.choice(len(CAMERAS), n_cams, replace=False))]
        entry = paths[str(pid)] = {"RGB": {}, "IR": {}}
        tracks = []
        for cam in cams:
            for tid in range(1, int(rng.integers(1, 3)) + 1):
                length = int(rng.integers(min_len, max_len + 1))
                cam_id = CAMERAS.index(cam)
                frames = world.frames(pid, cam_id + 1, ["rgb", "ir", "fakeir"], length, (pid, cam_id, tid))
                for mod, folder, key in (("rgb", "RGB", "RGB"), ("ir", "IR", "IR"), ("fakeir", "FakeIR", None)):
                    tag = "IR" if mod == "ir" else "RGB"
                    rel = [f"{pid}/{folder}/{cam}/{pid}_{tag}_{cam}_{tid}_{i}.jpg" for i in range(1, length + 1)]
                    for r, img in zip(rel, frames[mod]):
                        _write(os.path.join(data_dir, r), img, quality)
                    if key:
                        entry[key].setdefault(cam, {})[str(tid)] = rel
                tracks.append((cam, tid))
        if role == "train":
            lists["train"] += [f"{pid} RGB/IR {c} {t}" for c, t in tracks]
        elif role == "aux":
            lists["train_auxiliary"] += [f"{pid} RGB/IR {c} {t}" for c, t in tracks]
        else:
            q = int(rng.integers(0, len(tracks)))
            qmod = "IR" if pid % 2 else "RGB"
            lists["query"].append(f"{pid} {qmod} {tracks[q][0]} {tracks[q][1]}")
            for i, (c, t) in enumerate(tracks):
                if i != q:
                    lists["gallery"] += [f"{pid} RGB {c} {t}", f"{pid} IR {c} {t}"]
    with open(os.path.join(root, "data_paths.json"), "w") as f:
        json.dump(paths, f)
    for name, lines in lists.items():
        with open(os.path.join(root, f"{name}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return {"train_ids": n_train, "test_ids": n_test, "aux_ids": n_aux, **{k: len(v) for k, v in lists.items()}}


# dataset name -> (folder under data.root, file that marks a complete copy, generator)
SYNTHETIC = {
    "hitsz_vcm": ("HITSZ-VCM", os.path.join("info", "query_IDX.txt"), generate_vcm),
    "bupt_campus": ("BUPTCampus", "gallery.txt", generate_bupt),
}


def ensure_synthetic(name, root, seed=1):
    """Generate a synthetic copy of dataset ``name`` in ``root/<folder>`` unless a complete one is there.

    The marker file is written last, so an interrupted generation is redone. Returns the folder.
    """
    if name not in SYNTHETIC:
        raise ConfigError(f"data.synthetic can generate {sorted(SYNTHETIC)}, not '{name}'; set data.synthetic False")
    folder, marker, generate = SYNTHETIC[name]
    target = os.path.join(root, folder)
    if not os.path.isfile(os.path.join(target, marker)):
        print(f"generating a synthetic {name} copy in {target} (seed {seed}) ...", flush=True)
        generate(target, seed=seed)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", choices=["vcm", "bupt"], required=True)
    parser.add_argument("--root", required=True, help="folder to write the dataset into")
    parser.add_argument("--num-ids", type=int, default=70, help="identities in all splits together")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--height", type=int, default=128, help="frame height in pixels")
    parser.add_argument("--width", type=int, default=64, help="frame width in pixels")
    parser.add_argument("--test-fraction", type=float, default=None, help="share of test ids")
    parser.add_argument("--layout", choices=["split", "flat"], default="split", help="vcm: Train/+Test/ or flat")
    parser.add_argument("--num-cams", type=int, default=4, help="vcm: cameras per modality")
    args = parser.parse_args(argv)
    common = dict(root=args.root, num_ids=args.num_ids, seed=args.seed, height=args.height, width=args.width)
    if args.test_fraction is not None:
        common["test_fraction"] = args.test_fraction
    if args.format == "vcm":
        s = generate_vcm(layout=args.layout, num_cams=args.num_cams, **common)
        print(f"wrote HITSZ-VCM copy to {args.root}: {s['train_ids']} train ids "
              f"({len(s['train_tracklets'])} tracklets, "
              f"{s['train_frames']} frames), {s['test_ids']} test ids ({len(s['test_tracklets'])} tracklets, "
              f"{s['test_frames']} frames), layout {args.layout}")
    else:
        s = generate_bupt(**common)
        print(f"wrote BUPTCampus copy to {args.root}: {s['train_ids']} train ids ({s['train']} pairs), "
              f"{s['aux_ids']} auxiliary ids, {s['test_ids']} test ids ({s['query']} query, {s['gallery']} gallery)")


if __name__ == "__main__":
    import sys

    from ..errors import VLDError, one_line

    try:
        main()
    except VLDError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(e.exit_code)
