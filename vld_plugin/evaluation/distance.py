"""Query-gallery distances (smaller = more similar) and optional k-reciprocal re-ranking."""
import numpy as np
import torch
import torch.nn.functional as F

from .. import compat
from ..errors import EvaluationError

METRICS = ("inner_product", "euclidean", "cosine")


def check_features(feats, name):
    """``feats`` as a 2-D floating torch tensor without NaN/inf, or EvaluationError."""
    f = torch.as_tensor(feats if torch.is_tensor(feats) else np.asarray(feats))
    if f.dim() != 2:
        raise EvaluationError(f"{name} must be 2-D (num_items, dim), got shape {tuple(f.shape)}")
    if len(f) == 0:
        raise EvaluationError(f"{name} is empty; nothing to evaluate")
    f = f.float() if not f.is_floating_point() or f.dtype in (torch.float16, torch.bfloat16) else f
    bad = ~torch.isfinite(f).all(1)
    if bool(bad.any()):
        raise EvaluationError(
            f"{name} has NaN/inf in {int(bad.sum())} of {len(f)} rows (first row {int(bad.nonzero()[0])}); "
            "check the model (diverged training or a broken checkpoint)"
        )
    return f


def compute_distance(qf, gf, metric="inner_product"):
    """(Q, G) distance matrix between query and gallery features, smaller = more similar.

    ``inner_product``: minus the raw dot product (the authors' ranking); ``euclidean``: the
    Euclidean distance; ``cosine``: 1 - cosine similarity.
    """
    qf, gf = check_features(qf, "query features"), check_features(gf, "gallery features")
    if qf.shape[1] != gf.shape[1]:
        raise EvaluationError(f"query features are {qf.shape[1]}-d but gallery features {gf.shape[1]}-d")
    if metric == "inner_product":
        return -(qf @ gf.T)
    if metric == "euclidean":
        return torch.cdist(qf, gf)
    if metric == "cosine":
        return 1 - F.normalize(qf, dim=1) @ F.normalize(gf, dim=1).T
    raise EvaluationError(f"unknown distance metric '{metric}'; choose one of {', '.join(METRICS)} (test.dist_metric)")


def rerank_distance(qf, gf, metric="inner_product", k1=20, k2=6, lambda_value=0.3):
    """k-reciprocal re-ranked (Q, G) distances (Zhong et al. 2017), through torchreid's ``re_ranking``.

    torchreid squares and column-normalises the distances it is given, which needs them
    non-negative: inner-product distances are shifted by their minimum (over all three
    matrices) first, which keeps every neighbour ordering.
    """
    qf, gf = check_features(qf, "query features"), check_features(gf, "gallery features")
    qg, qq, gg = (compute_distance(a, b, metric) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    if metric == "inner_product":
        low = min(qg.min(), qq.min(), gg.min())
        qg, qq, gg = qg - low, qq - low, gg - low
    qg, qq, gg = (m.detach().cpu().double().numpy() for m in (qg, qq, gg))
    return torch.from_numpy(compat.utils.re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lambda_value))
