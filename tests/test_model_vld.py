"""VLD / clip_tap on a tiny model of the same architecture (CPU), plus one full-size build."""
import pytest
import torch

import vld_plugin  # noqa: F401  (registers the models into torchreid)
from vld_plugin.compat import models as tr_models
from vld_plugin.compat import utils as tr_utils
from vld_plugin.errors import ConfigError
from vld_plugin.models import TINY_OPTIONS, VLD, create_model
from vld_plugin.models.clip_loader import build_clip

T = 4
H, W = TINY_OPTIONS["image_size"]
WIDTH = TINY_OPTIONS["width"]


def tiny(num_classes=5, seed=0, **kw):
    torch.manual_seed(seed)
    opts = dict(TINY_OPTIONS, seq_len=T)
    opts.update(kw)
    return create_model(num_classes, None, **opts)


def clips(b=2, seed=1):
    torch.manual_seed(seed)
    return torch.randn(b, T, 3, H, W)


def test_train_dict_and_eval_feature_shapes():
    model = tiny()
    out = model.train()(clips())
    shapes = {k: tuple(v.shape) for k, v in out.items()}
    assert shapes == {
        "feat_pre": (2, WIDTH), "feat_cls": (2, WIDTH), "feat_proj": (2, 32), "feat_sta": (2, WIDTH),
        "logits_cls": (2, 5), "logits_proj": (2, 5), "logits_sta": (2, 5), "logits_text": (2, 5),
    }
    with torch.no_grad():
        feat = model.eval()(clips())
    assert feat.shape == (2, 2 * WIDTH) and model.feature_dim == 2 * WIDTH
    # the test feature is [pooled CLS, pooled STA], both before the BNNecks
    model.train()
    with torch.no_grad():
        out = model(clips())
    torch.testing.assert_close(feat, torch.cat([out["feat_cls"], out["feat_sta"]], 1))


def test_text_logits_are_raw_dot_products_with_all_identity_text_features():
    model = tiny(num_classes=7)
    out = model.train()(clips())
    text = model.text_features()
    assert text.shape == (7, 32)
    torch.testing.assert_close(out["logits_text"], out["feat_proj"] @ text.t())


def _reference_forward(model, x):
    """The notes' STH/STA, tracklet by tracklet, frame by frame (slow, obvious)."""
    v = model.visual
    feats = []
    for clip in x:
        frames = []
        for img in clip:
            tok = v.conv1(img[None]).flatten(2).transpose(1, 2)[0]
            tok = torch.cat([v.class_embedding[None], tok]) + v.positional_embedding
            frames.append(v.ln_pre(tok))
        seq = torch.stack(frames)  # (T, L, D)
        for i, block in enumerate(v.transformer.resblocks):
            if i == model.hub_start_block:
                seq = torch.cat([seq, model.hub], dim=1)  # frame t gets hub[t]
            elif i > model.hub_start_block:
                n = seq.shape[1] - T
                hub = seq[:, n:].clone()
                swapped = torch.stack([torch.stack([hub[j, i_] for j in range(T)]) for i_ in range(T)])
                seq = torch.cat([seq[:, :n], swapped], dim=1)
            seq = block(seq)
        hubs = seq[:, -T:].reshape(1, T * T, -1)
        cls = v.ln_post(seq[:, 0]).mean(0)
        sta = torch.stack([
            v.ln_post(model.sta(seq[t, :1][None], hubs, hubs, need_weights=False)[0][0, 0])
            for t in range(T)
        ]).mean(0)
        feats.append(torch.cat([cls, sta]))
    return torch.stack(feats)


@pytest.mark.parametrize("start", [0, 1, 3])
def test_matches_a_frame_by_frame_reference(start):
    model = tiny(hub_start_block=start).eval()
    x = clips(b=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_forward(model, x), atol=1e-5, rtol=1e-4)


