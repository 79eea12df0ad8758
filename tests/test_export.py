"""ONNX export: projects/VLD/export.py (export, ONNX Runtime check, JSON), vld_plugin.export, and
FeatureExtractor on an .onnx file against the same weights through PyTorch."""
import glob
import json
import os
import sys

import numpy as np
import pytest
import torch

from projects.VLD import export as export_cli
from vld_plugin import FeatureExtractor
from vld_plugin import export as export_lib
from vld_plugin.checkpoint import FORMAT, save_checkpoint
from vld_plugin.config import load_config
from vld_plugin.errors import CheckpointError, FeatureInputError, MissingDependencyError
from vld_plugin.export import OnnxModel, difference
from vld_plugin.launch import build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
VCM = os.path.join(REPO, "configs", "vld_vcm.yaml")
# the demo's tiny VLD, smaller still: 32x16 input, 4 frames, 2 blocks (hub from block 1)
SMALL = ["data.height", "32", "data.width", "16", "video.seq_len", "4", "vld.layers", "2", "vld.text_layers", "1"]
TOLERANCE = 1e-4


def cli(args, capsys):
    """``export.py`` in-process -> (exit code, stdout, stderr lines)."""
    code = export_cli.main(args)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def random_model(config, opts):
    """The model ``--random-weights`` exports for ``config`` + ``opts``, built again (same seed)."""
    cfg = load_config(config, list(opts) + ["model.pretrained", "none"])
    torch.manual_seed(cfg.train.seed)
    return build_model(cfg, 1).eval()


