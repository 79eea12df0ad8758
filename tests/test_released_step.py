"""One training step of the full-size VLD (random CLIP weights) against the released loss."""
import pytest
import torch
from released import released_total

from vld_plugin.config import load_config, loss_kwargs
from vld_plugin.launch import build_model
from vld_plugin.losses import VLDLoss


@pytest.mark.slow
def test_full_model_step_loss_and_gradients_equal_released():
    cfg = load_config("configs/vld_vcm.yaml", ["model.pretrained", "none"])  # ViT-B/16, 288x144, T = 6
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3).train()
    # 2 identities x 1 visible+infrared pair, in our sampler's order (v, i, v, i)
    pids = torch.tensor([0, 0, 2, 2])
    imgs = torch.randn(4, cfg.video.seq_len, 3, cfg.data.height, cfg.data.width)
    outputs = model(imgs)
    ours, _ = VLDLoss(**loss_kwargs(cfg))(outputs, pids)
    # the released code orders the batch as all visible, then all infrared
    order = torch.tensor([0, 2, 1, 3])
    reference = released_total({k: v[order] for k, v in outputs.items()}, pids[order])
    assert ours.item() == pytest.approx(reference.item(), rel=1e-4)
    params = [p for p in model.parameters() if p.requires_grad]
    ours_grads = torch.autograd.grad(ours, params, retain_graph=True)
    ref_grads = torch.autograd.grad(reference, params)
    # per tensor, relative to its norm (float32 rounding of two orderings of the same sums: ~1e-5)
    worst = max(((a - b).norm() / b.norm().clamp_min(1e-12)).item() for a, b in zip(ours_grads, ref_grads))
    assert worst < 1e-4  # 5.4e-5 here