def test_transpose_hubs_swaps_hub_j_of_frame_i_with_hub_i_of_frame_j():
    model = tiny()
    b, n_other = 2, 3
    x = torch.zeros(b * T, n_other + T, 1)
    for row in range(b * T):
        for j in range(T):
            x[row, n_other + j, 0] = 100 * (row // T) + 10 * (row % T) + j  # tracklet, frame, hub
    y = model._transpose_hubs(x)
    for row in range(b * T):
        for j in range(T):
            assert y[row, n_other + j, 0] == 100 * (row // T) + 10 * j + row % T
    torch.testing.assert_close(y[:, :n_other], x[:, :n_other])


def _frame_cls(model, x):
    cls, _, _ = model._encode(x.flatten(0, 1))
    return cls.view(x.shape[0], T, -1)


def test_hubs_mix_frames_within_a_tracklet_only():
    model = tiny(hub_start_block=1).eval()
    x = clips(b=2)
    y = x.clone()
    y[0, 0] += 1.0  # change frame 0 of tracklet 0
    with torch.no_grad():
        a, b = _frame_cls(model, x), _frame_cls(model, y)
    assert (a[0, 1] - b[0, 1]).abs().max() > 1e-4  # reaches frame 1 of the same tracklet
    torch.testing.assert_close(a[1], b[1])  # never another tracklet


def test_baseline_frames_are_independent_and_pooling_is_order_free():
    model = tiny(imlp=False, sth=False, sta=False).eval()
    x = clips(b=2)
    y = x.clone()
    y[0, 0] += 1.0
    with torch.no_grad():
        a, b = _frame_cls(model, x), _frame_cls(model, y)
        torch.testing.assert_close(a[0, 1:], b[0, 1:])
        torch.testing.assert_close(model(x), model(x.flip(1)), atol=1e-5, rtol=1e-5)
    assert model(x).shape == (2, WIDTH)


def test_ablation_switches_remove_their_parts():
    names = lambda m: {n.split(".")[0] for n, _ in m.named_parameters()}  # noqa: E731
    full = tiny()
    assert {"hub", "sta", "prompt_learner", "text_encoder", "classifier", "visual"} <= names(full)
    no_imlp = tiny(imlp=False)
    assert "prompt_learner" not in names(no_imlp) and "logits_text" not in no_imlp.train()(clips())
    sth_only = tiny(sta=False)
    out = sth_only.train()(clips())
    assert "feat_sta" not in out and "logits_sta" not in out and "sta" not in names(sth_only)
    assert sth_only.eval()(clips()).shape == (2, WIDTH)
    with pytest.raises(ValueError, match="vld.sta needs vld.sth"):
        tiny(sth=False)
    with pytest.raises(ValueError, match="hub_start_block"):
        tiny(hub_start_block=4)


def test_hub_and_sta_parameter_count():
    with_stp, without = tiny(), tiny(sth=False, sta=False)
    extra = sum(p.numel() for p in with_stp.parameters()) - sum(p.numel() for p in without.parameters())
    # hub T*T*D + STA in/out projections 4*D*D + 4*D + STA BNNeck (2*D + D*num_classes)
    assert extra == T * T * WIDTH + 4 * WIDTH * WIDTH + 4 * WIDTH + 2 * WIDTH + WIDTH * 5


@pytest.mark.parametrize("template,prefix,eot", [(1, 1, 7), (2, 2, 8), (3, 2, 14), (4, 2, 15)])
def test_prompt_templates(template, prefix, eot):
    pl = tiny(prompt_template=template).prompt_learner
    assert pl.token_prefix.shape[1] == prefix and pl.eot_index == eot
    assert pl.cls_ctx.shape == (5, 4, 64) and pl.token_prefix.shape[1] + 4 + pl.token_suffix.shape[1] == 77
    assert pl().shape == (5, eot + 1, 64)
    with pytest.raises(ValueError, match="prompt_template"):
        tiny(prompt_template=5)


def test_text_encoder_matches_open_clip_encode_text():
    import open_clip

    torch.manual_seed(0)
    sizes = {k: TINY_OPTIONS[k] for k in ("width", "layers", "heads", "embed_dim",
                                           "text_width", "text_layers", "text_heads")}
    clip = build_clip("ViT-B-16-quickgelu", (H, W), None, **sizes)
    model = VLD(clip, 3, "ViT-B-16-quickgelu", seq_len=T, hub_start_block=1)
    tokens = open_clip.get_tokenizer("ViT-B-16-quickgelu")(
        ["A X X X X person observed in both day and night conditions."])
    with torch.no_grad():  # fill the learnable tokens with the embedding of the literal "X X X X"
        model.prompt_learner.cls_ctx.copy_(clip.token_embedding(tokens)[0, 2:6].expand(3, -1, -1))
        expected = clip.encode_text(tokens)
        torch.testing.assert_close(model.text_features(), expected.expand(3, -1), atol=1e-5, rtol=1e-5)


def test_training_never_changes_the_text_encoder():
    model = tiny().train()
    frozen = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    ctx, conv = model.prompt_learner.cls_ctx.detach().clone(), model.visual.conv1.weight.detach().clone()
    tr_utils.open_all_layers(model)  # torchreid's engine switches every parameter on each epoch
    opt = torch.optim.AdamW([p for p in model.parameters()], lr=1e-2, weight_decay=0.1)
    for _ in range(2):
        out = model(clips())
        loss = sum(torch.nn.functional.cross_entropy(out[k], torch.tensor([0, 1]))
                   for k in out if k.startswith("logits"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(not p.requires_grad and p.grad is None for p in model.text_encoder.parameters())
    for k, v in model.text_encoder.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert not torch.equal(model.prompt_learner.cls_ctx, ctx)  # prompts learn through the encoder
    assert not torch.equal(model.visual.conv1.weight, conv)


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients():
    grads = []
    for flag in (False, True):
        model = tiny(grad_checkpointing=flag).train()
        out = model(clips())
        sum(v.sum() for v in out.values()).backward()
        grads.append((out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (o1, g1), (o2, g2) = grads
    for k in o1:
        torch.testing.assert_close(o1[k], o2[k])
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], atol=1e-5, rtol=1e-4)


def test_bf16_autocast_forward_and_backward_are_finite():
    model = tiny().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clips())
    loss = sum(v.float().mean() for v in out.values())
    loss.backward()
    assert all(torch.isfinite(v.float()).all() for v in out.values())
    assert torch.isfinite(model.hub.grad).all() and model.hub.grad.abs().sum() > 0


def test_bad_input_shapes_raise_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        model(torch.randn(2, 3, H, W))
    with pytest.raises(ValueError, match="video.seq_len"):
        model(torch.randn(1, T + 1, 3, H, W))


def test_unknown_option_and_unknown_fusion_are_rejected():
    with pytest.raises(ConfigError, match="unknown model option"):
        tiny(hub_start=3)
    with pytest.raises(ValueError, match="vld.temporal_fusion 'lstm' is unknown"):
        tiny(temporal_fusion="lstm")


def test_torchreid_build_model_gives_the_full_size_paper_model():
    torch.manual_seed(0)
    model = tr_models.build_model("vld", num_classes=500, pretrained=False)
    visual = sum(p.numel() for p in model.visual.parameters())
    assert visual == 86_166_528  # paper Table X: 86.17M at 288x144 (163 tokens)
    stp = model.hub.numel() + sum(p.numel() for p in model.sta.parameters())
    assert stp == 2_390_016  # paper: +2.39M (STA 2,362,368 + hub 27,648)
    assert model.hub.shape == (6, 6, 768) and model.hub_start_block == 9
    assert model.prompt_learner.cls_ctx.shape == (500, 4, 512) and model.prompt_learner.eot_index == 15
    assert model.visual.positional_embedding.shape == (163, 768)
    assert type(model.visual.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    with torch.no_grad():
        feat = model.eval()(torch.randn(1, 6, 3, 288, 144))
    assert feat.shape == (1, 1536)
    baseline = tr_models.build_model("clip_tap", num_classes=500, pretrained=False)
    assert baseline.hub is None and baseline.sta is None and baseline.prompt_learner is None
    assert baseline.feature_dim == 768


@pytest.mark.parametrize("switches", [{}, dict(imlp=False, sth=False, sta=False)], ids=["vld", "clip_tap"])
def test_pruned_last_block_gives_the_same_outputs_and_gradients(switches):
    model = tiny(**switches).double().train()  # float64: only reordered sums may differ
    x = clips().double()
    results = []
    for prune in (False, True):
        model.prune_last_block = prune
        model.zero_grad()
        out = model(x)
        sum(v.sum() for v in out.values()).backward()
        with torch.no_grad():
            feat = model.eval()(x)
        model.train()
        results.append((out, feat, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (o1, f1, g1), (o2, f2, g2) = results
    assert o1.keys() == o2.keys() and g1.keys() == g2.keys()
    for k in o1:
        torch.testing.assert_close(o1[k], o2[k], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(f1, f2, atol=1e-10, rtol=1e-10)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize("switches", [{}, dict(imlp=False, sth=False, sta=False)], ids=["vld", "clip_tap"])
def test_pruned_last_block_skips_the_unread_tokens(switches):
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny(**switches).train()
    flops = []
    for prune in (False, True):
        model.prune_last_block = prune
        with FlopCounterMode(display=False) as counter:
            model(clips())
        flops.append(counter.get_total_flops())
    n_hub = T if "sth" not in switches else 0
    length = 1 + (H // 16) * (W // 16) + n_hub  # CLS + patches + hubs
    dropped = length - (1 + n_hub)  # all patch tokens leave the last block unread
    # per dropped token: q and out projections (2 D^2), MLP (8 D^2), its score and value rows (2 L D),
    # the last only where this torch's flop counter counts attention on the CPU (some releases do not)
    q = torch.zeros(1, 1, 1, WIDTH)
    with FlopCounterMode(display=False) as attention:
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
    counts_attention = attention.get_total_flops() > 0
    expected = 2 * (2 * T) * dropped * (10 * WIDTH ** 2 + 2 * length * WIDTH * counts_attention)
    assert flops[0] - flops[1] == expected
