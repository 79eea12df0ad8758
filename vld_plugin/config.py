"""The plugin's yacs config: torchreid's groups and key names plus a ``vld`` group.

Groups follow torchreid's ``scripts/default_config.py`` (``model``, ``data``, ``sampler``,
``video``, ``train``, ``sgd``, ``adam``, ``loss``, ``test``); the ``vld`` group holds the
method's own switches. Defaults reproduce the authors' recipe on HITSZ-VCM. ``load_config``
rejects unknown keys (suggesting the closest) and, through ``check_config``, values no run can use.
"""
import difflib
import math
import os

import yaml
from yacs.config import CfgNode as CN

from .errors import ConfigError


def get_default_config():
    """Return a fresh, mutable default config."""
    cfg = CN()

    cfg.model = CN()
    cfg.model.name = "vld"
    # 'openai' (downloaded by open_clip), a path to a local checkpoint, or 'none'
    cfg.model.pretrained = "openai"
    cfg.model.load_weights = ""  # a trained checkpoint to evaluate or fine-tune
    cfg.model.resume = ""  # a checkpoint to resume training from

    cfg.data = CN()
    cfg.data.root = "datasets"
    cfg.data.sources = ["hitsz_vcm"]
    cfg.data.targets = ["hitsz_vcm"]
    cfg.data.workers = 4
    cfg.data.split_id = 0
    cfg.data.height = 288
    cfg.data.width = 144
    cfg.data.combineall = False
    cfg.data.transforms = ["random_crop", "random_flip", "random_erase"]
    cfg.data.norm_mean = [0.485, 0.456, 0.406]  # ImageNet statistics, as the authors
    cfg.data.norm_std = [0.229, 0.224, 0.225]
    cfg.data.save_dir = "log/vld"
    cfg.data.val_ids = 0  # training identities held out for validation (best epoch on their mAP); 0 = none
    cfg.data.synthetic = False  # generate a synthetic copy under data.root when the dataset is missing

    # per-dataset options, one group per torchreid dataset name (each dataset gets only its own)
    cfg.hitsz_vcm = CN()
    cfg.hitsz_vcm.min_seq_len = 12  # tracklets shorter than this are dropped (the authors' protocol)
    cfg.bupt_campus = CN()
    cfg.bupt_campus.auxiliary = False  # add the auxiliary training set
    cfg.bupt_campus.auxiliary_ir = "FakeIR"  # the auxiliary set's infrared side: FakeIR (generated) or IR
    cfg.bupt_campus.trimmed_test = False  # the official sampler's trimmed test sets

    cfg.sampler = CN()
    cfg.sampler.train_sampler = "ModalityIdentitySampler"
    cfg.sampler.num_instances = 4  # visible+infrared pairs per identity in a batch
    cfg.sampler.num_cams = 2  # CameraModalitySampler (BUPTCampus): cameras per identity

    cfg.video = CN()
    cfg.video.seq_len = 6
    cfg.video.sample_method = "restricted_random"  # train; torchreid's evenly/random/all too
    cfg.video.test_sample_method = ""  # "" = each target's own (HITSZ-VCM first_of_chunk, BUPTCampus linspace)
    cfg.video.consistent_geometry = False  # one crop/flip per tracklet instead of per frame

    cfg.train = CN()
    cfg.train.optim = "adamw"
    cfg.train.lr = 2.5e-5
    cfg.train.weight_decay = 1e-4
    cfg.train.max_epoch = 24
    cfg.train.start_epoch = 0
    cfg.train.iters_per_epoch = 200
    cfg.train.batch_size = 32  # tracklets (visible + infrared) per step
    cfg.train.fixbase_epoch = 0
    cfg.train.open_layers = ["classifier"]
    cfg.train.lr_mult = 25.0  # names containing bias, classifier (BNNeck heads too) or prompt_learner
    cfg.train.lr_scheduler = "warmup_cosine"
    cfg.train.warmup_epochs = 3
    cfg.train.warmup_factor = 0.01  # warm-up start = lr x this, the same absolute value for every group
    cfg.train.min_lr_factor = 0.01  # cosine floor = lr x this, likewise
    cfg.train.per_group_lr_floor = False  # True: warm-up start and floor scaled by each group's own lr
    cfg.train.stepsize = [20]
    cfg.train.gamma = 0.1
    cfg.train.amp = "auto"  # auto (bf16 if supported, else fp16 + scaler), bf16, fp16 (the released code's), off
    cfg.train.deterministic = True  # on GPU: deterministic cuDNN (benchmark off), as the released code
    cfg.train.grad_clip = 0.0  # max gradient norm; 0 = off
    cfg.train.compile = False  # torch.compile the model for training (evaluation runs it eagerly)
    cfg.train.print_freq = 20
    cfg.train.seed = 1

    cfg.sgd = CN()
    cfg.sgd.momentum = 0.9
    cfg.sgd.dampening = 0.0
    cfg.sgd.nesterov = False

    cfg.adam = CN()
    cfg.adam.beta1 = 0.9
    cfg.adam.beta2 = 0.999

    cfg.loss = CN()
    cfg.loss.softmax = CN()
    cfg.loss.softmax.label_smooth = False
    cfg.loss.wrt = CN()
    cfg.loss.wrt.exact_softmax = False  # False: the released code's weights (see losses.WeightedRegularizedTriplet)
    cfg.loss.vld = CN()
    cfg.loss.vld.lambda1 = 0.08  # v2t (text logits) cross-entropy
    cfg.loss.vld.lambda2 = 0.4  # STA cross-entropy
    cfg.loss.vld.lambda3 = 1.0  # STA weighted regularised triplet

    cfg.test = CN()
    cfg.test.batch_size = 64
    cfg.test.dist_metric = "inner_product"  # inner_product (the authors'), euclidean, cosine
    cfg.test.normalize_feature = False
    cfg.test.ranks = [1, 5, 10, 20]
    cfg.test.evaluate = False
    cfg.test.eval_freq = 2
    cfg.test.start_eval = 0
    cfg.test.rerank = False
    cfg.test.visrank = False
    cfg.test.visrank_topk = 10

    cfg.vld = CN()
    cfg.vld.clip_name = "ViT-B-16-quickgelu"
    # 0 = take from clip_name; set smaller for a tiny model of the same architecture
    cfg.vld.width = 0
    cfg.vld.layers = 0
    cfg.vld.heads = 0
    cfg.vld.patch_size = 0
    cfg.vld.embed_dim = 0
    cfg.vld.text_width = 0
    cfg.vld.text_layers = 0
    cfg.vld.text_heads = 0
    cfg.vld.imlp = True
    cfg.vld.sth = True
    cfg.vld.sta = True
    cfg.vld.hub_start_block = 9
    cfg.vld.prompt_template = 4
    cfg.vld.num_ctx = 4
    cfg.vld.temporal_fusion = "none"  # none, conv1d, transformer, transformer_cls
    cfg.vld.grad_checkpointing = False
    return cfg


