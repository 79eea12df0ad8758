"""Figures as PNG (matplotlib's Agg canvas, no display needed).

- ranked retrieval: each query tracklet's frames, then its top-k gallery tracklets framed
  green (same identity) or red (like the paper's Fig. 9);
- intra- versus inter-identity distance distributions of a cross-modal distance matrix
  (like the paper's Fig. 7).
"""
import os

import numpy as np
from PIL import Image

from ..data.base import read_frame
from ..errors import EvaluationError, MissingDependencyError
from .distance import compute_distance
from .protocols import select_protocol
from .rank import check_distmat, check_labels, ranked_gallery

try:
    from matplotlib.figure import Figure
except ModuleNotFoundError:
    raise MissingDependencyError("the figures of --visrank / test.visrank need matplotlib: "
                                 "pip install 'vld_plugin[plots]' (or pip install matplotlib)") from None

GREEN, RED, GREY = (0, 170, 0), (220, 0, 0), (160, 160, 160)


def _frames(tracklet, count):
    """``count`` evenly spaced frame paths of a tracklet (a list of paths or one path)."""
    paths = [tracklet] if isinstance(tracklet, (str, os.PathLike)) else list(tracklet)
    if not paths:
        raise EvaluationError("a tracklet has no frames; every tracklet needs at least one image path")
    if count == 1:
        return [paths[len(paths) // 2]]
    return [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int))]


def _load(path, size):
    h, w = size
    return np.asarray(read_frame(path).resize((w, h), Image.BILINEAR))


def _cell(paths, size, color, border):
    strip = np.concatenate([_load(p, size) for p in paths], axis=1)
    out = np.empty((strip.shape[0] + 2 * border, strip.shape[1] + 2 * border, 3), dtype=np.uint8)
    out[:] = color
    out[border:-border, border:-border] = strip
    return out


def plot_ranked_retrieval(distmat, q_paths, g_paths, q_pids, g_pids, save_path, q_camids=None, g_camids=None,
                          topk=6, query_indices=None, num_queries=4, query_frames=6, gallery_frames=1,
                          frame_size=(128, 64)):
    """Draw queries and their top-``topk`` gallery tracklets into ``save_path`` (PNG).

    ``q_paths``/``g_paths``: one entry per distmat row/column, a tracklet's list of frame paths.
    Gallery items with the query's pid and camid are left out when camids are given (the
    evaluation's rule); ties rank the lower gallery index first. Queries: ``query_indices`` or
    ``num_queries`` evenly spaced ones. Returns ``save_path``.
    """
    d = check_distmat(distmat).cpu()
    num_q, num_g = d.shape
    if len(q_paths) != num_q or len(g_paths) != num_g:
        raise EvaluationError(
            f"{len(q_paths)} query / {len(g_paths)} gallery tracklets given for a {num_q}x{num_g} distmat"
        )
    q_pids, g_pids = check_labels(q_pids, "q_pids", num_q), check_labels(g_pids, "g_pids", num_g)
    same_camera = q_camids is not None and g_camids is not None
    if same_camera:
        q_camids, g_camids = check_labels(q_camids, "q_camids", num_q), check_labels(g_camids, "g_camids", num_g)
    if query_indices is None:
        query_indices = np.unique(np.linspace(0, num_q - 1, min(num_queries, num_q)).round().astype(int))
    bad = [i for i in query_indices if not 0 <= i < num_q]
    if bad:
        raise EvaluationError(f"query_indices {bad} are outside 0..{num_q - 1}")

    border, gap = 4, 10
    rows = []
    for i in query_indices:
        cells = [_cell(_frames(q_paths[i], query_frames), frame_size, GREY, border)]
        order = ranked_gallery(d[i], q_pids[i], g_pids, topk, *((q_camids[i], g_camids) if same_camera else ()))
        for j in order.tolist():
            color = GREEN if g_pids[j] == q_pids[i] else RED
            cells.append(_cell(_frames(g_paths[j], gallery_frames), frame_size, color, border))
        rows.append(cells)
    query_width = max(r[0].shape[1] for r in rows)  # gallery columns line up across rows
    lines = []
    for query, *gallery in rows:
        query = _pad(query, 0, query_width - query.shape[1] + gap)
        lines.append(np.concatenate([query] + [_pad(c, 0, gap) for c in gallery], axis=1))
    width = max(line.shape[1] for line in lines)
    mosaic = np.concatenate([_pad(line, gap, width - line.shape[1]) for line in lines], axis=0)
    mosaic = np.pad(mosaic, ((gap, 0), (gap, 0), (0, 0)), constant_values=255)

    dpi = 100
    fig = Figure(figsize=(mosaic.shape[1] / dpi, mosaic.shape[0] / dpi + 0.4), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, mosaic.shape[0] / (mosaic.shape[0] + 0.4 * dpi)))
    ax.imshow(mosaic)
    ax.set_axis_off()
    fig.suptitle(f"query tracklet, then top-{topk} gallery (green: same identity, red: different)",
                 fontsize=10, y=0.99)
    return _save(fig, save_path)


