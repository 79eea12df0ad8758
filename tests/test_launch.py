"""projects/VLD/main.py end to end on a tiny synthetic HITSZ-VCM copy: train, resume, evaluate, errors."""
import json
import os

import pytest
import torch

from vld_plugin.config import load_config
from vld_plugin.launch import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
pytestmark = pytest.mark.slow  # end-to-end runs of the command line

TINY = ["train.iters_per_epoch", "2", "data.workers", "0", "test.eval_freq", "1", "data.height", "64",
        "data.width", "32", "train.batch_size", "16", "sampler.num_instances", "2"]


@pytest.fixture(scope="module")
def root(cli_data):
    return cli_data


def test_train_resume_and_evaluate(root, tmp_path, capsys):
    run = str(tmp_path / "run")
    ckpt = os.path.join(run, "checkpoint.pth")
    overrides = ["data.root", root, "data.save_dir", run] + TINY
    assert main(["--config-file", DEMO] + overrides + ["train.max_epoch", "1"]) == 0
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    results = json.load(open(os.path.join(run, "results.json")))
    assert set(results["hitsz_vcm"]) == {"infrared-to-visible", "visible-to-infrared"}
    saved = load_config(os.path.join(run, "config.yaml"))
    assert saved.train.max_epoch == 1 and saved.data.root == root
    logs = [f for f in os.listdir(run) if f.startswith("train-") and f.endswith(".log")]
    assert len(logs) == 1 and "results after epoch 1" in open(os.path.join(run, logs[0])).read()

    # resume: continues with epoch 2 from the checkpoint
    assert main(["--config-file", DEMO, "--resume", ckpt] + overrides + ["train.max_epoch", "2"]) == 0
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    assert "resumed from" in capsys.readouterr().out
    trained = json.load(open(os.path.join(run, "results_epoch002.json")))

    # evaluate the same weights only, with figures: the same numbers as at the end of training
    out = str(tmp_path / "eval")
    assert main(["--config-file", DEMO, "--eval-only", "--visrank", "data.root", root, "data.save_dir", out,
                 "model.load_weights", ckpt] + TINY) == 0
    out = os.path.join(out, "eval")  # --eval-only writes into <data.save_dir>/eval
    figures = sorted(os.listdir(os.path.join(out, "visrank", "hitsz_vcm")))
    assert figures == ["infrared-to-visible_distances.png", "infrared-to-visible_ranked.png",
                       "visible-to-infrared_distances.png", "visible-to-infrared_ranked.png"]
    evaluated = json.load(open(os.path.join(out, "results.json")))["hitsz_vcm"]
    for protocol, metrics in trained["hitsz_vcm"].items():
        assert evaluated[protocol] == pytest.approx(metrics, abs=1e-6)


def test_missing_dataset_exits_2_with_pointers(tmp_path, capsys):
    config = os.path.join(REPO, "configs", "vld_vcm.yaml")
    code = main(["--config-file", config, "data.root", str(tmp_path / "nowhere"), "data.save_dir", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "datasets/README.md" in err[0] and "configs/vld_demo.yaml" in err[0]


def test_unknown_model_name_suggests_the_closest(root, tmp_path, capsys):
    code = main(["--config-file", DEMO, "model.name", "resnet5", "data.root", root,
                 "data.save_dir", str(tmp_path / "r")] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == ["error: model.name 'resnet5' is neither a VLD model nor a torchreid model; did you mean 'resnet50'?"]


def test_bad_checkpoint_exits_1_with_one_line(root, tmp_path, capsys):
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    code = main(["--config-file", DEMO, "--eval-only", "data.root", root, "data.save_dir", str(tmp_path / "r"),
                 "model.load_weights", str(bad)] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith(f"error: cannot load checkpoint {bad}")


def test_torchreid_model_name_builds_a_frame_model():
    from vld_plugin.compat import models
    from vld_plugin.launch import build_model
    from vld_plugin.models.frame_wise import FrameWise

    cfg = load_config(DEMO, ["model.name", "osnet_x0_25", "model.pretrained", "none"])
    model = build_model(cfg, num_classes=7)
    assert type(model).__bases__ == (FrameWise, type(models.build_model("osnet_x0_25", 7, pretrained=False)))
    assert model.classifier.out_features == 7


def test_ensure_synthetic_generates_only_when_missing(tmp_path, monkeypatch):
    from vld_plugin.config import ConfigError
    from vld_plugin.data import synthetic

    calls = []

    def fake_generate(target, seed):
        calls.append((target, seed))
        os.makedirs(os.path.join(target, "info"))
        open(os.path.join(target, "info", "query_IDX.txt"), "w").close()

    folder, marker, _ = synthetic.SYNTHETIC["hitsz_vcm"]
    monkeypatch.setitem(synthetic.SYNTHETIC, "hitsz_vcm", (folder, marker, fake_generate))
    target = synthetic.ensure_synthetic("hitsz_vcm", str(tmp_path), seed=5)
    assert target == os.path.join(str(tmp_path), "HITSZ-VCM") and calls == [(target, 5)]
    synthetic.ensure_synthetic("hitsz_vcm", str(tmp_path), seed=5)  # complete copy: not generated again
    assert len(calls) == 1
    with pytest.raises(ConfigError, match="can generate"):
        synthetic.ensure_synthetic("market1501", str(tmp_path))


def test_deterministic_setting_drives_cudnn(tmp_path):
    from vld_plugin.launch import parse_args, prepare_run

    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        prepare_run(parse_args(["--config-file", DEMO, "data.save_dir", str(tmp_path / "a")]))
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark  # default, as released
        prepare_run(parse_args(["--config-file", DEMO, "data.save_dir", str(tmp_path / "b"),
                                "train.deterministic", "False"]))
        assert not torch.backends.cudnn.deterministic and torch.backends.cudnn.benchmark
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def test_validation_split_larger_than_training_set_is_one_line(root, tmp_path, capsys):
    overrides = ["data.root", root, "data.save_dir", str(tmp_path / "run"), "data.val_ids", "99"] + TINY
    assert main(["--config-file", DEMO] + overrides) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: data.val_ids 99 must be between 1 and ")
