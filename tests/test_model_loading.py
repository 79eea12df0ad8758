"""Pretrained CLIP weights: local files (pickle, TorchScript, wrapped), 'openai' offline, errors."""
import open_clip
import pytest
import torch

from vld_plugin.config import get_default_config
from vld_plugin.launch import build_model
from vld_plugin.models import TINY_OPTIONS, PretrainedWeightsError, clip_loader, create_model
from vld_plugin.models.clip_loader import build_clip, resolve_pretrained

NAME = "ViT-B-16-quickgelu"
SIZES = {k: TINY_OPTIONS[k] for k in ("width", "layers", "heads", "embed_dim",
                                      "text_width", "text_layers", "text_heads")}


@pytest.fixture(scope="module")
def saved_clip(tmp_path_factory):
    """A random tiny CLIP at a square 64x64 input (4x4 grid), saved as an open_clip state dict."""
    torch.manual_seed(3)
    clip = build_clip(NAME, (64, 64), None, **SIZES)
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    torch.save(clip.state_dict(), path)
    return clip, path


def _tiny(pretrained, **kw):
    torch.manual_seed(0)
    return create_model(4, pretrained, seq_len=4, **dict(TINY_OPTIONS, **kw))


def _check_loaded(model, clip):
    own, src = model.visual.state_dict(), clip.visual.state_dict()
    for key in src:
        if key != "positional_embedding":
            torch.testing.assert_close(own[key], src[key], rtol=0, atol=0)
    pos, old = own["positional_embedding"], src["positional_embedding"]
    assert pos.shape == (1 + 4 * 2, 64)
    torch.testing.assert_close(pos[0], old[0], rtol=0, atol=0)  # CLS row kept
    # bilinear 4x4 -> 4x2: rows unchanged, each new column the mean of two old ones
    grid = old[1:].view(4, 4, -1)
    expected = torch.stack([(grid[:, 0] + grid[:, 1]) / 2, (grid[:, 2] + grid[:, 3]) / 2], dim=1)
    torch.testing.assert_close(pos[1:].view(4, 2, -1), expected)
    torch.testing.assert_close(model.text_encoder.ln_final.weight, clip.ln_final.weight, rtol=0, atol=0)
    # the fixed prompt embeddings come from the loaded token embedding, not the random one
    sos_a = open_clip.get_tokenizer(NAME)(["A X"])[0, :2]
    with torch.no_grad():
        torch.testing.assert_close(model.prompt_learner.token_prefix[0], clip.token_embedding(sos_a))


def test_open_clip_state_dict_file(saved_clip):
    clip, path = saved_clip
    _check_loaded(_tiny(str(path)), clip)


def test_wrapped_data_parallel_state_dict(saved_clip, tmp_path):
    clip, _ = saved_clip
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in clip.state_dict().items()}}, path)
    _check_loaded(_tiny(str(path)), clip)


def test_safetensors_file(saved_clip, tmp_path):
    from safetensors.torch import save_file

    clip, _ = saved_clip
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    _check_loaded(_tiny(str(path)), clip)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_archive_like_openais(saved_clip, tmp_path):
    clip, _ = saved_clip
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.script(clip).save(str(path))
    _check_loaded(_tiny(str(path)), clip)


def test_config_route_with_model_pretrained_path(saved_clip):
    clip, path = saved_clip
    cfg = get_default_config()
    for key in ("width", "layers", "heads", "embed_dim", "text_width", "text_layers", "text_heads",
                "hub_start_block"):
        cfg.vld[key] = TINY_OPTIONS[key]
    cfg.data.height, cfg.data.width = TINY_OPTIONS["image_size"]
    cfg.video.seq_len = 4
    cfg.model.pretrained = str(path)
    _check_loaded(build_model(cfg, 4), clip)
    cfg.model.name = "clip_tap"
    baseline = build_model(cfg, 4)
    assert baseline.hub is None and baseline.prompt_learner is None
    cfg.model.name = "osnet"
    with pytest.raises(ValueError, match="model.name 'osnet'"):
        build_model(cfg, 4)


def test_missing_file_and_wrong_architecture(saved_clip, tmp_path):
    _, path = saved_clip
    with pytest.raises(PretrainedWeightsError, match="does not exist"):
        _tiny(str(tmp_path / "nope.pt"))
    with pytest.raises(PretrainedWeightsError, match="does not fit the configured architecture"):
        _tiny(str(path), width=32, heads=2)
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="cannot read CLIP checkpoint"):
        _tiny(str(bad))


def test_openai_offline_message(monkeypatch):
    def offline(cfg, cache_dir=None):
        raise OSError("Name or service not known")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(PretrainedWeightsError,
                       match=r"download ViT-B-16.pt from https://\S+ViT-B-16.pt.*set model.pretrained"):
        clip_loader.openai_checkpoint_path(NAME)
    with pytest.raises(PretrainedWeightsError, match="OpenAI weights fit only"):
        _tiny("openai")  # a resized architecture never starts a download


def test_resolve_pretrained():
    assert resolve_pretrained(True) == "openai" and resolve_pretrained("openai") == "openai"
    assert resolve_pretrained(False) is None and resolve_pretrained("none") is None
    assert resolve_pretrained(" /w/ViT-B-16.pt ") == "/w/ViT-B-16.pt"
