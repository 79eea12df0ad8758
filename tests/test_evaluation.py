"""evaluate_rank against torchreid and a stable reference, hand-computed cases, protocols, reports."""
import json
import math
import tracemalloc

import numpy as np
import pytest
import torch

from vld_plugin import compat
from vld_plugin.evaluation import (
    EvaluationError,
    compute_distance,
    evaluate_protocols,
    evaluate_rank,
    rerank_distance,
    results_table,
    save_results_json,
)
from vld_plugin.evaluation.rank import match_ranks
from vld_plugin.modality import INFRARED, VISIBLE, Protocol


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, remove_same_camera):
    """Plain per-query loop with a stable sort: the tie rule (lower gallery index first) spelled out."""
    cmcs, aps, inps = [], [], []
    for i in range(len(distmat)):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])) if remove_same_camera else \
            np.ones(len(order), bool)
        hits = (g_pids[order] == q_pids[i])[keep]
        if not hits.any():
            continue
        pos = np.flatnonzero(hits)
        cmcs.append([float(pos[0] <= r) for r in range(max_rank)])
        aps.append(np.mean(np.arange(1, len(pos) + 1) / (pos + 1)))
        inps.append(len(pos) / (pos[-1] + 1))
    return np.mean(cmcs, 0), np.mean(aps), np.mean(inps)


def random_case(seed, num_q=60, num_g=150, num_ids=25, num_cams=4, levels=None):
    rng = np.random.default_rng(seed)
    d = rng.random((num_q, num_g))  # float64: no two equal
    if levels:  # many exact ties
        d = np.floor(d * levels).astype(np.float32)
    q_pids = rng.integers(0, num_ids + 5, num_q)  # ids >= num_ids have no gallery match
    g_pids = rng.integers(0, num_ids, num_g)
    return d, q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_torchreid_market_rule(seed):
    d, qp, gp, qc, gc = random_case(seed)
    assert len(np.unique(d)) == d.size  # tie-free: numpy's unstable argsort is then well defined
    assert (~np.isin(qp, gp)).any() and len(set(zip(gp, gc))) < len(gp)  # unmatched queries, repeated combos
    ref_cmc, ref_map = compat.metrics.evaluate_rank(d, qp, gp, qc, gc, max_rank=20, use_cython=False)
    for chunk in (1 << 22, 200):  # one chunk, and one query per chunk
        cmc, mAP, _ = evaluate_rank(d, qp, gp, qc, gc, max_rank=20, chunk_elements=chunk)
        assert cmc.dtype == np.float32 and np.array_equal(cmc, ref_cmc)
        assert mAP == pytest.approx(ref_map, rel=1e-12, abs=0)


@pytest.mark.parametrize("remove_same_camera", [True, False])
@pytest.mark.parametrize("levels", [None, 4, 1])
def test_matches_stable_reference_with_ties(levels, remove_same_camera):
    d, qp, gp, qc, gc = random_case(3, levels=levels)
    cmc, mAP, mINP = evaluate_rank(d, qp, gp, qc, gc, 20, remove_same_camera, chunk_elements=1000)
    ref_cmc, ref_map, ref_inp = reference(d, qp, gp, qc, gc, 20, remove_same_camera)
    np.testing.assert_allclose(cmc, ref_cmc, rtol=1e-6)
    assert mAP == pytest.approx(ref_map, rel=1e-12)
    assert mINP == pytest.approx(ref_inp, rel=1e-12)


def test_torch_input_float64_and_device_agree_with_numpy():
    d, qp, gp, qc, gc = random_case(4, levels=7)
    expected = evaluate_rank(d, qp, gp, qc, gc)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        t = lambda a: torch.as_tensor(a, device=dev)  # noqa: E731
        got = evaluate_rank(t(d.astype(np.float64)), t(qp), t(gp), t(qc), t(gc))
        np.testing.assert_array_equal(got[0], expected[0])
        assert got[1:] == pytest.approx(expected[1:], rel=1e-12)


