"""Losses against values computed by hand on tiny tensors."""
import math

import pytest
import torch

from vld_plugin.config import get_default_config
from vld_plugin.losses import CrossEntropyLoss, VLDLoss, WeightedRegularizedTriplet, build_loss, v2t_loss

E = math.e
# four 1-d points 0, 1, 3, 6; identities 0, 0, 1, 1
POINTS = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def _wrt_by_hand():
    # anchor: (positive distances incl. itself, negative distances)
    rows = [([0, 1], [3, 6]), ([1, 0], [2, 5]), ([0, 3], [3, 2]), ([0, 3], [6, 5])]
    total = 0.0
    for pos, neg in rows:
        zp = sum(math.exp(d) for d in pos)
        p = sum(d * math.exp(d) / zp for d in pos)
        zn = sum(math.exp(-d) for d in neg)
        n = sum(d * math.exp(-d) / zn for d in neg)
        total += math.log(1 + math.exp(p - n))
    return total / 4


def test_wrt_matches_hand_computation():
    loss = WeightedRegularizedTriplet()(POINTS, LABELS)
    # anchor 0 alone: p = e/(1+e), n = (3 + 6e^-3)/(1 + e^-3)
    p0, n0 = E / (1 + E), (3 + 6 * E**-3) / (1 + E**-3)
    pair = WeightedRegularizedTriplet()(POINTS[[0, 1, 2, 3]], LABELS)
    assert pair.item() != pytest.approx(math.log(1 + math.exp(p0 - n0)), abs=1e-3)  # other anchors count
    assert loss.item() == pytest.approx(_wrt_by_hand(), abs=1e-5)


def test_wrt_gradient_finite_and_pulls_positives():
    x = POINTS.clone().requires_grad_(True)
    WeightedRegularizedTriplet()(x, LABELS).backward()
    assert torch.isfinite(x.grad).all()
    # point 1 (id 0) is pulled towards point 0 (same id), i.e. its gradient is positive
    assert x.grad[1, 0] > 0


def test_wrt_single_identity_batch_is_finite():
    loss = WeightedRegularizedTriplet()(POINTS, torch.zeros(4, dtype=torch.long))
    # no negatives: n = 0, loss = mean log(1 + exp(p))
    assert torch.isfinite(loss) and loss.item() > math.log(2)


def test_cross_entropy_by_hand_and_label_smoothing():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([2, 0])
    z = E + E**2 + E**3
    expected = (-math.log(E**3 / z) + math.log(3)) / 2
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(expected, abs=1e-6)
    # smoothing 0.1: (1 - 0.1) * nll + 0.1 * mean over classes of -log p
    lp = [math.log(E / z), math.log(E**2 / z), math.log(E**3 / z)]
    smooth0 = 0.9 * -lp[2] + 0.1 * -sum(lp) / 3
    smoothed = (smooth0 + math.log(3)) / 2
    assert CrossEntropyLoss(label_smooth=True)(logits, target).item() == pytest.approx(smoothed, abs=1e-6)


def test_v2t_is_raw_cross_entropy_of_dot_products():
    feat = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    text = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    logits = feat @ text.t()  # [[1, 0, -1], [2, 2, 0]]
    value = v2t_loss(logits, torch.tensor([0, 1])).item()
    expected = (-math.log(E / (E + 1 + 1 / E)) - math.log(E**2 / (2 * E**2 + 1))) / 2
    assert value == pytest.approx(expected, abs=1e-6)


def _outputs():
    g = torch.Generator().manual_seed(0)
    out = {k: torch.randn(4, 5, generator=g) for k in ("logits_cls", "logits_proj", "logits_text", "logits_sta")}
    out.update({k: torch.randn(4, 3, generator=g) for k in ("feat_pre", "feat_cls", "feat_proj", "feat_sta")})
    return out


def test_vld_total_weights_each_term():
    out, y = _outputs(), torch.tensor([0, 0, 1, 1])
    ce, wrt = torch.nn.functional.cross_entropy, WeightedRegularizedTriplet()
    total, terms = VLDLoss(lambda1=0.08, lambda2=0.4, lambda3=1.0)(out, y)
    expected = (ce(out["logits_cls"], y) + ce(out["logits_proj"], y) + wrt(out["feat_pre"], y)
                + wrt(out["feat_cls"], y) + wrt(out["feat_proj"], y) + 0.08 * ce(out["logits_text"], y)
                + 0.4 * ce(out["logits_sta"], y) + 1.0 * wrt(out["feat_sta"], y))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(terms) == {"ce_cls", "ce_proj", "wrt_pre", "wrt_cls", "wrt_proj", "v2t", "ce_sta", "wrt_sta"}
    assert terms["v2t"].item() == pytest.approx(ce(out["logits_text"], y).item())  # logged unweighted
    # changing lambda1 changes the total by exactly delta * v2t
    total2, _ = VLDLoss(lambda1=1.08, lambda2=0.4, lambda3=1.0)(out, y)
    assert (total2 - total).item() == pytest.approx(terms["v2t"].item(), rel=1e-5)


def test_vld_loss_skips_absent_terms_and_rejects_empty():
    out, y = _outputs(), torch.tensor([0, 0, 1, 1])
    baseline = {"logits_cls": out["logits_cls"], "feat_cls": out["feat_cls"]}
    total, terms = VLDLoss()(baseline, y)
    assert set(terms) == {"ce_cls", "wrt_cls"}
    assert total.item() == pytest.approx((terms["ce_cls"] + terms["wrt_cls"]).item())
    with pytest.raises(ValueError, match="none of the loss inputs"):
        VLDLoss()({"something": out["feat_cls"]}, y)


def test_build_loss_reads_config():
    cfg = get_default_config()
    cfg.loss.vld.lambda2 = 0.7
    loss = build_loss(cfg)
    assert dict((n, w) for n, _, _, w in loss.terms)["ce_sta"] == 0.7
