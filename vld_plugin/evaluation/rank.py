"""CMC, mAP and mINP from a distance matrix, without sorting whole rows.

The ranking follows torchreid's ``evaluate_rank`` (Market-1501 rule) and AGW's mINP, with
one rule for ties that NumPy's unstable argsort leaves open: among gallery items at equal
distance, the lower gallery index ranks first (a stable sort).

Only the ranks of the true matches matter. Per query, only the candidates (the distances up
to its farthest true match, a few percent of the row for a trained model) are taken out and
sorted, those of a whole chunk of queries in one NumPy sort of integer keys (row, distance
rounded to float32); chunks run on parallel threads, as many as torch uses. A match's rank is
the number of candidates keyed below it (``searchsorted``), minus the removed same-camera
items ranked before it. A match whose key another candidate shares (an equal distance, or a
float64 one equal after rounding) is counted against its whole row instead, with the tie rule.
The work is NumPy's, on the CPU: torch tensors, on any device, are copied there one chunk of
queries at a time.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import EvaluationError


def _as_tensor(x, name, device=None):
    try:
        t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x, device=device)
    except (TypeError, ValueError, RuntimeError) as e:
        raise EvaluationError(f"{name} cannot be read as an array ({e}); pass a numpy array or torch tensor") from None
    return t


def check_labels(x, name, length, device=None):
    """1-D integer labels of ``length`` entries as a long tensor on ``device``, or EvaluationError."""
    t = _as_tensor(x, name, device)
    if t.dim() != 1 or len(t) != length:
        raise EvaluationError(
            f"{name} has shape {tuple(t.shape)} but the distance matrix needs {length} entries on that axis; "
            "pass one label per query (rows) or gallery item (columns)"
        )
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise EvaluationError(f"{name} must hold integer labels, got dtype {t.dtype}")
    return t.long()


def check_distmat(distmat, check_finite=True):
    """``distmat`` as a 2-D floating torch tensor (finite entries unless told not to check), or EvaluationError."""
    d = _as_tensor(distmat, "distmat")
    if d.dim() != 2:
        raise EvaluationError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(d.shape)}")
    if d.shape[0] == 0 or d.shape[1] == 0:
        side = "query" if d.shape[0] == 0 else "gallery"
        raise EvaluationError(f"the {side} set is empty (distmat shape {tuple(d.shape)}); nothing to evaluate")
    if not d.is_floating_point():
        d = d.double()
    elif d.dtype in (torch.float16, torch.bfloat16):
        d = d.float()
    if check_finite and not bool(torch.isfinite(d).all()):
        raise _nonfinite(_numpy(d))
    return d.detach().contiguous()


def _numpy(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _nonfinite(d, first_row=0):
    """EvaluationError for the rows ``d`` (queries ``first_row`` on): where the first NaN/inf is, and how many."""
    bad = ~np.isfinite(d)
    q, g = np.argwhere(bad)[0]
    return EvaluationError(
        f"distmat has NaN/inf entries (first at query {q + first_row}, gallery {g}; {int(bad.sum())} in queries "
        f"{first_row}-{first_row + len(d) - 1}); check the features for NaN (diverged training or a broken checkpoint)"
    )


def _slots(rows, counts):
    """Position of each entry within its row, for entries grouped by ascending row."""
    return np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]


def _same_pid_pairs(q_pids, g_pids):
    """(query row, gallery column) of every pair with equal pids, by ascending row, then column."""
    g_order = np.argsort(g_pids, kind="stable")
    g_sorted = g_pids[g_order]
    first = np.searchsorted(g_sorted, q_pids, "left")
    counts = np.searchsorted(g_sorted, q_pids, "right") - first
    rows = np.repeat(np.arange(len(q_pids)), counts)
    return rows, g_order[first[rows] + _slots(rows, counts)]


def _keys(rows, values):
    """int64 keys ordered by row, then value rounded to float32 (order-preserving bits; -0.0 as 0.0)."""
    bits = (values.astype(np.float32, copy=False) + np.float32(0)).view(np.int32)  # + 0 turns -0.0 into 0.0
    return (rows << 32) + (bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF)))


def _block_ranks(d, rows, cols, junk, chunk_elements, first_row):
    """``match_ranks`` of one NumPy block, given its same-pid pairs (grouped by row) and which are junk."""
    num_q, num_g = d.shape
    if not np.isfinite(d).all():
        raise _nonfinite(d, first_row)
    flat_d = d.ravel()

    # each row's items of the query's pid in evaluation order (distance, then column)
    slot = _slots(rows, np.bincount(rows, minlength=num_q))
    col = np.full((num_q, int(slot.max(initial=0)) + 1), num_g)
    col[rows, slot] = cols
    dist = np.full(col.shape, np.inf, d.dtype)
    dist[rows, slot] = flat_d[rows * num_g + cols]
    removed = np.zeros(col.shape, bool)
    removed[rows, slot] = junk
    order = np.argsort(dist, axis=1, kind="stable")
    col, dist, removed = (np.take_along_axis(a, order, 1) for a in (col, dist, removed))
    match = (col < num_g) & ~removed
    match_q, match_j = np.nonzero(match)

    # candidates: each row's distances up to its farthest match, sorted by (row, distance)
    flat = np.flatnonzero(d <= np.where(match, dist, -np.inf).max(1)[:, None])
    candidates = _keys(flat // num_g, flat_d[flat])
    candidates.sort()
    keys = _keys(match_q, dist[match_q, match_j])  # ascending: searchsorted's fast case
    below = np.searchsorted(candidates, keys)
    closer = below - np.searchsorted(candidates, (np.arange(num_q, dtype=np.int64) << 32) - (1 << 31))[match_q]

    # a key another candidate shares: count the whole row, equal distances at a lower column first
    shared = np.flatnonzero(np.searchsorted(candidates, keys, "right") - below > 1)
    step = max(1, chunk_elements // num_g)
    for part in (shared[s:s + step] for s in range(0, len(shared), step)):
        q, j = match_q[part], match_j[part]
        row, dist_m, col_m = d[q], dist[q, j, None], col[q, j, None]
        closer[part] = ((row < dist_m) | ((row == dist_m) & (np.arange(num_g) < col_m))).sum(1)

    closer -= np.cumsum(removed, axis=1)[match_q, match_j]  # minus the removed items ranked before
    num_matches = np.bincount(match_q, minlength=num_q)
    ranks = np.full((num_q, max(int(num_matches.max()), 1)), num_g)
    ranks[match_q, _slots(match_q, num_matches)] = closer
    return ranks, num_matches


def _pairs(q_pids, g_pids, q_camids, g_camids, remove_same_camera):
    """Same-pid (row, column) pairs grouped by row, and which of them the camera rule removes."""
    rows, cols = _same_pid_pairs(q_pids, g_pids)
    junk = (q_camids[rows] == g_camids[cols]) if remove_same_camera else np.zeros(len(rows), bool)
    return rows, cols, junk


def match_ranks(distmat, q_pids, g_pids, q_camids, g_camids, remove_same_camera=True, chunk_elements=1 << 22,
                first_row=0):
    """Per query: the ranks (0-based, among kept gallery items) of its true matches.

    Arguments are NumPy arrays or torch tensors. Returns ``(ranks, num_matches)`` as long
    tensors: ``ranks`` is (Q, M), row i ascending in its first ``num_matches[i]`` entries (the
    rest is padding). Memory grows with Q x G: call it on row slices to bound it
    (``chunk_elements`` bounds only the exact recount of matches with ties; ``first_row`` is
    the slice's offset, for messages). NaN/inf raise EvaluationError.
    """
    d, q_pids, g_pids, q_camids, g_camids = map(_numpy, (distmat, q_pids, g_pids, q_camids, g_camids))
    pairs = _pairs(q_pids, g_pids, q_camids, g_camids, remove_same_camera)
    return tuple(map(torch.from_numpy, _block_ranks(d, *pairs, chunk_elements, first_row)))


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20, remove_same_camera=True,
                  chunk_elements=1 << 22):
    """CMC (``max_rank`` entries), mAP and mINP; smaller distance = more similar.

    Arguments as torchreid's ``evaluate_rank`` (numpy arrays or torch tensors, on any device).
    ``remove_same_camera=True``: gallery items with the query's pid and camid are dropped
    (HITSZ-VCM / Market-1501); ``False``: no filtering (BUPTCampus). Queries without a match
    are skipped. Ties: the lower gallery index ranks first. CMC entries for ranks beyond the
    gallery size are NaN. Queries are processed in chunks on as many threads as torch uses,
    about ``chunk_elements`` distances in all at a time (at least one row per thread), which
    bounds the memory. Returns ``(cmc float32 numpy array, mAP float, mINP float)``.
    """
    d = check_distmat(distmat, check_finite=False)  # checked chunk by chunk
    num_q, num_g = d.shape
    if not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise EvaluationError(f"max_rank must be a positive integer, got {max_rank!r}")
    q_pids, q_camids = (_numpy(check_labels(x, name, num_q)) for x, name in ((q_pids, "q_pids"),
                                                                             (q_camids, "q_camids")))
    g_pids, g_camids = (_numpy(check_labels(x, name, num_g)) for x, name in ((g_pids, "g_pids"),
                                                                             (g_camids, "g_camids")))
    rows, cols, junk = _pairs(q_pids, g_pids, q_camids, g_camids, remove_same_camera)

    first = np.full(num_q, -1)  # per query (summed once at the end, so chunking changes no bit)
    ap, inp = np.zeros(num_q), np.zeros(num_q)
    threads = torch.get_num_threads()
    step = max(1, chunk_elements // (num_g * threads))  # all threads' chunks together: chunk_elements

    def rank_chunk(s):  # NumPy releases the GIL in the heavy parts: chunks run on parallel threads
        a, b = np.searchsorted(rows, [s, s + step])  # this chunk's pairs
        ranks, n = _block_ranks(_numpy(d[s:s + step]), rows[a:b] - s, cols[a:b], junk[a:b], step * num_g, s)
        valid = np.flatnonzero(n)
        ranks, n = ranks[valid], n[valid]
        hits = np.arange(1, ranks.shape[1] + 1)
        ap[s + valid] = np.where(hits <= n[:, None], hits / (ranks + 1), 0).sum(1) / n
        inp[s + valid] = n / (ranks[np.arange(len(n)), n - 1] + 1)
        first[s + valid] = ranks[:, 0]

    starts = range(0, num_q, step)
    with ThreadPoolExecutor(min(len(starts), threads)) as pool:
        list(pool.map(rank_chunk, starts))  # list(): re-raises a chunk's error here

    num_valid = int((first >= 0).sum())
    if num_valid == 0:
        raise EvaluationError(
            f"no query has a true match in the gallery ({num_q} queries, {num_g} gallery items"
            f"{', same-camera matches removed' if remove_same_camera else ''}); check that query and "
            "gallery pids/camids come from the same test split"
        )
    cmc = np.full(max_rank, np.nan, np.float32)
    reach = min(max_rank, num_g)
    cmc[:reach] = np.bincount(first[first >= 0], minlength=num_g).cumsum()[:reach].astype(np.float32)
    cmc[:reach] /= np.float32(num_valid)
    return cmc, float(ap.sum()) / num_valid, float(inp.sum()) / num_valid


def ranked_gallery(distmat_row, q_pid, g_pids, topk, q_camid=None, g_camids=None):
    """Indices of one query's top-``topk`` gallery items in evaluation order (same tie rule).

    With ``q_camid`` and ``g_camids`` given, items with the query's pid and camid are left out.
    """
    order = torch.sort(torch.as_tensor(distmat_row), stable=True).indices
    if g_camids is not None:
        g_pids, g_camids = torch.as_tensor(g_pids)[order], torch.as_tensor(g_camids)[order]
        order = order[~((g_pids == int(q_pid)) & (g_camids == int(q_camid)))]
    return order[:topk]