def test_hand_computed_map_and_minp():
    # query 0 (pid 1): matches at ranks 1 and 3 -> AP (1 + 2/3) / 2, INP 2/3
    # query 1 (pid 2): one match at rank 4 -> AP 1/4, INP 1/4
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5],
                  [0.5, 0.1, 0.2, 0.4, 0.3]])
    g_pids = np.array([1, 3, 1, 2, 4])
    cmc, mAP, mINP = evaluate_rank(d, [1, 2], g_pids, [0, 0], [1, 1, 1, 1, 1], max_rank=5)
    np.testing.assert_allclose(cmc, [0.5, 0.5, 0.5, 1, 1])
    assert mAP == pytest.approx(((1 + 2 / 3) / 2 + 1 / 4) / 2)
    assert mINP == pytest.approx((2 / 3 + 1 / 4) / 2)


def test_same_camera_rule_versus_buptcampus_rule():
    # the nearest match shares the query's camera: dropped under the HITSZ-VCM rule, kept under BUPTCampus'
    d = np.array([[0.1, 0.2, 0.3]])
    args = ([7], [7, 5, 7], [2], [2, 1, 3])
    cmc, mAP, mINP = evaluate_rank(d, *args, max_rank=3, remove_same_camera=True)
    np.testing.assert_allclose(cmc, [0, 1, 1])  # kept list: pid 5, pid 7
    assert (mAP, mINP) == pytest.approx((0.5, 0.5))
    cmc, mAP, mINP = evaluate_rank(d, *args, max_rank=3, remove_same_camera=False)
    np.testing.assert_allclose(cmc, [1, 1, 1])
    assert mAP == pytest.approx((1 + 2 / 3) / 2) and mINP == pytest.approx(2 / 3)


def test_ties_rank_the_lower_gallery_index_first():
    d = np.zeros((2, 4), np.float32)
    cmc, mAP, mINP = evaluate_rank(d, [1, 2], [3, 1, 2, 1], [0, 0], [1, 1, 1, 1], max_rank=4)
    # query pid 1: matches at gallery 1 and 3 -> ranks 2, 4; query pid 2: gallery 2 -> rank 3
    np.testing.assert_allclose(cmc, [0, 0.5, 1, 1])
    assert mAP == pytest.approx(((1 / 2 + 2 / 4) / 2 + 1 / 3) / 2)
    assert mINP == pytest.approx((2 / 4 + 1 / 3) / 2)


def test_gallery_smaller_than_max_rank_reports_nan_beyond():
    cmc, mAP, _ = evaluate_rank(np.array([[0.3, 0.1]]), [1], [1, 2], [0], [1, 1], max_rank=20)
    assert len(cmc) == 20 and np.allclose(cmc[:2], [0, 1]) and np.isnan(cmc[2:]).all()
    assert mAP == pytest.approx(0.5)


@pytest.mark.parametrize("args, message", [
    ((np.zeros((0, 3)), [], [1, 2, 3], [], [0, 0, 0]), "query set is empty"),
    ((np.zeros((2, 0)), [1, 2], [], [0, 0], []), "gallery set is empty"),
    ((np.zeros(3), [1], [1, 2, 3], [0], [0, 0, 0]), "must be 2-D"),
    ((np.zeros((2, 3)), [1], [1, 2, 3], [0, 0], [0, 0, 0]), "q_pids has shape (1,)"),
    ((np.zeros((2, 3)), [1, 2], [1, 2, 3], [0, 0], [0, 0]), "g_camids has shape (2,)"),
    ((np.zeros((2, 3)), [1.5, 2], [1, 2, 3], [0, 0], [0, 0, 0]), "integer labels"),
    ((np.array([[0.1, np.nan, 0.2]]), [1], [1, 2, 3], [0], [1, 1, 1]),
     "NaN/inf entries (first at query 0, gallery 1; 1 in queries 0-0)"),
    ((np.zeros((1, 3)), [9], [1, 2, 3], [0], [1, 1, 1]), "no query has a true match"),
    ((np.zeros((1, 3)), [1], [1, 2, 3], [0], [0, 1, 1]), "no query has a true match"),
])
def test_bad_input_gives_one_line_errors(args, message):
    with pytest.raises(EvaluationError) as e:
        evaluate_rank(*args)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_distance_in_a_later_chunk_is_located(bad):
    d, qp, gp, qc, gc = random_case(7)
    d[41, 17] = bad
    d[45, 3] = bad
    message = r"NaN/inf entries \(first at query 41, gallery 17; 2 in queries 40-49\)"
    torch.set_num_threads(1)  # one chunk at a time (restored after the test by conftest)
    with pytest.raises(EvaluationError, match=message):
        evaluate_rank(d, qp, gp, qc, gc, chunk_elements=10 * d.shape[1])  # chunks of 10 queries