def plot_distance_histogram(distmat, q_pids, g_pids, save_path, bins=100, title="cross-modal distances"):
    """Histogram of intra- (same pid) and inter-identity distances into ``save_path`` (PNG).

    Returns ``{'intra_mean', 'inter_mean', 'gap'}`` (gap = inter_mean - intra_mean).
    """
    d = check_distmat(distmat)
    same = (check_labels(q_pids, "q_pids", d.shape[0], d.device)[:, None]
            == check_labels(g_pids, "g_pids", d.shape[1], d.device)[None, :])
    intra, inter = d[same].cpu().numpy(), d[~same].cpu().numpy()
    if not len(intra) or not len(inter):
        raise EvaluationError("the distance histogram needs both same- and different-identity pairs")
    edges = np.linspace(min(intra.min(), inter.min()), max(intra.max(), inter.max()), bins + 1)
    stats = {"intra_mean": float(intra.mean(dtype=np.float64)), "inter_mean": float(inter.mean(dtype=np.float64))}
    stats["gap"] = stats["inter_mean"] - stats["intra_mean"]

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.add_subplot()
    for values, label, color in ((intra, "intra-identity", "tab:green"), (inter, "inter-identity", "tab:red")):
        ax.hist(values, bins=edges, density=True, alpha=0.5, color=color, label=f"{label} ({len(values)})")
    for key, color in (("intra_mean", "tab:green"), ("inter_mean", "tab:red")):
        ax.axvline(stats[key], color=color, linestyle="--")
    ax.set_title(f"{title}: mean gap {stats['gap']:.3g}")
    ax.set_xlabel("distance")
    ax.set_ylabel("density")
    ax.legend()
    fig.tight_layout()
    _save(fig, save_path)
    return stats


def visualize_protocols(qf, q_meta, gf, g_meta, protocols, save_dir, remove_same_camera,
                        dist_metric="inner_product", topk=10):
    """Per protocol, ``<name>_distances.png`` and (when the metas hold ``img_paths``) ``<name>_ranked.png``.

    Same arguments as ``evaluate_protocols``; returns the written paths.
    """
    written = []
    for p in protocols:
        pqf, pq, pgf, pg = select_protocol(p, qf, q_meta, gf, g_meta)
        distmat = compute_distance(pqf, pgf, dist_metric)
        hist = os.path.join(save_dir, f"{p.name}_distances.png")
        plot_distance_histogram(distmat, pq["pids"], pg["pids"], hist, title=f"{p.name} ({dist_metric})")
        written.append(hist)
        if "img_paths" in pq and "img_paths" in pg:
            cams = (pq["camids"], pg["camids"]) if remove_same_camera else (None, None)
            written.append(plot_ranked_retrieval(distmat, pq["img_paths"], pg["img_paths"], pq["pids"], pg["pids"],
                                                 os.path.join(save_dir, f"{p.name}_ranked.png"), *cams, topk=topk))
    return written


def _pad(image, bottom, right):
    return np.pad(image, ((0, bottom), (0, right), (0, 0)), constant_values=255)


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png")
    return path