def _known_keys(node, prefix=""):
    """The dotted names of every value (not group) under ``node``."""
    keys = []
    for name, value in node.items():
        full = f"{prefix}{name}"
        keys.extend(_known_keys(value, full + ".") if isinstance(value, CN) else [full])
    return keys


def _get(cfg, full_key):
    node = cfg
    for part in full_key.split("."):
        node = node[part]
    return node


def _likeness(typed, known):
    """(rank, similarity) of a mistyped key component to a known one: rank 3 the same up to case,
    '-', '_' and a plural s; 2 one holds the other or the initials match ('learning_rate' ~ 'lr');
    1 similar."""
    a, b = (s.lower().replace("-", "").replace("_", "").removesuffix("s") for s in (typed, known))
    ratio = difflib.SequenceMatcher(None, a, b).ratio()
    initials = ["".join(w[0] for w in s.lower().replace("-", "_").split("_") if w) for s in (typed, known)]
    short, long = sorted((a, b), key=len)
    if a == b:
        return 3, ratio
    if (len(short) >= 3 and short in long) or initials[0] == b or initials[1] == a:
        return 2, ratio
    return int(ratio >= 0.6), ratio


def closest_key(cfg, full_key):
    """The known key ``full_key`` most likely means, or None: its last component compared with
    those of its group (or of the closest group name) first, then with all keys."""
    keys, groups = _known_keys(cfg), list(cfg)
    group, last = full_key.split(".")[0], full_key.split(".")[-1]
    if group not in groups:
        group = next(iter(difflib.get_close_matches(group, groups, n=1, cutoff=0.6)), None)
    for pool in ([k for k in keys if k.split(".")[0] == group], keys):
        score, best = max(((_likeness(last, k.split(".")[-1]), k) for k in pool), default=((0, 0), None))
        if score[0]:
            return best
    return None