def test_bad_max_rank():
    with pytest.raises(EvaluationError, match="max_rank must be a positive integer"):
        evaluate_rank(np.zeros((1, 2)), [1], [1, 2], [0], [1, 1], max_rank=0)


# --- match ranks against a stable argsort of whole rows ----------------------------------------

def stable_ranks(distmat, q_pids, g_pids, q_camids, g_camids, remove_same_camera=True):
    """Per query, the 0-based ranks of its matches among the kept items, from a stable argsort of the row."""
    g_pids, g_camids = np.asarray(g_pids), np.asarray(g_camids)
    out = []
    for i in range(len(distmat)):
        order = np.argsort(distmat[i], kind="stable")
        same = g_pids[order] == q_pids[i]
        keep = ~(same & (g_camids[order] == q_camids[i])) if remove_same_camera else np.ones(len(order), bool)
        out.append(np.flatnonzero(same[keep]).tolist())
    return out


def ranks_of(*args, **kwargs):
    ranks, n = match_ranks(*args, **kwargs)
    return [r[:k].tolist() for r, k in zip(ranks, n)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_match_tied_with_non_matches_follows_the_column_order(dtype):
    # query pid 7: ties at 0.5 with non-matches before (columns 0, 1) and after (column 4) the match at column 2
    d = np.array([[0.5, 0.5, 0.5, 0.2, 0.5, 0.5]], dtype)
    args = (d, [7], [5, 5, 7, 5, 5, 7], [0], [1] * 6)
    assert ranks_of(*args) == [[3, 5]] == stable_ranks(*args)


def test_several_matches_tied_together_and_with_non_matches():
    d = np.array([[0.3, 0.3, 0.3, 0.3, 0.3, 0.1]], np.float32)
    args = (d, [7], [1, 7, 7, 2, 7, 3], [0], [1] * 6)
    assert ranks_of(*args) == [[2, 3, 5]] == stable_ranks(*args)


@pytest.mark.parametrize("remove_same_camera, expected", [(True, [0, 2]), (False, [0, 1, 2, 4])])
def test_removed_same_camera_items_tied_with_matches(remove_same_camera, expected):
    # columns 0 and 3 share the query's pid and camera: removed under the HITSZ-VCM rule, column 0 tied with
    # the match at column 1 and ranked before it, column 3 the nearest item
    d = np.array([[0.3, 0.3, 0.3, 0.1, 0.3]])
    args = (d, [7], [7, 7, 3, 7, 7], [0], [0, 1, 2, 0, 2])
    assert ranks_of(*args, remove_same_camera) == [expected] == stable_ranks(*args, remove_same_camera)


def test_float64_distances_equal_after_rounding_to_float32_keep_their_order():
    # the distances near 1 all round to 1.0f, yet the match (column 1) ranks by its float64 value, not by column
    d = np.array([[1 + 1e-12, 1.0, 5.0],
                  [5.0, 1 + 1e-12, 1.0],
                  [1 + 2e-12, 1 + 1e-12, 1.0],
                  [1.0, 1 + 1e-12, 1 + 1e-12]])
    args = (d, [7] * 4, [3, 7, 3], [0] * 4, [1, 1, 1])
    assert ranks_of(*args) == [[0], [1], [1], [1]] == stable_ranks(*args)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negative_zero_ties_with_zero(dtype):
    d = np.array([[0.0, -0.0, -0.0, 0.0, -1.0],
                  [2.0, 0.0, -0.0, 1.0, 2.0],    # a -0.0 at a higher column ranks after the match at 0.0
                  [0.0, -0.0, 2.0, 1.0, 2.0]],   # a 0.0 at a lower column ranks before the match at -0.0
                 dtype)
    args = (d, [7, 7, 7], [3, 7, 3, 7, 3], [0, 0, 0], [1] * 5)
    assert ranks_of(*args) == [[2, 4], [0, 2], [1, 2]] == stable_ranks(*args)


def test_query_whose_matches_are_all_removed_is_skipped():
    d = np.array([[0.1, 0.2, 0.3],    # pid 7, camera 0: both pid-7 items are on camera 0, all removed
                  [0.3, 0.2, 0.1],    # pid 7, camera 1: matches at distance 0.1 (rank 0) and 0.3 (rank 2)
                  [0.1, 0.1, 0.1]])   # pid 9: not in the gallery
    args = (d, [7, 7, 9], [7, 3, 7], [0, 1, 0], [0, 2, 0])
    assert ranks_of(*args) == [[], [0, 2], []] == stable_ranks(*args)
    cmc, mAP, mINP = evaluate_rank(*args, max_rank=3)
    np.testing.assert_array_equal(cmc, [1, 1, 1])
    assert (mAP, mINP) == pytest.approx(((1 + 2 / 3) / 2, 2 / 3))


@pytest.mark.parametrize("levels", [None, 5, 1])
def test_match_ranks_equal_stable_argsort_for_every_chunking(levels):
    # many ties (levels) and same-camera items; chunk sizes from one row per chunk (and one tied match
    # recounted at a time) up to the whole matrix
    d, qp, gp, qc, gc = random_case(9, num_q=40, num_g=120, num_ids=6, num_cams=3, levels=levels)
    for remove_same_camera in (True, False):
        expected = stable_ranks(d, qp, gp, qc, gc, remove_same_camera)
        for chunk in (1, 120, 7 * 120 + 5, 1 << 22):
            assert ranks_of(d, qp, gp, qc, gc, remove_same_camera, chunk) == expected


@pytest.mark.parametrize("levels", [None, 3])
def test_chunking_changes_no_bit_of_the_metrics(levels):
    d, qp, gp, qc, gc = random_case(10, levels=levels)
    whole = evaluate_rank(d, qp, gp, qc, gc, chunk_elements=1 << 22)
    for chunk in (1, 150, 1000):  # one row per chunk, then 1 and 6 rows
        cmc, mAP, mINP = evaluate_rank(d, qp, gp, qc, gc, chunk_elements=chunk)
        np.testing.assert_array_equal(cmc, whole[0])
        assert (mAP, mINP) == whole[1:]


def test_chunks_bound_the_memory():
    # random distances, the worst case: most of each row lies below the farthest match
    rng = np.random.default_rng(11)
    num_q, num_g = 64, 50_000
    d = rng.random((num_q, num_g), dtype=np.float32)  # 12.8 MB
    qp, gp = rng.integers(0, 50, num_q), rng.integers(0, 50, num_g)
    qc, gc = rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)
    tracemalloc.start()
    try:
        torch.set_num_threads(2)  # two chunks in flight, one row each (restored after the test by conftest)
        cmc, mAP, mINP = evaluate_rank(d, qp, gp, qc, gc, chunk_elements=num_g)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8e6  # two rows' temporaries, not the matrix's (~100 bytes per distance unchunked)
    ref_cmc, ref_map, ref_inp = reference(d, qp, gp, qc, gc, 20, True)
    np.testing.assert_allclose(cmc, ref_cmc, rtol=1e-6)
    assert (mAP, mINP) == pytest.approx((ref_map, ref_inp), rel=1e-12)


