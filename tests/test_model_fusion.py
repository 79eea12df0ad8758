"""Temporal fusion alternatives of Table IV (conv1d, transformer, transformer_cls) in the tiny VLD (CPU)."""
import pytest
import torch

from vld_plugin.models import TINY_OPTIONS, create_model
from vld_plugin.models.fusion import TemporalConv1d, build_fusion

T = 4
H, W = TINY_OPTIONS["image_size"]
WIDTH = TINY_OPTIONS["width"]
FUSED = ("conv1d", "transformer", "transformer_cls")


def tiny(fusion, seed=0, **kw):
    torch.manual_seed(seed)
    return create_model(5, None, **dict(TINY_OPTIONS, seq_len=T, temporal_fusion=fusion, **kw))


def randomise(module, seed=3):
    """Random weights, so that conv1d is no longer its TAP initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)


@pytest.mark.parametrize("fusion", FUSED)
def test_fused_model_shapes_and_parameter_names(fusion):
    model = tiny(fusion)
    x = torch.randn(3, T, 3, H, W)
    out = model.train()(x)
    assert out["feat_cls"].shape == (3, WIDTH) and out["feat_proj"].shape == (3, 32)
    torch.testing.assert_close(out["feat_proj"], out["feat_cls"] @ model.visual.proj)
    assert model.eval()(x).shape == (3, 2 * WIDTH)
    names = [n for n, _ in model.named_parameters() if n.startswith("temporal_fusion.")]
    assert names and all(p.requires_grad for n, p in model.named_parameters() if n in names)


@pytest.mark.parametrize("fusion", FUSED)
def test_frame_order_changes_the_fused_feature(fusion):
    fusion_module = tiny(fusion).temporal_fusion
    randomise(fusion_module)
    frames = torch.randn(2, T, WIDTH)
    a, b = fusion_module(frames), fusion_module(frames[:, torch.tensor([2, 0, 3, 1])])
    assert a.shape == (2, WIDTH) and (a - b).abs().max() > 1e-3


def test_tap_feature_ignores_frame_order_end_to_end():
    # with sth/sta off nothing else depends on the order: 'none' is order-free, 'transformer' is not
    x = torch.randn(2, T, 3, H, W)
    perm = torch.tensor([3, 1, 0, 2])
    for fusion, order_free in (("none", True), ("transformer", False)):
        model = tiny(fusion, sth=False, sta=False).eval()
        a, b = model(x), model(x[:, perm])
        assert torch.allclose(a, b, atol=1e-5) == order_free, fusion


def test_conv1d_starts_as_temporal_average_pooling():
    frames = torch.randn(2, T, WIDTH)
    torch.testing.assert_close(TemporalConv1d(WIDTH)(frames), frames.mean(1))


@pytest.mark.parametrize("fusion", FUSED)
def test_gradients_reach_fusion_and_backbone(fusion):
    model = tiny(fusion).train()
    out = model(torch.randn(4, T, 3, H, W))
    (out["logits_cls"].logsumexp(1).sum() + out["feat_proj"].square().sum()).backward()
    for p in model.temporal_fusion.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.visual.conv1.weight.grad.abs().sum() > 0


def test_transformer_fusion_needs_the_built_sequence_length():
    fusion = build_fusion("transformer_cls", WIDTH, 4, T)
    assert fusion(torch.randn(1, T, WIDTH)).shape == (1, WIDTH)
    with pytest.raises(ValueError, match="built for 4 frames"):
        fusion(torch.randn(1, T + 2, WIDTH))