def _check_key(cfg, full_key, where, hint=""):
    node = cfg
    for part in full_key.split("."):
        if not isinstance(node, CN) or part not in node:
            close = closest_key(cfg, full_key)
            hint = hint or (f"; did you mean '{close}'?" if close else "")
            raise ConfigError(f"unknown config key '{full_key}' in {where}{hint}")
        node = node[part]
    if isinstance(node, CN):
        keys = ", ".join(f"{full_key}.{k}" for k in node)
        raise ConfigError(f"'{full_key}' in {where} is a group of keys ({keys}), not a key{hint}")


def _list_syntax(values):
    """How a list is written as one command-line value: ['a','b'] / [1,5]."""
    return "[" + ",".join(repr(v) for v in values) + "]"


def _several_values_hint(cfg, opts, i):
    """For a stray word at ``opts[i]`` right after a list key's value: how to give both values."""
    key = opts[i - 2] if i >= 2 else None
    if key in _known_keys(cfg) and isinstance(_get(cfg, key), (list, tuple)):
        return f"; several values of {key} go in one argument: {key} \"{_list_syntax(opts[i - 1:i + 1])}\""
    return ""


TYPE_NAMES = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}
ITEM_NAMES = {int: "integers", float: "numbers", str: "strings"}


def _coerce(full_key, current, raw, where):
    """``raw`` made fit the type of ``current`` where the intent is clear: a single value of a
    list key becomes a one-element list, an int a float, 'true'/'false' a bool; ConfigError
    when the type is wrong."""
    value = CN._decode_cfg_value(raw)  # what yacs makes of it
    if isinstance(current, (list, tuple)):
        if isinstance(value, str) and value.lstrip().startswith("["):  # [a, b]: a list in YAML's syntax
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError:
                pass
            if not isinstance(value, list):
                raise ConfigError(f"bad value in {where}: {full_key} {raw!r} is not a list; "
                                  f"write it as {full_key} \"{_list_syntax(current)}\"")
        return value if isinstance(value, (list, tuple)) else [value]
    if isinstance(current, float) and type(value) is int:
        return float(value)
    if isinstance(current, bool) and str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    if type(value) is not type(current):
        raise ConfigError(f"bad value in {where}: {full_key} must be {TYPE_NAMES[type(current)]} "
                          f"(default {current!r}), got {value!r}")
    return raw


def _coerce_tree(cfg, tree, where, prefix=""):
    for name, value in tree.items():
        if value is None and isinstance(cfg[name], CN):  # a group whose keys are all commented out
            tree[name] = {}
        elif isinstance(value, dict) and isinstance(cfg[name], CN):
            _coerce_tree(cfg[name], value, where, f"{prefix}{name}.")
        else:
            tree[name] = _coerce(prefix + name, cfg[name], value, where)


def _flatten(tree, prefix=""):
    for name, value in tree.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _flatten(value, full + ".")
        elif value is not None:  # None: a group whose keys are all commented out (or a value left empty)
            yield full


def _merge_file(cfg, path, chain=()):
    """Merge YAML ``path`` (after its ``_BASE_`` file, a path relative to it) into ``cfg``."""
    if path in chain:
        raise ConfigError(f"config file {path} includes itself through _BASE_")
    try:
        with open(path) as f:
            tree = yaml.safe_load(f) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of groups to keys")
    base = tree.pop("_BASE_", None)
    if base:
        _merge_file(cfg, os.path.join(os.path.dirname(path), base), chain + (path,))
    for key in _flatten(tree):
        _check_key(cfg, key, path)
    _coerce_tree(cfg, tree, path)
    _merge(cfg, lambda: cfg.merge_from_other_cfg(CN(tree)), path)