def test_compute_distance_metrics():
    qf = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    gf = torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    assert torch.allclose(compute_distance(qf, gf), torch.tensor([[0.0, -2.0], [-8.0, -6.0]]))
    euclidean = torch.tensor([[5 ** 0.5, 1.0], [13 ** 0.5, 17 ** 0.5]])
    assert torch.allclose(compute_distance(qf, gf, "euclidean"), euclidean)
    assert torch.allclose(compute_distance(qf, gf, "cosine"), torch.tensor([[1.0, 0.0], [0.2, 0.4]]), atol=1e-6)
    with pytest.raises(EvaluationError, match="unknown distance metric 'l1'"):
        compute_distance(qf, gf, "l1")
    with pytest.raises(EvaluationError, match="2-d but gallery features 3-d"):
        compute_distance(qf, torch.ones(2, 3))
    with pytest.raises(EvaluationError, match="query features has NaN/inf in 1 of 2 rows"):
        compute_distance(torch.tensor([[1.0, 0.0], [float("nan"), 0.0]]), gf)


# --- protocols ------------------------------------------------------------------------------

BUPT = [Protocol("visible-to-infrared", "query", VISIBLE, "gallery", INFRARED),
        Protocol("infrared-to-visible", "query", INFRARED, "gallery", VISIBLE),
        Protocol("visible-to-visible", "query", VISIBLE, "gallery", VISIBLE),
        Protocol("infrared-to-infrared", "query", INFRARED, "gallery", INFRARED)]


