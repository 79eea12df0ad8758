"""The plugin's yacs config: torchreid's groups and key names plus a ``vld`` group.

Groups follow torchreid's ``scripts/default_config.py`` (``model``, ``data``, ``sampler``,
``video``, ``train``, ``sgd``, ``adam``, ``loss``, ``test``); the ``vld`` group holds the
method's own switches. Defaults reproduce the authors' recipe on HITSZ-VCM.
"""
import difflib
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
    cfg.data.type = "video"
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
    cfg.data.min_seq_len = 12  # HITSZ-VCM: tracklets shorter than this are dropped
    cfg.data.bupt_auxiliary = False  # BUPTCampus: add the auxiliary (FakeIR) training set
    cfg.data.bupt_trimmed_test = False  # BUPTCampus: the official sampler's trimmed test sets
    cfg.data.val_ids = 0  # training identities held out for validation (best epoch on their mAP); 0 = none
    cfg.data.synthetic = False  # generate a synthetic copy under data.root when the dataset is missing

    cfg.sampler = CN()
    cfg.sampler.train_sampler = "ModalityIdentitySampler"
    cfg.sampler.num_instances = 4  # visible+infrared pairs per identity in a batch
    cfg.sampler.num_cams = 2  # CameraModalitySampler (BUPTCampus): cameras per identity

    cfg.video = CN()
    cfg.video.seq_len = 6
    cfg.video.sample_method = "restricted_random"  # train; torchreid's evenly/random/all too
    cfg.video.test_sample_method = ""  # "" = each target's own (HITSZ-VCM first_of_chunk, BUPTCampus linspace)
    cfg.video.pooling_method = "avg"
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
    cfg.loss.name = "vld"
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
    keys = []
    for name, value in node.items():
        full = f"{prefix}{name}"
        keys.append(full)
        if isinstance(value, CN):
            keys.extend(_known_keys(value, full + "."))
    return keys


def _check_key(cfg, full_key, where):
    node = cfg
    for part in full_key.split("."):
        if not isinstance(node, CN) or part not in node:
            close = difflib.get_close_matches(full_key, _known_keys(cfg), n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{full_key}' in {where}{hint}")
        node = node[part]


def _flatten(tree, prefix=""):
    for name, value in tree.items():
        full = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _flatten(value, full + ".")
        else:
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
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping of groups to keys")
    base = tree.pop("_BASE_", None)
    if base:
        _merge_file(cfg, os.path.join(os.path.dirname(path), base), chain + (path,))
    for key in _flatten(tree):
        _check_key(cfg, key, path)
    _merge(cfg, lambda: cfg.merge_from_other_cfg(CN(tree)), path)


def load_config(config_file="", opts=(), cfg=None):
    """Defaults, then ``config_file`` (YAML, may name a ``_BASE_`` file), then ``opts``
    (``[KEY, VALUE, ...]``); returned frozen.

    Raises ConfigError with one line naming a wrong key and the closest valid one.
    """
    cfg = cfg if cfg is not None else get_default_config()
    if config_file:
        _merge_file(cfg, os.path.abspath(config_file))
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"overrides must come as KEY VALUE pairs; '{opts[-1]}' has no value")
    for key in opts[::2]:
        _check_key(cfg, key, "the command line")
    _merge(cfg, lambda: cfg.merge_from_list(opts), "the command line")
    cfg.freeze()
    return cfg


def _merge(cfg, merge, where):
    try:
        merge()
    except (ValueError, KeyError, AssertionError) as e:
        raise ConfigError(f"bad value in {where}: {e}") from None


def videodata_kwargs(cfg):
    """Keyword arguments for the plugin's data manager (torchreid's VideoDataManager's, plus ours)."""
    return dict(
        root=cfg.data.root,
        sources=list(cfg.data.sources),
        targets=list(cfg.data.targets),
        height=cfg.data.height,
        width=cfg.data.width,
        transforms=list(cfg.data.transforms),
        norm_mean=list(cfg.data.norm_mean),
        norm_std=list(cfg.data.norm_std),
        use_gpu=None,
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
        min_seq_len=cfg.data.min_seq_len,
        bupt_auxiliary=cfg.data.bupt_auxiliary,
        bupt_trimmed_test=cfg.data.bupt_trimmed_test,
        val_ids=cfg.data.val_ids,
    )


def optimizer_kwargs(cfg):
    """Keyword arguments for an optimizer builder, named as torchreid's ``build_optimizer``'s."""
    return dict(
        optim=cfg.train.optim,
        lr=cfg.train.lr,
        weight_decay=cfg.train.weight_decay,
        momentum=cfg.sgd.momentum,
        sgd_dampening=cfg.sgd.dampening,
        sgd_nesterov=cfg.sgd.nesterov,
        adam_beta1=cfg.adam.beta1,
        adam_beta2=cfg.adam.beta2,
    )


def lr_scheduler_kwargs(cfg):
    """Keyword arguments for a learning-rate scheduler builder."""
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


def engine_run_kwargs(cfg):
    """Keyword arguments of torchreid's ``Engine.run``."""
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
        use_metric_cuhk03=False,
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
        node = cfg
        for part in key.split("."):
            node = node[part]
        return list(node) if isinstance(node, (list, tuple)) else node

    return {"fixed": {k: value(k) for k in RESUME_FIXED}, "applied": {k: value(k) for k in RESUME_APPLIED}}
