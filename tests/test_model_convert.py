"""Official VLD checkpoint names <-> ours, and the download helper (network faked)."""
import os

import pytest
import torch

from vld_plugin.checkpoint import load_weights
from vld_plugin.errors import CheckpointError, ConfigError, PretrainedWeightsError
from vld_plugin.models import (
    TINY_OPTIONS,
    convert,
    convert_official_state_dict,
    create_model,
    download_official_checkpoint,
    to_official_state_dict,
)


def tiny(seed):
    torch.manual_seed(seed)
    return create_model(6, None, seq_len=4, **TINY_OPTIONS)


def _perturb_bn_stats(model):
    for head in model.classifier.values():
        head.bnneck.running_mean.uniform_(-1, 1)
        head.bnneck.running_var.uniform_(0.5, 2)


def test_official_names_round_trip_to_identical_outputs(tmp_path):
    src = tiny(0)
    _perturb_bn_stats(src)
    official = to_official_state_dict(src.state_dict())
    for key in ("image_encoder.transformer.resblocks.0.attn.in_proj_weight", "image_encoder.proj",
                "prompt_embedding", "attn.in_proj_weight", "attn.out_proj.bias",
                "classifier.BN.running_var", "classifier.classifier.weight",
                "classifier_proj.BN.weight", "classifier_STP.classifier.weight",
                "prompt_learner.cls_ctx", "prompt_learner.token_prefix",
                "text_encoder.transformer.resblocks.1.mlp.c_fc.weight", "text_encoder.text_projection"):
        assert key in official, key
    # keys their checkpoints carry that our model does not use, saved with a DataParallel prefix
    official.update({"ln_post2.weight": torch.ones(64), "logit_scale": torch.tensor(4.6),
                     "classifier_proj_STP.BN.weight": torch.ones(32)})
    path = tmp_path / "official.pth"
    torch.save({"module." + k: v for k, v in official.items()}, path)

    dst = tiny(1)
    x = torch.randn(2, 4, 3, *TINY_OPTIONS["image_size"])
    with torch.no_grad():
        assert not torch.allclose(src.eval()(x), dst.eval()(x))
        load_weights(dst, str(path))  # the CLI's loader; strict: no missing or unexpected keys
        torch.testing.assert_close(dst.eval()(x), src.eval()(x), rtol=0, atol=0)
        a, b = src.train()(x), dst.train()(x)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_foreign_state_dict_is_rejected():
    with pytest.raises(CheckpointError, match="not from an official VLD checkpoint"):
        convert_official_state_dict({"backbone.conv1.weight": torch.zeros(1)})


def test_download_goes_to_torchreid_cache_once(tmp_path, monkeypatch):
    import gdown

    calls = []

    def fake_download(id, output, quiet):
        calls.append(id)
        with open(output, "wb") as f:
            f.write(b"weights")
        return output

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(gdown, "download", fake_download)
    path = download_official_checkpoint("hitsz_vcm")
    assert path == os.path.join(str(tmp_path), "checkpoints", "vld_official_hitsz_vcm.pth")
    assert open(path, "rb").read() == b"weights"
    assert download_official_checkpoint("hitsz_vcm") == path
    assert calls == [convert.OFFICIAL_CHECKPOINTS["hitsz_vcm"]]  # second call used the cache


def test_failed_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    import gdown

    def offline(id, output, quiet):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(gdown, "download", offline)
    expected = r"fetch https://drive.google.com/uc\?id=1BIJ.* save it as .*vld_official_bupt.pth"
    with pytest.raises(PretrainedWeightsError, match=expected):
        download_official_checkpoint("bupt", cache_dir=str(tmp_path))
    assert not os.listdir(tmp_path)
    with pytest.raises(ConfigError, match="hitsz_vcm"):
        download_official_checkpoint("market1501")