def bupt_like():
    """Hand-placed 2-D features: only infrared-to-visible ranks a wrong identity first."""
    qf = np.array([[0, 0], [10, 0]], np.float32)  # pid 1 visible, pid 2 infrared
    gf = np.array([[0, 1], [10, -0.5], [10, 1], [10, 2]], np.float32)
    q_meta = {"pids": [1, 2], "camids": [0, 3], "modalities": [VISIBLE, INFRARED]}
    g_meta = {"pids": [1, 2, 1, 2], "camids": [1, 2, 3, 3], "modalities": [INFRARED, INFRARED, VISIBLE, VISIBLE]}
    return qf, q_meta, gf, g_meta


def test_buptcampus_four_protocols_by_modality_masks():
    qf, q_meta, gf, g_meta = bupt_like()
    res = evaluate_protocols(qf, q_meta, gf, g_meta, BUPT, remove_same_camera=False, dist_metric="euclidean")
    assert list(res) == [p.name for p in BUPT]
    for name in ("visible-to-infrared", "visible-to-visible", "infrared-to-infrared"):
        assert res[name]["rank1"] == 1 and res[name]["mAP"] == 1 and res[name]["mINP"] == 1
    ir2v = res["infrared-to-visible"]  # pid 2 infrared query: pid 1 visible at distance 1, its match at 2
    assert ir2v["rank1"] == 0 and ir2v["mAP"] == 0.5 and ir2v["mINP"] == 0.5
    assert all(math.isnan(ir2v[k]) for k in ("rank5", "rank10", "rank20"))  # beyond a gallery of 2
    assert set(ir2v) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}
    # the HITSZ-VCM camera rule drops that match (same camera 3): no valid query left
    with pytest.raises(EvaluationError, match="no query has a true match"):
        evaluate_protocols(qf, q_meta, gf, g_meta, BUPT[1:2], remove_same_camera=True, dist_metric="euclidean")


def test_hitsz_protocols_swap_splits():
    rng = np.random.default_rng(5)
    n_ir, n_v = 30, 40
    q_meta = {"pids": rng.integers(0, 8, n_ir), "camids": rng.integers(0, 6, n_ir), "modalities": [INFRARED] * n_ir}
    g_meta = {"pids": rng.integers(0, 8, n_v), "camids": rng.integers(0, 6, n_v), "modalities": [VISIBLE] * n_v}
    qf, gf = torch.randn(n_ir, 16), torch.randn(n_v, 16)
    hitsz = [Protocol("infrared-to-visible", "query", INFRARED, "gallery", VISIBLE),
             Protocol("visible-to-infrared", "gallery", VISIBLE, "query", INFRARED)]
    res = evaluate_protocols(qf, q_meta, gf, g_meta, hitsz, remove_same_camera=True)
    for name, (a, am, b, bm) in (("infrared-to-visible", (qf, q_meta, gf, g_meta)),
                                 ("visible-to-infrared", (gf, g_meta, qf, q_meta))):
        cmc, mAP, mINP = evaluate_rank(-(a @ b.T), am["pids"], bm["pids"], am["camids"], bm["camids"])
        assert res[name] == {"rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9], "rank20": cmc[19],
                             "mAP": mAP, "mINP": mINP}