def load_config(config_file="", opts=(), cfg=None):
    """Defaults, then ``config_file`` (YAML, may name a ``_BASE_`` file), then ``opts``
    (``[KEY, VALUE, ...]``); returned frozen.

    A list key takes a single value as a one-element list. Raises ConfigError with one line
    naming a wrong key and the closest valid one, or a wrong value (see :func:`check_config`).
    """
    cfg = cfg if cfg is not None else get_default_config()
    if config_file:
        _merge_file(cfg, os.path.abspath(config_file))
    opts = list(opts)
    for i in range(0, len(opts) - 1, 2):
        _check_key(cfg, opts[i], "the command line", _several_values_hint(cfg, opts, i))
    if len(opts) % 2:
        hint = _several_values_hint(cfg, opts, len(opts) - 1)
        raise ConfigError(f"overrides must come as KEY VALUE pairs; '{opts[-1]}' has no value{hint}")
    for i in range(0, len(opts), 2):
        opts[i + 1] = _coerce(opts[i], _get(cfg, opts[i]), opts[i + 1], "the command line")
    _merge(cfg, lambda: cfg.merge_from_list(opts), "the command line")
    check_config(cfg)
    cfg.freeze()
    return cfg


def _merge(cfg, merge, where):
    try:
        merge()
    except (ValueError, KeyError, AssertionError) as e:
        raise ConfigError(f"bad value in {where}: {e}") from None


# model.pretrained values that give a torchreid model its ImageNet weights ('openai', the
# default, too, so that changing model.name alone works)
TORCHREID_WEIGHTS = ("imagenet", "openai")
OPTIMIZERS = ("adamw", "adam", "sgd")  # optim.build_optimizer
LR_SCHEDULERS = ("warmup_cosine", "single_step", "multi_step", "cosine")  # optim.build_lr_scheduler
TRANSFORMS = ("random_crop", "random_flip", "random_erase")  # data.datamanager

RULES = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "in [0, 2**32 - 1]": lambda v: 0 <= v < 2 ** 32,
    "finite": lambda v: True,  # every number is checked to be finite
}
# the range of every number (of every element for a list) but vld.prompt_template (see value_choices);
# test.eval_freq <= 0 means "after the last epoch only"
RANGES = {
    "data.workers": ">= 0", "data.split_id": ">= 0", "data.height": "> 0", "data.width": "> 0",
    "data.norm_mean": "finite", "data.norm_std": "> 0", "hitsz_vcm.min_seq_len": ">= 0",
    "data.val_ids": ">= 0",
    "sampler.num_instances": "> 0", "sampler.num_cams": "> 0", "video.seq_len": "> 0",
    "train.lr": "> 0", "train.weight_decay": ">= 0", "train.max_epoch": "> 0", "train.start_epoch": ">= 0",
    "train.iters_per_epoch": "> 0", "train.batch_size": "> 0", "train.fixbase_epoch": ">= 0",
    "train.lr_mult": "> 0", "train.warmup_epochs": ">= 0", "train.warmup_factor": "in [0, 1]",
    "train.min_lr_factor": "in [0, 1]", "train.stepsize": "> 0", "train.gamma": "> 0",
    "train.grad_clip": ">= 0", "train.print_freq": "> 0", "train.seed": "in [0, 2**32 - 1]",
    "sgd.momentum": "in [0, 1]", "sgd.dampening": "in [0, 1]", "adam.beta1": "in [0, 1)", "adam.beta2": "in [0, 1)",
    "loss.vld.lambda1": ">= 0", "loss.vld.lambda2": ">= 0", "loss.vld.lambda3": ">= 0",
    "test.batch_size": "> 0", "test.ranks": "> 0", "test.eval_freq": "finite", "test.start_eval": ">= 0",
    "test.visrank_topk": "> 0",
    "vld.width": ">= 0", "vld.layers": ">= 0", "vld.heads": ">= 0", "vld.patch_size": ">= 0",
    "vld.embed_dim": ">= 0", "vld.text_width": ">= 0", "vld.text_layers": ">= 0", "vld.text_heads": ">= 0",
    "vld.hub_start_block": ">= 0", "vld.num_ctx": "> 0",
}
LENGTHS = {"data.norm_mean": 3, "data.norm_std": 3}  # RGB
NOT_EMPTY = ("data.sources", "data.save_dir", "test.ranks", "train.stepsize")


