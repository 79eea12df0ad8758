"""Feature-level evaluation of a dataset's protocols.

A protocol is any object with ``name``, ``query_split``, ``query_modality``,
``gallery_split``, ``gallery_modality`` (``vld_plugin.data.Protocol``): its query set is
the tracklets of split ``query_split`` ('query' or 'gallery') with modality
``query_modality``, likewise for its gallery. Features of both splits are extracted once
and every protocol selects its rows by modality mask.
"""
import numpy as np
import torch

from ..errors import EvaluationError
from .distance import check_features, compute_distance, rerank_distance
from .rank import evaluate_rank

META_KEYS = ("pids", "camids", "modalities")
SPLITS = ("query", "gallery")
PROTOCOL_FIELDS = ("name", "query_split", "query_modality", "gallery_split", "gallery_modality")


def _check_meta(meta, feats, name):
    if not isinstance(meta, dict):
        raise EvaluationError(f"{name} must be a dict with keys {', '.join(META_KEYS)}, got {type(meta).__name__}")
    out = {}
    for key in META_KEYS:
        if key not in meta:
            raise EvaluationError(f"{name} lacks '{key}' (it needs {', '.join(META_KEYS)}; optional 'img_paths')")
        out[key] = torch.as_tensor(np.asarray(meta[key]) if not torch.is_tensor(meta[key]) else meta[key]).cpu()
    if "img_paths" in meta:
        out["img_paths"] = list(meta["img_paths"])
    for key, value in out.items():
        if len(value) != len(feats):
            raise EvaluationError(f"{name}['{key}'] has {len(value)} entries but there are {len(feats)} feature rows")
    return out


def _check_protocol(p):
    missing = [f for f in PROTOCOL_FIELDS if not hasattr(p, f)]
    if missing:
        raise EvaluationError(f"protocol {p!r} lacks {', '.join(missing)}; use vld_plugin.data.Protocol")
    for split in (p.query_split, p.gallery_split):
        if split not in SPLITS:
            raise EvaluationError(f"protocol '{p.name}' names split '{split}'; splits are 'query' or 'gallery'")


def select_protocol(protocol, qf, q_meta, gf, g_meta):
    """``(query_feats, query_meta, gallery_feats, gallery_meta)`` of one protocol, by modality masks."""
    _check_protocol(protocol)
    qf, gf = check_features(qf, "query-split features"), check_features(gf, "gallery-split features")
    splits = {"query": (qf, _check_meta(q_meta, qf, "q_meta")), "gallery": (gf, _check_meta(g_meta, gf, "g_meta"))}
    picked = []
    for role, split, modality in (("query", protocol.query_split, protocol.query_modality),
                                  ("gallery", protocol.gallery_split, protocol.gallery_modality)):
        feats, meta = splits[split]
        mask = meta["modalities"] == int(modality)
        if not bool(mask.any()):
            raise EvaluationError(
                f"protocol '{protocol.name}': no {role} tracklets of modality {modality} in the '{split}' split "
                f"(modalities there: {sorted(set(meta['modalities'].tolist()))})"
            )
        idx = mask.nonzero().squeeze(1)
        sub = {k: ([v[i] for i in idx.tolist()] if k == "img_paths" else v[idx]) for k, v in meta.items()}
        picked += [feats[idx.to(feats.device)], sub]
    return tuple(picked)


def evaluate_protocols(qf, q_meta, gf, g_meta, protocols, remove_same_camera, dist_metric="inner_product",
                       max_rank=20, ranks=(1, 5, 10, 20), rerank=False):
    """Evaluate every protocol from one set of query-split and gallery-split features.

    ``q_meta``/``g_meta``: dicts of arrays ``pids``, ``camids``, ``modalities`` (one per feature
    row). Returns ``{protocol_name: {'rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP'}}``
    as fractions (a rank beyond the gallery size is NaN). ``rerank``: k-reciprocal re-ranking.
    """
    if not protocols:
        raise EvaluationError("no protocols given; the dataset's `protocols` list is empty")
    if max(ranks) > max_rank:
        raise EvaluationError(f"ranks {list(ranks)} go beyond max_rank={max_rank}; raise max_rank or drop the rank")
    results = {}
    for p in protocols:
        pqf, pq, pgf, pg = select_protocol(p, qf, q_meta, gf, g_meta)
        distmat = rerank_distance(pqf, pgf, dist_metric) if rerank else compute_distance(pqf, pgf, dist_metric)
        cmc, mAP, mINP = evaluate_rank(distmat, pq["pids"], pg["pids"], pq["camids"], pg["camids"],
                                       max_rank=max_rank, remove_same_camera=remove_same_camera)
        results[p.name] = {**{f"rank{r}": float(cmc[r - 1]) for r in ranks}, "mAP": mAP, "mINP": mINP}
    return results
