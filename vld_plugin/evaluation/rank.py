"""CMC, mAP and mINP from a distance matrix, vectorised in torch (CPU or GPU).

The ranking follows torchreid's ``evaluate_rank`` (Market-1501 rule) and AGW's mINP, with
one rule for ties that NumPy's unstable argsort leaves open: among gallery items at equal
distance, the lower gallery index ranks first (a stable sort).

Only the ranks of the true matches matter, and no Python loop runs over queries: each row's
distances are sorted by value only (NumPy's SIMD sort on CPU), a match's rank is the number
of distances below its own (``searchsorted``), plus equal ones at a lower gallery index,
minus the removed same-camera items ranked before it. Matches are found per identity, not
by a full query x gallery comparison.
"""
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
        raise _nonfinite(d)
    return d.detach().contiguous()


def _nonfinite(d, first_row=0):
    bad = ~torch.isfinite(d)
    q, g = bad.nonzero()[0].tolist()
    return EvaluationError(
        f"distmat has {int(bad.sum())} NaN/inf entries (first at query {q + first_row}, gallery {g}); "
        "check the features for NaN (diverged training or a broken checkpoint)"
    )


def _sorted_rows(d):
    # NumPy's SIMD sort is ~10x faster than torch's on CPU; only the values are needed
    if d.device.type == "cpu":
        return torch.from_numpy(np.sort(d.numpy(), axis=1))
    return torch.sort(d, dim=1).values


def _slots(rows, counts):
    """Position of each entry within its row, for entries grouped by ascending row."""
    return torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows]


def _same_pid_pairs(q_pids, g_pids):
    """(query row, gallery column) of every pair with equal pids, grouped by ascending row."""
    g_sorted, g_order = torch.sort(g_pids, stable=True)
    first = torch.searchsorted(g_sorted, q_pids, right=False)
    counts = torch.searchsorted(g_sorted, q_pids, right=True) - first
    rows = torch.repeat_interleave(torch.arange(len(q_pids), device=q_pids.device), counts)
    return rows, g_order[first[rows] + _slots(rows, counts)]


def _padded(rows, cols, num_rows, fill_col, *values):
    """Scatter per-row lists (grouped by ascending ``rows``) into (num_rows, width) tensors."""
    n = torch.bincount(rows, minlength=num_rows)
    width = max(int(n.max()) if len(n) else 0, 1)
    slot = _slots(rows, n)
    out = []
    for v, fill in ((cols, fill_col),) + values:
        t = torch.full((num_rows, width), fill, dtype=v.dtype, device=rows.device)
        t[rows, slot] = v
        out.append(t)
    return n, out


def match_ranks(distmat, q_pids, g_pids, q_camids, g_camids, remove_same_camera=True, chunk_elements=1 << 22,
                first_row=0):
    """Per query: the ranks (0-based, among kept gallery items) of its true matches.

    Returns ``(ranks, num_matches)``: ``ranks`` is a (Q, M) long tensor, row i ascending in
    its first ``num_matches[i]`` entries (the rest is padding). Memory grows with Q x G:
    call it on row slices to bound it (``chunk_elements`` bounds only the work on ties;
    ``first_row`` is the slice's offset, for messages). NaN/inf raise EvaluationError.
    """
    d = distmat
    num_q, num_g = d.shape
    inf = float("inf")
    rows, cols = _same_pid_pairs(q_pids, g_pids)
    values = d[rows, cols]
    junk = (q_camids[rows] == g_camids[cols]) if remove_same_camera else torch.zeros_like(rows, dtype=torch.bool)
    num_matches, (good_i, good_d) = _padded(rows[~junk], cols[~junk], num_q, num_g, (values[~junk], inf))
    _, (junk_i, junk_d) = _padded(rows[junk], cols[junk], num_q, num_g, (values[junk], inf))

    # items strictly closer than each match, then equal ones with a lower gallery index
    sorted_d = _sorted_rows(d)
    if not bool(torch.isfinite(sorted_d[:, [0, -1]]).all()):  # NaN and inf sort to the ends
        raise _nonfinite(d, first_row)
    closer = torch.searchsorted(sorted_d, good_d, right=False)
    equal = torch.searchsorted(sorted_d, good_d, right=True) - closer
    ties = (equal > 1).nonzero()
    step = max(1, chunk_elements // num_g)
    for tq, tj in (ties[s:s + step].T for s in range(0, len(ties), step)):
        same = d[tq] == good_d[tq, tj, None]
        lower = torch.arange(num_g, device=d.device) < good_i[tq, tj, None]
        closer[tq, tj] += (same & lower).sum(1)

    # minus the removed same-camera items that would have ranked before the match
    jd, ji = junk_d[:, None, :], junk_i[:, None, :]
    gd, gi = good_d[:, :, None], good_i[:, :, None]
    closer -= ((jd < gd) | ((jd == gd) & (ji < gi))).sum(2)
    return torch.sort(closer, dim=1).values, num_matches


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20, remove_same_camera=True,
                  chunk_elements=1 << 22):
    """CMC (``max_rank`` entries), mAP and mINP; smaller distance = more similar.

    Arguments as torchreid's ``evaluate_rank`` (numpy arrays or torch tensors; a tensor's device
    is used). ``remove_same_camera=True``: gallery items with the query's pid and camid are
    dropped (HITSZ-VCM / Market-1501); ``False``: no filtering (BUPTCampus). Queries without a
    match are skipped. Ties: the lower gallery index ranks first. CMC entries for ranks beyond
    the gallery size are NaN. Queries are processed in chunks of about ``chunk_elements``
    distances. Returns ``(cmc float32 numpy array, mAP float, mINP float)``.
    """
    d = check_distmat(distmat, check_finite=False)  # checked per chunk, for free, after sorting
    if d.device.type != "cpu":
        return _evaluate(d, q_pids, g_pids, q_camids, g_camids, max_rank, remove_same_camera, chunk_elements)
    # On CPU the work is NumPy's (single-threaded) sort plus small tensors, for which torch's
    # thread pool only adds synchronisation: 10x slower on a busy machine (benchmarks/).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _evaluate(d, q_pids, g_pids, q_camids, g_camids, max_rank, remove_same_camera, chunk_elements)
    finally:
        torch.set_num_threads(threads)