def check_against_torch(model, path, batch, seq_len, height, width):
    """ONNX Runtime on ``path`` vs ``model`` on a batch of another size than export and CLI check used."""
    images = torch.randn(batch, seq_len, 3, height, width, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(images)
    got = OnnxModel(path)(images)
    assert got.shape == expected.shape and got.dtype == torch.float32
    max_abs, max_rel = difference(expected, got)
    assert max_rel <= TOLERANCE, (max_abs, max_rel)
    if batch > 1:
        assert not torch.allclose(expected[0], expected[1], rtol=1e-2, atol=1e-3)  # tracklets' features differ
    return got


def test_difference_is_per_tracklet_relative_to_its_largest_value():
    ref = torch.tensor([[1.0, -4.0, 2.0], [0.5, 0.25, -0.1]])
    res = ref + torch.tensor([[0.0, 0.02, 0.0], [0.001, 0.0, 0.0]])
    max_abs, max_rel = difference(ref, res)
    assert max_abs == pytest.approx(0.02)
    assert max_rel == pytest.approx(max(0.02 / 4.0, 0.001 / 0.5))  # the second tracklet's 0.002


@pytest.mark.parametrize("name, opts, dim", [
    ("vld", SMALL, 128),  # [feat_cls, feat_sta], width 64
    ("clip_tap", SMALL + ["model.name", "clip_tap"], 64),
    # frame-wise, 64x32; model.pretrained none: the demo's miniature CLIP file is for vld / clip_tap
    ("osnet_x0_25", ["model.name", "osnet_x0_25", "model.pretrained", "none", "video.seq_len", "3"], 512),
])
def test_random_weights_export_and_verify(name, opts, dim, tmp_path, capsys):
    out = str(tmp_path / "sub" / f"{name}.onnx")  # the folder is made
    nowhere = ["data.root", str(tmp_path / "no_data")]
    code, stdout, err = cli(["--config-file", DEMO, "--output", out] + opts + nowhere + ["--random-weights"], capsys)
    assert code == 0, err
    assert "using a seeded random batch" in stdout and "max relative difference" in stdout
    cfg = load_config(DEMO, opts)
    t, h, w = cfg.video.seq_len, cfg.data.height, cfg.data.width
    described = json.load(open(os.path.join(tmp_path, "sub", f"{name}.json")))
    assert described["model"] == name and described["opset"] == export_lib.OPSET
    assert described["input"]["shape"] == ["batch", t, 3, h, w] and described["input"]["name"] == "tracklets"
    assert described["output"]["shape"] == ["batch", dim]
    assert described["normalisation"]["mean"] == [0.485, 0.456, 0.406]
    assert "(pixel / 255 - mean) / std" in described["input"]["description"]
    check = described["verification"]
    assert check["batch"] == 3 and check["traced_batch"] == 2 and check["max_rel_diff"] <= TOLERANCE
    assert described["config"]["model"]["name"] == name and described["weights"].startswith("random")

    onnx_model = OnnxModel(out)
    assert (onnx_model.seq_len, onnx_model.height, onnx_model.width, onnx_model.feature_dim) == (t, h, w, dim)
    assert isinstance(onnx_model.session.get_inputs()[0].shape[0], str)  # the batch is free
    model = random_model(DEMO, opts)
    check_against_torch(model, out, 5, t, h, w)  # batch 5: neither the traced 2 nor the checked 3
    check_against_torch(model, out, 1, t, h, w)
    # the file holds these weights: another seed's model gives other features
    torch.manual_seed(123)
    other = build_model(load_config(DEMO, opts + ["model.pretrained", "none"]), 1).eval()
    images = torch.randn(2, t, 3, h, w)
    with torch.no_grad():
        assert difference(other(images), onnx_model(images))[1] > 1e-2


def test_the_input_description_is_in_the_file(tmp_path, capsys):
    import onnx

    out = str(tmp_path / "m.onnx")
    assert cli(["--config-file", DEMO, "--output", out, "--random-weights", "data.root", str(tmp_path)] + SMALL +
               ["data.norm_mean", "[0.5, 0.5, 0.5]", "data.norm_std", "[0.25, 0.5, 0.25]"], capsys)[0] == 0
    proto = onnx.load(out)
    (inp,), (output,) = proto.graph.input, proto.graph.output
    assert inp.name == "tracklets" and "(pixel / 255 - mean) / std" in inp.doc_string
    assert "mean [0.5, 0.5, 0.5] and std [0.25, 0.5, 0.25]" in inp.doc_string
    assert [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim] == ["batch", 128]
    assert OnnxModel(out).normalisation() == ([0.5, 0.5, 0.5], [0.25, 0.5, 0.25])
    assert {"model": "vld", "test_sample_method": "first_of_chunk", "seq_len": "4"}.items() <= \
        OnnxModel(out).metadata.items()
    # FeatureExtractor refuses a config that normalises or samples otherwise than the export
    with pytest.raises(FeatureInputError, match="exported for inputs normalised with mean"):
        FeatureExtractor(DEMO, out, opts=SMALL)
    with pytest.raises(FeatureInputError, match=r"takes \(B, 4, 3, 32, 16\) tracklets but the config gives 6"):
        FeatureExtractor(DEMO, out, opts=SMALL + ["video.seq_len", "6"])


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny VLD with random weights and non-trivial BNNeck statistics, saved as our checkpoint."""
    tmp = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = build_model(load_config(DEMO, SMALL + ["model.pretrained", "none"]), 5)
    for name, buf in model.named_buffers():
        if "running" in name:
            buf.uniform_(0.5, 1.5)
    ckpt = str(tmp / "checkpoint.pth")
    save_checkpoint({"format": FORMAT, "epoch": 1, "model": model.state_dict()}, ckpt)
    return model.eval(), ckpt, tmp


def write_tracklets(folder, lengths, size, seed=3):
    """Random PNG frames (every third twice the size, to be resized); a list of path lists."""
    import cv2

    rng = np.random.default_rng(seed)
    tracklets = []
    for k, n in enumerate(lengths):
        os.makedirs(os.path.join(folder, f"t{k}"), exist_ok=True)
        paths = []
        for i in range(n):
            h, w = size if i % 3 else (2 * size[0], 2 * size[1])
            paths.append(os.path.join(folder, f"t{k}", f"{i:03d}.png"))
            cv2.imwrite(paths[-1], rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        tracklets.append(paths)
    return tracklets


def test_checkpoint_export_and_feature_extractor_on_onnx(saved, tmp_path, capsys):
    model, ckpt, tmp = saved
    out = str(tmp_path / "vld.onnx")
    code, stdout, err = cli(["--config-file", DEMO, "model.load_weights", ckpt, "--output", out, "data.root",
                             str(tmp_path)] + SMALL, capsys)
    assert code == 0, err
    described = json.load(open(str(tmp_path / "vld.json")))
    assert described["weights"] == os.path.abspath(ckpt) and described["verification"]["max_rel_diff"] <= TOLERANCE

    tracklets = write_tracklets(str(tmp / "frames"), [9, 4, 13, 2, 7], (32, 16))
    from_ckpt = FeatureExtractor(DEMO, ckpt, opts=SMALL + ["test.batch_size", "2"], device="cpu")
    from_onnx = FeatureExtractor(DEMO, out, opts=SMALL + ["test.batch_size", "2"])
    assert "onnxruntime CPUExecutionProvider" in repr(from_onnx)
    expected, got = from_ckpt(tracklets), from_onnx(tracklets)
    assert got.shape == (5, 128) and got.dtype == torch.float32
    assert difference(expected, got)[1] <= TOLERANCE
    # the same through a uint8 tensor, and the BNNeck statistics play no part in the test feature
    u8 = torch.randint(0, 256, (3, 4, 3, 32, 16), dtype=torch.uint8)
    assert difference(from_ckpt(u8), from_onnx(u8))[1] <= TOLERANCE
    with pytest.raises(FeatureInputError, match=r"expected a tensor \(B, 4, 3, 32, 16\)"):
        from_onnx(torch.zeros(2, 5, 3, 32, 16))
    with pytest.raises(CheckpointError, match="ONNX model .*nope.onnx does not exist"):
        FeatureExtractor(DEMO, str(tmp_path / "nope.onnx"), opts=SMALL)
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(open(out, "rb").read()[:5000])
    with pytest.raises(CheckpointError, match="cannot load ONNX model .*damaged.onnx: ") as caught:
        FeatureExtractor(DEMO, str(damaged), opts=SMALL)
    assert "\n" not in str(caught.value)


def test_the_authors_released_checkpoint_exports_through_the_converter(saved, tmp_path, capsys):
    from vld_plugin.models import to_official_state_dict

    model, _, _ = saved
    official = str(tmp_path / "official.pth")
    torch.save({"module." + k: v for k, v in to_official_state_dict(model.state_dict()).items()}, official)
    out = str(tmp_path / "official.onnx")
    code, _, err = cli(["--config-file", DEMO, "--output", out, "model.load_weights", official, "data.root",
                        str(tmp_path)] + SMALL, capsys)
    assert code == 0, err
    check_against_torch(model, out, 4, 4, 32, 16)


def test_refuses_without_weights_and_with_bad_arguments(tmp_path, capsys):
    out = str(tmp_path / "m.onnx")
    code, _, err = cli(["--config-file", DEMO, "--output", out] + SMALL, capsys)
    assert code == 2 and err == [
        "error: export needs trained weights: set model.load_weights PATH (a checkpoint of ours or the authors' "
        "released one), or pass --random-weights to export random weights for testing"]
    code, _, err = cli(["--config-file", DEMO, "--output", str(tmp_path / "m.pt"), "--random-weights"], capsys)
    assert code == 2 and err == ["error: --output " + str(tmp_path / "m.pt") + " must end in .onnx (FeatureExtractor "
                                 "tells ONNX models by it)"]
    code, _, err = cli(["--config-file", DEMO, "--random-weights"], capsys)
    assert code == 2 and err == ["error: the following arguments are required: --output; run with --help for the "
                                 "options"]
    code, _, err = cli(["--config-file", DEMO, "--output", out, "--random-weights", "vld.widht", "32"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "vld.width" in err[0]
    code, _, err = cli(["--config-file", DEMO, "--output", out, "--random-wieghts"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: unknown option --random-wieghts")
    code, _, err = cli(["--config-file", DEMO, "--output", out, "model.load_weights", str(tmp_path / "none.pth")],
                       capsys)
    assert code == 1 and err == [f"error: checkpoint {tmp_path / 'none.pth'} does not exist; check --resume / "
                                 "model.load_weights"]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = cli(["--config-file", DEMO, "--output", str(blocker / "m.onnx"), "--random-weights"], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith(f"error: cannot write into {blocker}: ")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # nothing written


def test_missing_extra_is_one_line(tmp_path, capsys, monkeypatch, saved):
    for module in ("onnx", "onnxruntime"):
        with monkeypatch.context() as m:
            m.setitem(sys.modules, module, None)  # as if not installed
            code, _, err = cli(["--config-file", DEMO, "--output", str(tmp_path / "m.onnx"), "--random-weights"],
                               capsys)
            assert code == 2 and len(err) == 1
            assert err[0].startswith(f"error: ONNX export and ONNX models need {module}, which cannot be imported (")
            assert err[0].endswith('install the export extra: pip install -e ".[export]" (in the repository root)')
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnxruntime", None)
        with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[export\]"'):
            FeatureExtractor(DEMO, str(tmp_path / "m.onnx"), opts=SMALL)
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_the_command_as_a_process(tmp_path):
    """``python projects/VLD/export.py`` itself: exit codes and one line, no traceback, as installed without
    the extra and with it."""
    import subprocess

    script = os.path.join(REPO, "projects", "VLD", "export.py")
    block = ("import sys, runpy; sys.modules['onnxruntime'] = None; sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")
    args = ["--config-file", DEMO, "--output", str(tmp_path / "m.onnx"), "--random-weights", "data.root",
            str(tmp_path / "none")] + SMALL
    proc = subprocess.run([sys.executable, "-c", block, script] + args, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ONNX export and ONNX models need onnxruntime, which cannot be imported")
    proc = subprocess.run([sys.executable, script] + args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"described in {tmp_path / 'm.json'}" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.onnx"]


@pytest.mark.parametrize("scale, passes", [(2.5e-4, False), (5e-5, True)])
def test_difference_above_the_tolerance_fails_with_exit_1(scale, passes, tmp_path, capsys, monkeypatch):
    """ONNX Runtime's features made off by ``scale`` relative: only above 1e-4 is it refused."""
    run = OnnxModel.__call__
    monkeypatch.setattr(OnnxModel, "__call__", lambda self, images: run(self, images) * (1 + scale))
    out = str(tmp_path / "m.onnx")
    code, stdout, err = cli(["--config-file", DEMO, "--output", out, "--random-weights", "data.root",
                             str(tmp_path / "none")] + SMALL, capsys)
    measured = float(stdout.split("max relative difference ")[1].split()[0])
    assert measured == pytest.approx(scale, rel=0.02)
    if passes:
        assert code == 0 and sorted(os.listdir(tmp_path)) == ["m.json", "m.onnx"]
        return
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: the exported model's features differ from PyTorch's by 0.00025 relative (max abs ")
    assert err[0].endswith(f"on 3 tracklets, above the tolerance 0.0001; {out} was not written")
    assert os.listdir(tmp_path) == []  # neither the file, nor its description, nor a temporary


def test_export_restores_the_training_mode_and_leaves_outputs_unchanged(tmp_path):
    model = random_model(DEMO, SMALL).train()
    images = torch.randn(3, 4, 3, 32, 16)
    model.eval()
    with torch.no_grad():
        before = model(images)
    model.train()
    export_lib.export_and_verify(model, str(tmp_path / "m.onnx"), images, [0.485, 0.456, 0.406],
                                 [0.229, 0.224, 0.225], log=lambda line: None)
    assert model.training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images), before)