def value_choices():
    """Allowed values of the enumerated keys, taken from the modules that define them."""
    import open_clip

    from . import compat
    from .data.base import VLDVideoDataset
    from .data.bupt_campus import AUXILIARY_IR
    from .data.frame_sampling import METHODS
    from .data.identity_samplers import SAMPLERS
    from .engine import AMP_MODES
    from .evaluation.distance import METRICS
    from .models.fusion import FUSIONS
    from .models.prompt import TEMPLATES

    datasets = [name for name, cls in compat.video_dataset_factory().items()
                if isinstance(cls, type) and issubclass(cls, VLDVideoDataset)]  # what VLDDataManager takes
    return {
        "data.sources": datasets, "data.targets": datasets, "bupt_campus.auxiliary_ir": AUXILIARY_IR,
        "data.transforms": TRANSFORMS, "sampler.train_sampler": SAMPLERS, "video.sample_method": METHODS,
        "video.test_sample_method": [""] + list(METHODS),
        "train.optim": OPTIMIZERS, "train.lr_scheduler": LR_SCHEDULERS, "train.amp": AMP_MODES,
        "test.dist_metric": METRICS, "vld.clip_name": open_clip.list_models(), "vld.prompt_template": TEMPLATES,
        "vld.temporal_fusion": FUSIONS,
    }


def _is_number(v):
    return type(v) in (int, float) and math.isfinite(v)


def _choice_error(key, value, allowed, is_list):
    names = sorted(map(str, allowed))
    if len(names) > 10:
        close = difflib.get_close_matches(str(value), names, n=3, cutoff=0.3)
        what = f"closest: {', '.join(close)}" if close else f"choose one of {len(names)} names"
    else:
        what = "choose from " + ", ".join(repr(n) for n in allowed)
    several = f"; several go as {key} \"{_list_syntax(names[:2])}\"" if is_list else ""
    return ConfigError(f"{key} {value!r} is unknown; {what}{several}")


def check_config(cfg):
    """Raise ConfigError, one line naming the key, its value and what is allowed, for a value no
    run can use: types of list items, ranges of numbers, enumerations, model.pretrained."""
    from .models.build import check_model_name

    check_model_name(cfg.model.name)
    defaults = get_default_config()
    for key in _known_keys(defaults):
        value, default = _get(cfg, key), _get(defaults, key)
        if isinstance(default, (list, tuple)) and default:
            kind = type(default[0])
            if not all(type(v) is kind or (kind is float and type(v) is int) for v in value):
                raise ConfigError(f"{key} must be a list of {ITEM_NAMES[kind]}, got {value!r}; "
                                  f"write it as {key} \"{_list_syntax(default)}\"")
    for key in NOT_EMPTY:
        if not _get(cfg, key):
            raise ConfigError(f"{key} must not be empty, got {_get(cfg, key)!r} (default {_get(defaults, key)!r})")
    for key, size in LENGTHS.items():
        if len(_get(cfg, key)) != size:
            raise ConfigError(f"{key} must have {size} values, got {list(_get(cfg, key))!r}")
    for key, rule in RANGES.items():
        value = _get(cfg, key)
        if not all(_is_number(v) and RULES[rule](v) for v in (value if isinstance(value, (list, tuple)) else [value])):
            raise ConfigError(f"{key} must be {rule}, got {value!r} (default {_get(defaults, key)!r})")
    for key, allowed in value_choices().items():
        value = _get(cfg, key)
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if v not in allowed:
                raise _choice_error(key, v, allowed, isinstance(value, (list, tuple)))
    group = "num_instances" if cfg.sampler.train_sampler == "ModalityIdentitySampler" else "num_cams"
    if cfg.train.batch_size % (2 * cfg.sampler[group]):
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} must be a multiple of 2 x sampler.{group} "
                          f"({cfg.sampler.train_sampler}: {2 * cfg.sampler[group]} tracklets per identity)")
    if not cfg.test.evaluate and cfg.train.start_epoch >= cfg.train.max_epoch:
        raise ConfigError(f"train.start_epoch {cfg.train.start_epoch} leaves nothing to train: it must be below "
                          f"train.max_epoch {cfg.train.max_epoch} (to continue a run, use --resume)")
    _check_pretrained(cfg.model.name, cfg.model.pretrained)