@pytest.mark.parametrize("change, message", [
    (lambda q, g, p: (q.pop("camids"), None), "q_meta lacks 'camids'"),
    (lambda q, g, p: g.update(pids=[1, 2]), "g_meta['pids'] has 2 entries but there are 4 feature rows"),
    (lambda q, g, p: p.append(Protocol("x", "train", 0, "gallery", 1)), "names split 'train'"),
    (lambda q, g, p: p.append(("x", "query")), "lacks name, query_split"),
    (lambda q, g, p: p.append(Protocol("rgb-to-thermal", "query", 0, "gallery", 2)),
     "protocol 'rgb-to-thermal': no gallery tracklets of modality 2"),
])
def test_protocol_bad_input(change, message):
    qf, q_meta, gf, g_meta = bupt_like()
    protocols = []
    change(q_meta, g_meta, protocols)
    with pytest.raises(EvaluationError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        evaluate_protocols(qf, q_meta, gf, g_meta, protocols or BUPT, remove_same_camera=False)


def test_protocol_nan_features_and_bad_ranks():
    qf, q_meta, gf, g_meta = bupt_like()
    gf[2, 0] = np.nan
    with pytest.raises(EvaluationError, match="gallery-split features has NaN/inf in 1 of 4 rows"):
        evaluate_protocols(qf, q_meta, gf, g_meta, BUPT, remove_same_camera=False)
    with pytest.raises(EvaluationError, match="beyond max_rank=10"):
        evaluate_protocols(qf, q_meta, gf, g_meta, BUPT, remove_same_camera=False, max_rank=10)
    with pytest.raises(EvaluationError, match="no protocols"):
        evaluate_protocols(qf, q_meta, gf, g_meta, [], remove_same_camera=False)


def test_rerank_inner_product_on_clustered_features():
    rng = np.random.default_rng(6)
    centres = rng.standard_normal((5, 32)) * 3
    pids_q, pids_g = np.repeat(np.arange(5), 2), np.repeat(np.arange(5), 6)
    qf = torch.tensor(centres[pids_q] + 0.3 * rng.standard_normal((10, 32)), dtype=torch.float32)
    gf = torch.tensor(centres[pids_g] + 0.3 * rng.standard_normal((30, 32)), dtype=torch.float32)
    d = rerank_distance(qf, gf, "inner_product")
    assert d.shape == (10, 30) and bool((d >= 0).all())
    _, mAP, mINP = evaluate_rank(d, pids_q, pids_g, np.zeros(10, int), np.ones(30, int))
    assert mAP == pytest.approx(1) and mINP == pytest.approx(1)
    q_meta = {"pids": pids_q, "camids": np.zeros(10, int), "modalities": [INFRARED] * 10}
    g_meta = {"pids": pids_g, "camids": np.ones(30, int), "modalities": [VISIBLE] * 30}
    res = evaluate_protocols(qf, q_meta, gf, g_meta, BUPT[1:2], remove_same_camera=True, rerank=True)
    assert res["infrared-to-visible"]["mAP"] == pytest.approx(mAP)


def test_results_table_and_json(tmp_path):
    results = {"hitsz_vcm": {"infrared-to-visible": {"rank1": 0.5, "rank5": 0.75, "rank10": 1.0, "rank20": float("nan"),
                                                     "mAP": 0.123456, "mINP": 0.05}}}
    table = results_table(results)
    header, _, row = table.splitlines()
    assert header.split() == ["dataset", "protocol", "R1", "R5", "R10", "R20", "mAP", "mINP"]
    assert row.split() == ["hitsz_vcm", "infrared-to-visible", "50.00", "75.00", "100.00", "n/a", "12.35", "5.00"]
    path = save_results_json(results, str(tmp_path / "run" / "results.json"))
    loaded = json.load(open(path))
    assert loaded["hitsz_vcm"]["infrared-to-visible"]["rank20"] is None
    assert loaded["hitsz_vcm"]["infrared-to-visible"]["mAP"] == 0.123456


def test_cpu_thread_setting_is_restored():
    threads = torch.get_num_threads()
    d, qp, gp, qc, gc = random_case(8)
    evaluate_rank(d, qp, gp, qc, gc)
    assert torch.get_num_threads() == threads
    with pytest.raises(EvaluationError):
        evaluate_rank(d, qp, gp + 1000, qc, gc)
    assert torch.get_num_threads() == threads
