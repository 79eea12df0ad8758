"""Losses against values computed by hand on tiny tensors."""
import math

import pytest
import torch
from released import released_wrt

from vld_plugin.config import get_default_config, loss_kwargs
from vld_plugin.losses import CrossEntropyLoss, VLDLoss, WeightedRegularizedTriplet, v2t_loss

E = math.e
# four 1-d points 0, 1, 3, 6; identities 0, 0, 1, 1
POINTS = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def _wrt_by_hand(exact):
    # anchor: (positive distances incl. itself, negative distances); the released weights add
    # 1e-6 to each normaliser and shift negatives by 0 (= no shift for exp(-d))
    eps = 0.0 if exact else 1e-6
    rows = [([0, 1], [3, 6]), ([1, 0], [2, 5]), ([0, 3], [3, 2]), ([0, 3], [6, 5])]
    total = 0.0
    for pos, neg in rows:
        top = max(pos)
        zp = sum(math.exp(d - top) for d in pos) + eps
        p = sum(d * math.exp(d - top) / zp for d in pos)
        zn = sum(math.exp(-d) for d in neg) + eps
        n = sum(d * math.exp(-d) / zn for d in neg)
        total += math.log(1 + math.exp(p - n))
    return total / 4


def test_wrt_matches_hand_computation():
    x64 = POINTS.double()
    for exact in (False, True):
        loss = WeightedRegularizedTriplet(exact_softmax=exact)(x64, LABELS)
        assert loss.item() == pytest.approx(_wrt_by_hand(exact), rel=1e-6)
    # the two weightings differ here by the 1e-6 of the normaliser only
    released, exact = WeightedRegularizedTriplet()(x64, LABELS), WeightedRegularizedTriplet(True)(x64, LABELS)
    assert 0 < abs(released - exact).item() < 1e-4


def _clustered(scale, seed, spread=0.1):
    """16 features of 4 identities: identity centres plus ``spread`` noise, times ``scale``."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(4).repeat_interleave(4)
    centres = torch.randn(4, 8, generator=g)
    return scale * (centres[labels] + spread * torch.randn(16, 8, generator=g)), labels


@pytest.mark.parametrize("scale", [0.05, 0.3, 1.0, 3.0, 10.0, 30.0])
def test_wrt_default_equals_released_value_and_gradient(scale):
    feats, labels = _clustered(scale, seed=int(scale * 100), spread=0.3)
    ours_x = feats.clone().requires_grad_(True)
    ref_x = feats.clone().requires_grad_(True)
    ours, ref = WeightedRegularizedTriplet()(ours_x, labels), released_wrt(ref_x, labels)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(ours_x.grad, ref_x.grad, rtol=1e-4, atol=1e-4 * ref_x.grad.abs().max().item())


def test_wrt_released_negative_term_vanishes_at_clip_scale():
    small, labels = _clustered(0.05, seed=3)
    large, _ = _clustered(30.0, seed=3)  # negative distances ~ 100, positive ones ~ 10
    released, exact = WeightedRegularizedTriplet(), WeightedRegularizedTriplet(exact_softmax=True)
    # small features: the two weightings agree
    assert released(small, labels).item() == pytest.approx(exact(small, labels).item(), rel=1e-5)
    # large features: the released loss is softplus(weighted positive distance) alone, the exact
    # one is ~0 because every negative is much further than every positive
    dist = torch.cdist(large, large)
    same = labels[:, None] == labels[None, :]
    assert dist[~same].min() > 30 and dist[same].max() < 20
    p = (dist * torch.softmax(dist.masked_fill(~same, -1e9), 1)).sum(1)
    assert released(large, labels).item() == pytest.approx(torch.nn.functional.softplus(p).mean().item(), rel=1e-4)
    assert released(large, labels).item() > 5 and exact(large, labels).item() < 1e-6


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


def test_loss_kwargs_read_the_config():
    cfg = get_default_config()
    cfg.loss.vld.lambda2 = 0.7
    loss = VLDLoss(**loss_kwargs(cfg))
    assert dict((n, w) for n, _, _, w in loss.terms)["ce_sta"] == 0.7
    wrts = [fn for name, _, fn, _ in loss.terms if name.startswith("wrt")]
    assert len(wrts) == 4 and not any(w.exact_softmax for w in wrts)  # released weights by default
    cfg.loss.wrt.exact_softmax = True
    assert all(fn.exact_softmax for name, _, fn, _ in VLDLoss(**loss_kwargs(cfg)).terms if name.startswith("wrt"))