def _check_pretrained(name, value):
    """A VLD model takes 'openai', none or an existing file; a torchreid model imagenet or none.
    (Whether a torchreid model's ImageNet weights are at hand is checked when it is built.)"""
    from .models.build import BUILDERS
    from .models.clip_loader import NO_WEIGHTS

    text = value.strip()
    if text.lower() in NO_WEIGHTS:
        return
    if name not in BUILDERS and text.lower() not in TORCHREID_WEIGHTS:
        raise ConfigError(f"model.pretrained '{value}' does not fit torchreid model {name}: use imagenet "
                          f"(its ImageNet weights) or none; load a trained checkpoint with model.load_weights")
    if name in BUILDERS and text != "openai" and not os.path.isfile(text):
        where, fix = "", "give the path of OpenAI's ViT-B-16.pt or set model.pretrained none"
        if not os.path.isabs(text):
            where = f", read from the current folder {os.getcwd()}"
            in_repository = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), text)
            if os.path.isfile(in_repository):  # the demo's repository-relative path, run from elsewhere
                fix = f"run from the repository root or set model.pretrained {in_repository}"
        raise ConfigError(f"model.pretrained '{value}' is not 'openai', 'none' or an existing file (CLIP weights "
                          f"of {name}{where}); {fix}")


def videodata_kwargs(cfg):
    """Keyword arguments of the plugin's data manager (torchreid's VideoDataManager's, plus ours)."""
    return dict(
        root=cfg.data.root,
        sources=list(cfg.data.sources),
        targets=list(cfg.data.targets),
        height=cfg.data.height,
        width=cfg.data.width,
        transforms=list(cfg.data.transforms),
        norm_mean=list(cfg.data.norm_mean),
        norm_std=list(cfg.data.norm_std),
        split_id=cfg.data.split_id,
        combineall=cfg.data.combineall,
        batch_size_train=cfg.train.batch_size,
        batch_size_test=cfg.test.batch_size,
        workers=cfg.data.workers,
        num_instances=cfg.sampler.num_instances,
        train_sampler=cfg.sampler.train_sampler,
        seq_len=cfg.video.seq_len,
        sample_method=cfg.video.sample_method,
        test_sample_method=cfg.video.test_sample_method,
        consistent_geometry=cfg.video.consistent_geometry,
        num_cams=cfg.sampler.num_cams,
        iters_per_epoch=cfg.train.iters_per_epoch,
        seed=cfg.train.seed,
        val_ids=cfg.data.val_ids,
        dataset_options=dict(
            hitsz_vcm=dict(min_seq_len=cfg.hitsz_vcm.min_seq_len),
            bupt_campus=dict(auxiliary=cfg.bupt_campus.auxiliary, auxiliary_ir=cfg.bupt_campus.auxiliary_ir,
                             trimmed_test=cfg.bupt_campus.trimmed_test),
        ),
    )


def model_kwargs(cfg):
    """Keyword arguments of ``models.build_model``: the name, the weights and, for a VLD model, its
    architecture (``vld`` group, input size, frames per tracklet)."""
    from .models.build import BUILDERS

    kwargs = dict(name=cfg.model.name, pretrained=cfg.model.pretrained)
    if cfg.model.name in BUILDERS:
        v = cfg.vld
        kwargs.update(
            clip_name=v.clip_name, image_size=(cfg.data.height, cfg.data.width), seq_len=cfg.video.seq_len,
            width=v.width, layers=v.layers, heads=v.heads, patch_size=v.patch_size, embed_dim=v.embed_dim,
            text_width=v.text_width, text_layers=v.text_layers, text_heads=v.text_heads,
            imlp=v.imlp, sth=v.sth, sta=v.sta, hub_start_block=v.hub_start_block, prompt_template=v.prompt_template,
            num_ctx=v.num_ctx, temporal_fusion=v.temporal_fusion, grad_checkpointing=v.grad_checkpointing,
        )
    return kwargs


