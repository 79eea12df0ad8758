"""Config values checked by ``load_config`` before any work: ranges, enumerations, list keys,
types, model.name and model.pretrained; torchreid ImageNet weights only from the cache."""
import ast
import os
import urllib.error

import gdown
import pytest
import torch
from torch.utils import model_zoo

from vld_plugin import compat
from vld_plugin.config import (
    LR_SCHEDULERS,
    OPTIMIZERS,
    RANGES,
    ConfigError,
    get_default_config,
    load_config,
    value_choices,
)
from vld_plugin.errors import OptimConfigError, PretrainedWeightsError
from vld_plugin.launch import build_model
from vld_plugin.models import mini_clip
from vld_plugin.optim import build_lr_scheduler, build_optimizer


def error_of(opts, config_file=""):
    with pytest.raises(ConfigError) as e:
        load_config(config_file, opts)
    message = str(e.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("key, value, shown, allowed", [
    ("train.batch_size", "0", "0", "> 0"),
    ("train.batch_size", "-8", "-8", "> 0"),
    ("video.seq_len", "0", "0", "> 0"),
    ("data.height", "-64", "-64", "> 0"),
    ("data.width", "0", "0", "> 0"),
    ("train.iters_per_epoch", "0", "0", "> 0"),
    ("train.lr", "0", "0.0", "> 0"),
    ("train.lr", "-1e-3", "-0.001", "> 0"),
    ("train.lr", "1e999", "inf", "> 0"),
    ("train.max_epoch", "0", "0", "> 0"),
    ("test.batch_size", "0", "0", "> 0"),
    ("sampler.num_instances", "0", "0", "> 0"),
    ("sampler.num_cams", "-1", "-1", "> 0"),
    ("train.print_freq", "0", "0", "> 0"),
    ("vld.num_ctx", "0", "0", "> 0"),
    ("data.workers", "-1", "-1", ">= 0"),
    ("train.weight_decay", "-0.1", "-0.1", ">= 0"),
    ("train.grad_clip", "-1.0", "-1.0", ">= 0"),
    ("train.warmup_epochs", "-1", "-1", ">= 0"),
    ("data.val_ids", "-1", "-1", ">= 0"),
    ("loss.vld.lambda1", "-0.5", "-0.5", ">= 0"),
    ("train.warmup_factor", "1.5", "1.5", "in [0, 1]"),
    ("train.min_lr_factor", "-0.01", "-0.01", "in [0, 1]"),
    ("adam.beta2", "1.0", "1.0", "in [0, 1)"),
    ("train.seed", "-1", "-1", "in [0, 2**32 - 1]"),
    ("train.seed", str(2 ** 32), str(2 ** 32), "in [0, 2**32 - 1]"),
    ("test.ranks", "[1, 0]", "[1, 0]", "> 0"),
    ("data.norm_std", "[0.2, 0.0, 0.2]", "[0.2, 0.0, 0.2]", "> 0"),
])
def test_numbers_out_of_range_name_key_value_and_range(key, value, shown, allowed):
    message = error_of([key, value])
    assert message.startswith(f"{key} must be {allowed}, got {shown} ")


@pytest.mark.parametrize("opts", [
    ["data.workers", "0"], ["train.weight_decay", "0"], ["train.grad_clip", "0"], ["train.warmup_epochs", "0"],
    ["train.warmup_factor", "0"], ["train.warmup_factor", "1"], ["train.min_lr_factor", "1.0"],
    ["adam.beta1", "0"], ["sgd.momentum", "1"], ["test.eval_freq", "0"], ["test.eval_freq", "-1"],
    ["train.seed", "0"], ["train.seed", str(2 ** 32 - 1)], ["loss.vld.lambda3", "0"], ["data.val_ids", "0"],
    ["vld.width", "0"], ["train.lr", "1"], ["train.batch_size", "8", "sampler.num_instances", "4"],
    ["train.batch_size", "2", "sampler.num_instances", "1"], ["test.start_eval", "0"], ["hitsz_vcm.min_seq_len", "0"],
])
def test_edge_values_pass(opts):
    cfg = load_config("", opts)
    for key, value in zip(opts[::2], opts[1::2]):
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert node == ast.literal_eval(value)


def test_int_given_for_a_float_key_becomes_a_float(tmp_path):
    assert load_config("", ["train.lr", "1"]).train.lr == 1.0
    assert type(load_config("", ["train.weight_decay", "0"]).train.weight_decay) is float
    (tmp_path / "c.yaml").write_text("train:\n  lr: 1\n")
    assert type(load_config(str(tmp_path / "c.yaml")).train.lr) is float


def test_every_number_of_the_defaults_has_a_range():
    """A new numeric key must get a range (or be an enumeration) to be checked at all."""
    defaults, enums = get_default_config(), value_choices()

    def numeric(node, prefix=""):
        for name, value in node.items():
            if isinstance(value, dict):
                yield from numeric(value, f"{prefix}{name}.")
            elif isinstance(value, (list, tuple)) and value and type(value[0]) in (int, float) \
                    or type(value) in (int, float):
                yield prefix + name

    missing = [k for k in numeric(defaults) if k not in RANGES and k not in enums]
    assert missing == []
    assert set(RANGES) <= set(numeric(defaults))


def test_batch_size_must_fit_the_sampler_groups():
    message = error_of(["train.batch_size", "30"])
    assert "train.batch_size 30" in message and "sampler.num_instances" in message
    message = error_of(["sampler.train_sampler", "CameraModalitySampler", "sampler.num_cams", "3"])
    assert "train.batch_size 32" in message and "sampler.num_cams" in message
    load_config("", ["sampler.train_sampler", "CameraModalitySampler", "sampler.num_cams", "4"])


def test_start_epoch_must_leave_something_to_train():
    message = error_of(["train.max_epoch", "5", "train.start_epoch", "5"])
    assert "train.start_epoch 5" in message and "train.max_epoch 5" in message
    load_config("", ["train.max_epoch", "5", "train.start_epoch", "4"])
    load_config("", ["train.max_epoch", "5", "train.start_epoch", "5", "test.evaluate", "True"])


# ------------------------------------------------------------------ enumerations
@pytest.mark.parametrize("key, value, allowed", [
    ("train.optim", "adamx", "'adamw'"),
    ("train.lr_scheduler", "cosin", "'warmup_cosine'"),
    ("train.amp", "fp8", "'bf16'"),
    ("sampler.train_sampler", "RandomSamplr", "'ModalityIdentitySampler'"),
    ("video.sample_method", "evenlyy", "'restricted_random'"),
    ("video.test_sample_method", "middle", "'first_of_chunk'"),
    ("test.dist_metric", "manhattan", "'cosine'"),
    ("vld.temporal_fusion", "lstm", "'transformer_cls'"),
    ("bupt_campus.auxiliary_ir", "RGB", "'FakeIR'"),
    ("data.sources", "hitsz_vcn", "'hitsz_vcm'"),
    ("data.targets", "[market1501x]", "'bupt_campus'"),
    ("data.transforms", "[random_rotate]", "'random_erase'"),
    ("vld.clip_name", "ViT-B-16-quick", "ViT-B-16-quickgelu"),
])
def test_unknown_choice_names_key_value_and_choices(key, value, allowed):
    message = error_of([key, value])
    shown = value.strip("[]")
    assert message.startswith(f"{key} '{shown}' is unknown; ") and allowed in message


def test_prompt_template_is_one_of_the_paper_templates():
    assert error_of(["vld.prompt_template", "5"]) == "vld.prompt_template 5 is unknown; choose from 1, 2, 3, 4"


@pytest.mark.parametrize("key", ["train.optim", "train.lr_scheduler", "train.amp", "sampler.train_sampler",
                                 "video.sample_method", "test.dist_metric", "vld.temporal_fusion",
                                 "vld.prompt_template", "data.sources"])
def test_every_choice_passes(key):
    for value in value_choices()[key]:
        load_config("", [key, repr(value) if isinstance(value, str) else str(value)])


def test_optimizer_and_scheduler_choices_are_the_ones_optim_builds():
    model = torch.nn.Linear(2, 2)
    for optim in OPTIMIZERS:
        optimizer = build_optimizer(model, optim=optim)
    for scheduler in LR_SCHEDULERS:
        build_lr_scheduler(optimizer, lr_scheduler=scheduler)
    with pytest.raises(OptimConfigError):
        build_optimizer(model, optim="adamx")


def test_dataset_choices_are_the_plugins_datasets():
    assert sorted(value_choices()["data.sources"]) == ["bupt_campus", "hitsz_vcm"]
    assert "mars" in compat.video_dataset_factory()  # torchreid's, not modality-aware
    assert error_of(["data.sources", "mars"]).startswith("data.sources 'mars' is unknown")


# ------------------------------------------------------------------ list keys and types
def test_plain_word_is_a_one_element_list_on_the_command_line():
    cfg = load_config("", ["data.sources", "bupt_campus", "data.targets", "hitsz_vcm",
                           "data.transforms", "random_flip", "test.ranks", "5"])
    assert (cfg.data.sources, cfg.data.targets, cfg.data.transforms, cfg.test.ranks) == \
        (["bupt_campus"], ["hitsz_vcm"], ["random_flip"], [5])
    assert load_config("", ["data.sources", "[bupt_campus, hitsz_vcm]"]).data.sources == ["bupt_campus", "hitsz_vcm"]
    assert load_config("", ["data.sources", "['hitsz_vcm','bupt_campus']"]).data.sources == ["hitsz_vcm", "bupt_campus"]
    assert load_config("", ["data.transforms", "[]"]).data.transforms == []


def test_plain_word_is_a_one_element_list_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  sources: bupt_campus\n  transforms: random_crop\ntest:\n  ranks: 1\n")
    cfg = load_config(str(path))
    assert (cfg.data.sources, cfg.data.transforms, cfg.test.ranks) == (["bupt_campus"], ["random_crop"], [1])


def test_list_errors_show_the_list_syntax():
    message = error_of(["data.sources", "[hitsz_vcm"])
    assert message == ("bad value in the command line: data.sources '[hitsz_vcm' is not a list; "
                       "write it as data.sources \"['hitsz_vcm']\"")
    hint = "; several values of data.sources go in one argument: data.sources \"['hitsz_vcm','bupt_campus']\""
    assert error_of(["data.sources", "hitsz_vcm", "bupt_campus"]) == \
        "overrides must come as KEY VALUE pairs; 'bupt_campus' has no value" + hint
    assert error_of(["data.sources", "hitsz_vcm", "bupt_campus", "train.lr", "1"]) == \
        "'bupt_campus' in the command line is a group of keys (bupt_campus.auxiliary, bupt_campus.auxiliary_ir, " \
        "bupt_campus.trimmed_test), not a key" + hint
    assert error_of(["data.sources", "hitsz_vcm,bupt_campus"]) == (
        "data.sources 'hitsz_vcm,bupt_campus' is unknown; choose from 'hitsz_vcm', 'bupt_campus'; "
        "several go as data.sources \"['bupt_campus','hitsz_vcm']\"")
    assert error_of(["test.ranks", "[1.5]"]) == \
        "test.ranks must be a list of integers, got [1.5]; write it as test.ranks \"[1,5,10,20]\""


@pytest.mark.parametrize("opts, text", [
    (["data.sources", "[]"], "data.sources must not be empty, got []"),
    (["test.ranks", "[]"], "test.ranks must not be empty, got []"),
    (["data.save_dir", ""], "data.save_dir must not be empty, got ''"),
    (["data.norm_mean", "[0.5]"], "data.norm_mean must have 3 values, got [0.5]"),
])
def test_sizes_of_values(opts, text):
    assert error_of(opts).startswith(text)


def test_wrong_types_name_key_and_value(tmp_path):
    assert error_of(["train.max_epoch", "2.5"]) == \
        "bad value in the command line: train.max_epoch must be an integer (default 24), got 2.5"
    assert error_of(["test.rerank", "maybe"]) == \
        "bad value in the command line: test.rerank must be True or False (default False), got 'maybe'"
    assert load_config("", ["test.rerank", "true"]).test.rerank is True
    (tmp_path / "group.yaml").write_text("train: 3\n")
    assert "'train' in " in (message := error_of([], str(tmp_path / "group.yaml"))) and "is a group of keys" in message
    (tmp_path / "empty_group.yaml").write_text("train:\n  # lr: 0.1\ntest:\n  eval_freq: 4\n")
    assert load_config(str(tmp_path / "empty_group.yaml")).test.eval_freq == 4
    (tmp_path / "latin1.yaml").write_bytes(b"train:\n  optim: adam\xff\n")
    assert "is not UTF-8 text" in error_of([], str(tmp_path / "latin1.yaml"))


# ------------------------------------------------------------------ model.name, model.pretrained
def test_model_name_plugin_or_torchreid_with_closest_name():
    for name in ("vld", "clip_tap", "osnet_x0_25", "resnet50"):
        assert load_config("", ["model.name", name]).model.name == name
    assert error_of(["model.name", "resnet5"]) == \
        "model.name 'resnet5' is neither a VLD model nor a torchreid model; did you mean 'resnet50'?"


def test_model_pretrained_values(tmp_path, monkeypatch):
    weights = tmp_path / "ViT-B-16.pt"
    weights.write_bytes(b"x")
    for opts in (["model.pretrained", str(weights)], ["model.pretrained", "none"], ["model.pretrained", "openai"],
                 ["model.name", "resnet50", "model.pretrained", "imagenet"], ["model.name", "resnet50"],
                 ["model.name", "osnet_x0_25", "model.pretrained", "none"]):
        load_config("", opts)
    missing = str(tmp_path / "gone.pt")
    message = error_of(["model.pretrained", missing])
    assert message.startswith(f"model.pretrained '{missing}' is not 'openai', 'none' or an existing file")
    assert "model.pretrained none" in message and "current folder" not in message
    monkeypatch.chdir(tmp_path)  # a relative path, and the demo's repository-relative one, from another folder
    message = error_of(["model.pretrained", "weights/gone.pt"])
    assert f"(CLIP weights of vld, read from the current folder {tmp_path})" in message
    message = error_of(["model.pretrained", "vld_plugin/weights/mini_clip.pt"])
    assert message.endswith(f"(CLIP weights of vld, read from the current folder {tmp_path}); run from the "
                            f"repository root or set model.pretrained {mini_clip.DEFAULT_WEIGHTS}")
    message = error_of(["model.name", "vld", "model.pretrained", "imagenet"])
    assert message.startswith("model.pretrained 'imagenet' is not 'openai'")
    message = error_of(["model.name", "resnet50", "model.pretrained", str(weights)])
    assert message.startswith(f"model.pretrained '{weights}' does not fit torchreid model resnet50: use imagenet")


@pytest.mark.parametrize("name, cached, parameter", [
    ("resnet18", os.path.join("hub", "checkpoints", "resnet18-5c106cde.pth"), "conv1.weight"),  # torch's load_url
    ("osnet_x0_25", os.path.join("checkpoints", "osnet_x0_25_imagenet.pth"), "conv1.conv.weight"),  # gdown
])
def test_torchreid_imagenet_weights_offline_are_one_line(name, cached, parameter, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / cached
    real_load_url = model_zoo.load_url

    def offline_load_url(url, *args, **kwargs):  # what urllib does without a network, unless cached
        if not path.exists():
            raise urllib.error.URLError("[Errno -2] Name or service not known")
        return real_load_url(url, *args, **kwargs)

    def offline_download(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(model_zoo, "load_url", offline_load_url)
    monkeypatch.setattr(gdown, "download", offline_download)
    load_url, download = model_zoo.load_url, gdown.download
    cfg = load_config("", ["model.name", name, "model.pretrained", "imagenet"])
    with pytest.raises(PretrainedWeightsError) as e:
        build_model(cfg, 4)
    message = str(e.value)
    assert message.startswith(f"cannot download the ImageNet weights of torchreid model {name} (")
    assert "Name or service not known" in message and "): fetch http" in message
    assert f" to {path}, or set model.pretrained none" in message and "\n" not in message
    assert not path.exists()  # nothing downloaded
    assert (model_zoo.load_url, gdown.download) == (load_url, download)  # put back

    torch.manual_seed(0)
    saved = compat.models.build_model(name, 4, loss="triplet", pretrained=False).state_dict()
    os.makedirs(path.parent, exist_ok=True)
    torch.save(saved, path)
    torch.manual_seed(1)
    model = build_model(cfg, 4)
    torch.testing.assert_close(model.state_dict()[parameter], saved[parameter], rtol=0, atol=0)
    assert (model_zoo.load_url, gdown.download) == (load_url, download)


# ------------------------------------------------------------------ the CLI
@pytest.mark.slow
def test_cli_rejects_a_bad_value_before_any_work(python_runner, tmp_path):
    """``python projects/VLD/main.py ...`` with sys.executable in the repository (conftest.run_python)."""
    save_dir = tmp_path / "run"
    result = python_runner([os.path.join("projects", "VLD", "main.py"), "--config-file", "configs/vld_demo.yaml",
                            "train.batch_size", "0", "data.save_dir", str(save_dir)])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: train.batch_size must be > 0, got 0 (default 32)"]
    assert not save_dir.exists()  # failed before the save dir (or anything else) was made