@pytest.mark.slow
def test_full_size_vld_random_weights(tmp_path, capsys):
    """ViT-B/16 at 288x144, T = 6, 1536-d features, exported and checked by the command, then again here
    on a batch of one against the model built anew."""
    out = str(tmp_path / "vld_full.onnx")
    code, stdout, err = cli(["--config-file", VCM, "--output", out, "--random-weights", "data.root",
                             str(tmp_path / "none")], capsys)
    assert code == 0, err
    described = json.load(open(str(tmp_path / "vld_full.json")))
    assert described["input"]["shape"] == ["batch", 6, 3, 288, 144] and described["output"]["shape"] == ["batch", 1536]
    assert described["verification"]["max_rel_diff"] <= TOLERANCE
    print(f"full-size vld: {described['verification']}", file=sys.__stdout__)
    model = random_model(VCM, ["data.root", str(tmp_path / "none")])
    assert sum(p.numel() for p in model.visual.parameters()) > 85e6  # really ViT-B/16
    images = torch.randn(1, 6, 3, 288, 144, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(images)
    assert difference(expected, OnnxModel(out)(images))[1] <= TOLERANCE


@pytest.mark.slow
def test_dynamo_exporter_gives_the_same_model(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    out = str(tmp_path / "dynamo.onnx")
    code, _, err = cli(["--config-file", DEMO, "--output", out, "--random-weights", "--dynamo", "data.root",
                        str(tmp_path / "none")] + SMALL, capsys)
    assert code == 0, err
    assert json.load(open(str(tmp_path / "dynamo.json")))["exporter"] == "torch.onnx.export(dynamo=True)"
    check_against_torch(random_model(DEMO, SMALL), out, 5, 4, 32, 16)


def test_demo_checkpoint_export_then_feature_extractor(cli_data, tmp_path, capsys):
    """The demo trained for two iterations, exported (checked on the configured data's test tracklets),
    then FeatureExtractor on the .onnx file = FeatureExtractor on the checkpoint, on the same frame files."""
    from vld_plugin.launch import main as train

    run = str(tmp_path / "run")
    assert train(["--config-file", DEMO, "data.root", cli_data, "data.save_dir", run, "train.max_epoch", "1",
                  "train.iters_per_epoch", "2", "data.workers", "0", "train.batch_size", "16",
                  "sampler.num_instances", "2", "test.eval_freq", "5"]) == 0
    capsys.readouterr()
    config, ckpt, out = os.path.join(run, "config.yaml"), os.path.join(run, "checkpoint.pth"), str(tmp_path / "d.onnx")
    code, stdout, err = cli(["--config-file", config, "--output", out, "model.load_weights", ckpt], capsys)
    assert code == 0, err
    check = json.load(open(str(tmp_path / "d.json")))["verification"]
    assert check["data"].startswith(f"hitsz_vcm test set under {cli_data}: the first 3 query and 3 gallery")
    assert check["batch"] == 6 and check["max_rel_diff"] <= TOLERANCE

    folders = sorted(glob.glob(os.path.join(cli_data, "HITSZ-VCM", "Test", "*", "*", "*")))[:7]
    tracklets = [sorted(glob.glob(os.path.join(f, "*.jpg")), key=lambda p: int(os.path.basename(p)[:-4]))
                 for f in folders]
    assert len(tracklets) == 7 and all(len(t) >= 6 for t in tracklets)
    expected = FeatureExtractor(config, ckpt, device="cpu")(tracklets)
    got = FeatureExtractor(config, out)(tracklets)
    max_abs, max_rel = difference(expected, got)
    print(f"demo checkpoint: max abs {max_abs:.3g}, max rel {max_rel:.3g}", file=sys.__stdout__)
    assert got.shape == (7, 128) and max_rel <= TOLERANCE
    assert difference(expected[:1].expand(7, -1), got)[1] > 1e-3  # the tracklets' features differ