def loss_kwargs(cfg):
    """Keyword arguments of ``losses.VLDLoss``."""
    return dict(lambda1=cfg.loss.vld.lambda1, lambda2=cfg.loss.vld.lambda2, lambda3=cfg.loss.vld.lambda3,
                label_smooth=cfg.loss.softmax.label_smooth, wrt_exact_softmax=cfg.loss.wrt.exact_softmax)


def optimizer_kwargs(cfg):
    """Keyword arguments of ``optim.build_optimizer`` (named as torchreid's, plus ``lr_mult``)."""
    return dict(
        optim=cfg.train.optim,
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        lr_mult=cfg.train.lr_mult,
        momentum=cfg.sgd.momentum,
        sgd_dampening=cfg.sgd.dampening,
        sgd_nesterov=cfg.sgd.nesterov,
        adam_beta1=cfg.adam.beta1,
        adam_beta2=cfg.adam.beta2,
    )


def lr_scheduler_kwargs(cfg):
    """Keyword arguments of ``optim.build_lr_scheduler``."""
    return dict(
        lr_scheduler=cfg.train.lr_scheduler,
        stepsize=list(cfg.train.stepsize),
        gamma=cfg.train.gamma,
        max_epoch=cfg.train.max_epoch,
        warmup_epochs=cfg.train.warmup_epochs,
        warmup_factor=cfg.train.warmup_factor,
        min_lr_factor=cfg.train.min_lr_factor,
        lr=cfg.train.lr,
        per_group_floor=cfg.train.per_group_lr_floor,
    )


def engine_kwargs(cfg):
    """Keyword arguments of ``PairedModalityEngine`` besides the data manager, model, optimizer,
    scheduler and loss: mixed precision, clipping and the settings a checkpoint records."""
    return dict(amp=cfg.train.amp, grad_clip=cfg.train.grad_clip, compile=cfg.train.compile,
                settings=resume_settings(cfg))


def engine_run_kwargs(cfg):
    """Keyword arguments of ``PairedModalityEngine.run`` (torchreid's ``Engine.run``)."""
    return dict(
        save_dir=cfg.data.save_dir,
        max_epoch=cfg.train.max_epoch,
        start_epoch=cfg.train.start_epoch,
        fixbase_epoch=cfg.train.fixbase_epoch,
        open_layers=list(cfg.train.open_layers),
        start_eval=cfg.test.start_eval,
        eval_freq=cfg.test.eval_freq,
        test_only=cfg.test.evaluate,
        print_freq=cfg.train.print_freq,
        dist_metric=cfg.test.dist_metric,
        normalize_feature=cfg.test.normalize_feature,
        visrank=cfg.test.visrank,
        visrank_topk=cfg.test.visrank_topk,
        ranks=list(cfg.test.ranks),
        rerank=cfg.test.rerank,
    )


# what a resumed run may change (the optimizer's hyper-parameters and the schedule are rebuilt from
# them) and what it may not (the optimizer's kind, the model, the loss and the data stream)
RESUME_APPLIED = ("train.lr", "train.max_epoch", "train.weight_decay", "train.lr_mult", "train.warmup_epochs",
                  "train.warmup_factor", "train.min_lr_factor", "train.per_group_lr_floor", "train.stepsize",
                  "train.gamma", "train.grad_clip", "sgd.momentum", "adam.beta1", "adam.beta2")
RESUME_FIXED = ("model.name", "train.optim", "train.lr_scheduler", "train.batch_size", "train.iters_per_epoch",
                "sampler.train_sampler", "sampler.num_instances", "sampler.num_cams", "video.seq_len",
                "video.sample_method", "data.sources", "data.height", "data.width", "data.val_ids", "train.seed")


def resume_settings(cfg):
    """``{"fixed": {key: value}, "applied": {key: value}}``: the settings a checkpoint records for ``--resume``."""
    def value(key):
        v = _get(cfg, key)
        return list(v) if isinstance(v, (list, tuple)) else v

    return {"fixed": {k: value(k) for k in RESUME_FIXED}, "applied": {k: value(k) for k in RESUME_APPLIED}}
