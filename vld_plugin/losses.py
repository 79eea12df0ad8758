"""Losses of VLD: identity cross-entropy, weighted regularised triplet (WRT), v2t, and their total.

The total (paper eq. 14, with the released code's extra terms, see the official notes)::

    CE(cls) + CE(proj) + WRT(pre) + WRT(cls) + WRT(proj)
    + lambda1 * CE(text logits) + lambda2 * CE(STA logits) + lambda3 * WRT(STA feature)

Terms whose model output is absent (an ablation removed that part) are skipped, so the same
loss serves VLD, the CLIP baseline and torchreid models (``logits_cls`` + ``feat_cls`` only).
Losses are computed in float32 whatever the autocast dtype of the outputs.
"""
import torch
from torch import nn
from torch.nn import functional as F

from .errors import EngineConfigError


def euclidean_distances(x):
    """Pairwise Euclidean distances (N, N) of the rows of ``x`` (clamped away from 0 for a finite gradient)."""
    sq = x.pow(2).sum(1, keepdim=True)
    d2 = sq + sq.t() - 2.0 * (x @ x.t())
    return d2.clamp_min(1e-12).sqrt()


def _masked_softmax(x, mask):
    """Row-wise softmax of ``x`` over the entries where ``mask`` is True; 0 elsewhere and on empty rows."""
    x = x.masked_fill(~mask, torch.finfo(x.dtype).min)
    return torch.softmax(x, dim=1) * mask


def _released_weights(x, mask):
    """AGW's released weights: ``exp(x - max(x * mask)) * mask / (sum + 1e-6)`` per row.

    The shift is the maximum over the whole row with masked-out entries counted as 0, so for
    ``x = -d`` (negatives) it is 0 rather than the largest ``-d``.
    """
    mask = mask.to(x.dtype)
    x = x * mask
    shifted = torch.exp(x - x.max(dim=1, keepdim=True).values) * mask
    return shifted / (shifted.sum(dim=1, keepdim=True) + 1e-6)


class WeightedRegularizedTriplet(nn.Module):
    """AGW's weighted regularised triplet loss (Ye et al.), no margin to tune.

    For each anchor i: ``p_i = sum_j w_ij d_ij`` over positives (i included) with weights
    growing as ``exp(d_ij)``, ``n_i = sum_k w_ik d_ik`` over negatives with weights growing as
    ``exp(-d_ik)``; loss = mean_i log(1 + exp(p_i - n_i)).

    By default the weights are computed as the released code computes them (AGW's
    ``softmax_weights``): ``exp(x - shift) * mask / (sum + 1e-6)`` with the shift taken over
    the whole masked row. For positives that is a softmax up to the 1e-6. For negatives the
    shift is 0, so the weights are ``exp(-d) / (sum exp(-d) + 1e-6)``: once every negative
    distance of an anchor exceeds about 14, ``sum exp(-d)`` falls far below 1e-6, the
    weights and ``n_i`` collapse towards 0 and the term only pulls positives together
    (``softplus(p_i)``). With unnormalised CLIP features (distances of tens to hundreds) the
    published models were trained in that regime. ``exact_softmax=True`` uses the exact
    masked softmax instead, which keeps pushing negatives apart at every feature scale.
    The final ``log(1 + exp(.))`` is computed stably (softplus); the released soft-margin loss
    overflows to inf in float32 once ``p_i - n_i`` exceeds about 88, and equals it below.
    """

    def __init__(self, exact_softmax=False):
        super().__init__()
        self.exact_softmax = exact_softmax

    def forward(self, features, targets):
        dist = euclidean_distances(features.float())
        same = targets.view(-1, 1) == targets.view(1, -1)
        weights = _masked_softmax if self.exact_softmax else _released_weights
        furthest_pos = (dist * weights(dist, same)).sum(1)
        closest_neg = (dist * weights(-dist, ~same)).sum(1)
        return F.softplus(furthest_pos - closest_neg).mean()


class CrossEntropyLoss(nn.Module):
    """Plain cross-entropy over identity logits (optional label smoothing with epsilon 0.1, as torchreid)."""

    def __init__(self, label_smooth=False):
        super().__init__()
        self.smoothing = 0.1 if label_smooth else 0.0

    def forward(self, logits, targets):
        return F.cross_entropy(logits.float(), targets, label_smoothing=self.smoothing)


def v2t_loss(logits_text, targets):
    """Visual-to-text loss: cross-entropy of the raw visual-feature @ text-feature logits (no temperature)."""
    return F.cross_entropy(logits_text.float(), targets)


class VLDLoss(nn.Module):
    """The VLD total loss over a model's train-mode output dict.

    ``forward(outputs, targets)`` returns ``(total, terms)``: ``terms`` maps each computed term
    name (``ce_cls``, ``ce_proj``, ``wrt_pre``, ``wrt_cls``, ``wrt_proj``, ``v2t``, ``ce_sta``,
    ``wrt_sta``) to its unweighted value (detached), for logging.
    """

    def __init__(self, lambda1=0.08, lambda2=0.4, lambda3=1.0, label_smooth=False, wrt_exact_softmax=False):
        super().__init__()
        ce, wrt = CrossEntropyLoss(label_smooth), WeightedRegularizedTriplet(wrt_exact_softmax)
        # (term name, output key, loss, weight)
        self.terms = [
            ("ce_cls", "logits_cls", ce, 1.0),
            ("ce_proj", "logits_proj", ce, 1.0),
            ("wrt_pre", "feat_pre", wrt, 1.0),
            ("wrt_cls", "feat_cls", wrt, 1.0),
            ("wrt_proj", "feat_proj", wrt, 1.0),
            ("v2t", "logits_text", v2t_loss, lambda1),
            ("ce_sta", "logits_sta", ce, lambda2),
            ("wrt_sta", "feat_sta", wrt, lambda3),
        ]

    def forward(self, outputs, targets):
        if not isinstance(outputs, dict):
            raise EngineConfigError(
                "VLDLoss expects the model's train-mode output dict (logits_*/feat_* tensors), "
                f"got {type(outputs).__name__}"
            )
        total, logged = 0.0, {}
        for name, key, loss_fn, weight in self.terms:
            if key in outputs:
                value = loss_fn(outputs[key], targets)
                total = total + weight * value
                logged[name] = value.detach()
        if not logged:
            known = ", ".join(t[1] for t in self.terms)
            raise EngineConfigError(f"model output has none of the loss inputs ({known}); got keys {sorted(outputs)}")
        return total, logged