def _evaluate(d, q_pids, g_pids, q_camids, g_camids, max_rank, remove_same_camera, chunk_elements):
    num_q, num_g = d.shape
    if not isinstance(max_rank, (int, np.integer)) or max_rank < 1:
        raise EvaluationError(f"max_rank must be a positive integer, got {max_rank!r}")
    q_pids = check_labels(q_pids, "q_pids", num_q, d.device)
    g_pids = check_labels(g_pids, "g_pids", num_g, d.device)
    q_camids = check_labels(q_camids, "q_camids", num_q, d.device)
    g_camids = check_labels(g_camids, "g_camids", num_g, d.device)

    first_hist = torch.zeros(num_g, dtype=torch.long, device=d.device)
    ap_sum = torch.zeros((), dtype=torch.float64, device=d.device)
    inp_sum = torch.zeros((), dtype=torch.float64, device=d.device)
    step = max(1, chunk_elements // num_g)
    for s in range(0, num_q, step):
        e = min(s + step, num_q)
        ranks, n = match_ranks(d[s:e], q_pids[s:e], g_pids, q_camids[s:e], g_camids, remove_same_camera,
                               chunk_elements, first_row=s)
        valid = n > 0
        ranks, n = ranks[valid], n[valid]
        if not len(n):
            continue
        hits = torch.arange(1, ranks.shape[1] + 1, device=d.device, dtype=torch.float64)
        precision = (hits / (ranks + 1)).masked_fill(hits > n[:, None], 0)
        ap_sum += (precision.sum(1) / n).sum()
        last = ranks.gather(1, (n - 1)[:, None]).squeeze(1)
        inp_sum += (n.double() / (last + 1).double()).sum()
        first_hist += torch.bincount(ranks[:, 0], minlength=num_g)

    num_valid = int(first_hist.sum())
    if num_valid == 0:
        raise EvaluationError(
            f"no query has a true match in the gallery ({num_q} queries, {num_g} gallery items"
            f"{', same-camera matches removed' if remove_same_camera else ''}); check that query and "
            "gallery pids/camids come from the same test split"
        )
    cmc = torch.full((max_rank,), float("nan"), dtype=torch.float32)
    reach = min(max_rank, num_g)
    cmc[:reach] = first_hist.cumsum(0)[:reach].cpu().float() / np.float32(num_valid)
    return cmc.numpy(), float(ap_sum) / num_valid, float(inp_sum) / num_valid


def ranked_gallery(distmat_row, q_pid, g_pids, topk, q_camid=None, g_camids=None):
    """Indices of one query's top-``topk`` gallery items in evaluation order (same tie rule).

    With ``q_camid`` and ``g_camids`` given, items with the query's pid and camid are left out.
    """
    order = torch.sort(torch.as_tensor(distmat_row), stable=True).indices
    if g_camids is not None:
        g_pids, g_camids = torch.as_tensor(g_pids)[order], torch.as_tensor(g_camids)[order]
        order = order[~((g_pids == int(q_pid)) & (g_camids == int(q_camid)))]
    return order[:topk]
