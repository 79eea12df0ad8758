"""Config loading: torchreid key names, strict keys with suggestions, kwargs helpers, CLI exit codes."""
import os

import pytest

from vld_plugin.config import (
    ConfigError,
    engine_run_kwargs,
    get_default_config,
    load_config,
    lr_scheduler_kwargs,
    optimizer_kwargs,
    videodata_kwargs,
)


def test_defaults_follow_the_authors_recipe():
    cfg = get_default_config()
    assert cfg.train.lr == 2.5e-5 and cfg.train.weight_decay == 1e-4
    assert cfg.train.max_epoch == 24 and cfg.train.iters_per_epoch == 200
    assert cfg.train.seed == 1 and cfg.video.seq_len == 6
    assert (cfg.data.height, cfg.data.width) == (288, 144)
    assert (cfg.loss.vld.lambda1, cfg.loss.vld.lambda2, cfg.loss.vld.lambda3) == (0.08, 0.4, 1.0)
    assert cfg.vld.hub_start_block == 9 and cfg.vld.num_ctx == 4 and cfg.vld.prompt_template == 4


def test_file_then_opts_override(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.001\n  max_epoch: 5\ndata:\n  sources: [bupt_campus]\n")
    cfg = load_config(str(path), ["train.max_epoch", "7", "test.ranks", "[1, 3]"])
    assert cfg.train.lr == 0.001 and cfg.train.max_epoch == 7
    assert list(cfg.data.sources) == ["bupt_campus"] and list(cfg.test.ranks) == [1, 3]
    assert cfg.is_frozen()


def test_unknown_key_in_opts_names_key_and_closest():
    with pytest.raises(ConfigError) as e:
        load_config("", ["train.lrr", "0.1"])
    assert str(e.value) == "unknown config key 'train.lrr' in the command line; did you mean 'train.lr'?"


@pytest.mark.parametrize("typo, meant", [
    ("train.learning_rate", "train.lr"),  # initials
    ("train.max_epochs", "train.max_epoch"),  # plural
    ("train.epochs", "train.max_epoch"),
    ("data.save-dir", "data.save_dir"),  # - for _
    ("data.num_workers", "data.workers"),
    ("model.pretrain", "model.pretrained"),  # prefix
    ("trian.lr", "train.lr"),  # group typo
    ("optimizer.lr", "train.lr"),  # unknown group: the key of that name anywhere
    ("vld.numctx", "vld.num_ctx"),
    ("vld.head", "vld.heads"),
    ("loss.vdl.lambda1", "loss.vld.lambda1"),
    ("test.rank", "test.ranks"),
    ("test.evall_freq", "test.eval_freq"),
    ("sampler.instances", "sampler.num_instances"),
])
def test_typo_suggests_the_key_meant(typo, meant):
    with pytest.raises(ConfigError) as e:
        load_config("", [typo, "1"])
    assert str(e.value) == f"unknown config key '{typo}' in the command line; did you mean '{meant}'?"


def test_no_suggestion_for_a_key_like_none():
    with pytest.raises(ConfigError) as e:
        load_config("", ["foo.qqq", "1"])
    assert str(e.value) == "unknown config key 'foo.qqq' in the command line"


def test_unknown_key_in_file_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  nmae: resnet50\n")
    expected = r"unknown config key 'model.nmae' in .*bad.yaml; did you mean 'model.name'\?"
    with pytest.raises(ConfigError, match=expected):
        load_config(str(path))


def test_unknown_group_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'optimizer.lr'"):
        load_config("", ["optimizer.lr", "1"])
    with pytest.raises(ConfigError, match="bad value in the command line"):
        load_config("", ["train.max_epoch", "'ten'"])
    with pytest.raises(ConfigError, match="has no value"):
        load_config("", ["train.lr"])
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "missing.yaml"))
    (tmp_path / "broken.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(tmp_path / "broken.yaml"))


def test_kwargs_helpers_carry_config_values():
    cfg = load_config("", ["train.lr", "0.5", "data.root", "/x", "test.eval_freq", "3", "train.batch_size", "16"])
    assert videodata_kwargs(cfg)["root"] == "/x"
    assert videodata_kwargs(cfg)["batch_size_train"] == 16
    assert videodata_kwargs(cfg)["seq_len"] == 6
    assert optimizer_kwargs(cfg)["lr"] == 0.5 and optimizer_kwargs(cfg)["optim"] == "adamw"
    assert lr_scheduler_kwargs(cfg)["warmup_epochs"] == 3
    run = engine_run_kwargs(cfg)
    assert run["eval_freq"] == 3 and run["max_epoch"] == 24 and run["ranks"] == [1, 5, 10, 20]


@pytest.mark.slow
def test_cli_unknown_key_exits_2_with_one_line(python_runner, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  save_dir: {tmp_path / 'run'}\n")
    result = python_runner(["projects/VLD/main.py", "--config-file", str(cfg), "train.lrr", "0.1"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: unknown config key 'train.lrr' in the command line; did you mean 'train.lr'?"]


def test_base_file_is_merged_first_and_checked(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.001\n  max_epoch: 5\nmodel:\n  name: clip_tap\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\ntrain:\n  max_epoch: 9\n")
    cfg = load_config(str(tmp_path / "child.yaml"))
    assert (cfg.train.lr, cfg.train.max_epoch, cfg.model.name) == (0.001, 9, "clip_tap")
    (tmp_path / "bad_base.yaml").write_text("test:\n  evall_freq: 1\n")
    (tmp_path / "child2.yaml").write_text("_BASE_: bad_base.yaml\n")
    with pytest.raises(ConfigError, match=r"'test.evall_freq' in .*bad_base.yaml; did you mean 'test.eval_freq'"):
        load_config(str(tmp_path / "child2.yaml"))
    (tmp_path / "loop.yaml").write_text("_BASE_: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(str(tmp_path / "loop.yaml"))


CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@pytest.mark.parametrize("path", sorted(
    os.path.join(d, f) for d, _, files in os.walk(CONFIGS) for f in files if f.endswith(".yaml")))
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.data.save_dir.startswith("log/")
    if "baselines" in path:  # a baseline changes the model and keeps the rest of its base config
        base = load_config(os.path.join(CONFIGS, "vld_bupt.yaml" if "bupt" in path else "vld_vcm.yaml"))
        assert cfg.model.name != "vld"
        assert cfg.train == base.train and cfg.sampler == base.sampler and cfg.test == base.test
        assert list(cfg.data.sources) == list(base.data.sources)


def test_model_defaults_live_in_the_model():
    """The config's model keys default to what create_model / VLD take by default (one set of defaults)."""
    import inspect

    from vld_plugin.config import model_kwargs
    from vld_plugin.models import VLD, create_model

    library = {name: p.default for fn in (create_model, VLD) for name, p in inspect.signature(fn).parameters.items()
               if p.default is not inspect.Parameter.empty}
    kwargs = model_kwargs(get_default_config())
    assert kwargs.pop("name") == "vld" and kwargs.pop("pretrained") == "openai"
    assert kwargs["image_size"] == (288, 144) and library["image_size"] == (288, 144)
    assert {k: library[k] for k in kwargs} == kwargs
    assert set(library) - set(kwargs) == {"pretrained", "prune_last_block"}  # set apart from the config


@pytest.mark.slow
def test_every_default_key_is_read_by_a_run(tmp_path, monkeypatch, mini_data):
    """A training run (with evaluation) reads every key of the default config after loading it: a key
    nothing reads would be a setting that silently does nothing."""
    from yacs.config import CfgNode

    from vld_plugin import launch
    from vld_plugin.config import _known_keys

    prefixes, read = {}, set()

    def recording(original):
        def access(node, name):
            value = original(node, name)
            prefix = prefixes.get(id(node))
            if prefix is not None:
                if isinstance(value, CfgNode):
                    prefixes[id(value)] = f"{prefix}{name}."
                else:
                    read.add(prefix + name)
            return value
        return access

    loaded = []

    def load_and_record(*args, **kwargs):
        cfg = load_config(*args, **kwargs)
        prefixes[id(cfg)] = ""
        loaded.append(cfg)
        return cfg

    monkeypatch.setattr(CfgNode, "__getattr__", recording(CfgNode.__getattr__))
    monkeypatch.setattr(CfgNode, "__getitem__", recording(dict.__getitem__))
    monkeypatch.setattr(launch, "load_config", load_and_record)
    # model.pretrained none: 2 blocks, not the 4 of the demo's miniature CLIP file
    opts = ["data.root", mini_data, "data.synthetic", "False", "data.height", "32", "data.width", "16",
            "data.workers", "0", "video.seq_len", "4", "vld.layers", "2", "vld.text_layers", "1",
            "model.pretrained", "none", "train.max_epoch", "1", "train.iters_per_epoch", "1", "train.batch_size",
            "8", "sampler.num_instances", "2", "test.batch_size", "64", "data.save_dir", str(tmp_path / "run")]
    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "vld_demo.yaml")
    assert launch.main(["--config-file", demo] + opts) == 0
    assert len(loaded) == 1 and (tmp_path / "run" / "results.json").is_file()
    assert sorted(set(_known_keys(get_default_config())) - read) == []
