"""The authors' released VLD checkpoints: download (gdown) and parameter-name conversion.

Their model's names -> ours (prefix rules, first match wins)::

    image_encoder.*              -> visual.*             (CLIP visual encoder, OpenAI naming)
    prompt_embedding             -> hub                  (STH, T x T x 768)
    attn.*                       -> sta.*                (STA multi-head attention)
    classifier.BN.* / .classifier.*      -> classifier.cls.bnneck.* / .classifier.*
    classifier_proj.BN.* / ...           -> classifier.proj.bnneck.* / ...
    classifier_STP.BN.* / ...            -> classifier.sta.bnneck.* / ...
    prompt_learner.*, text_encoder.*     -> unchanged

Unused in their forward and dropped (``UNUSED_PREFIXES``): ``ln_post2.*``, ``logit_scale``,
``classifier_proj_STP.*``.
"""
import os

from ..errors import CheckpointError, ConfigError, PretrainedWeightsError

# (their prefix, our prefix); exact names are listed with no trailing dot
NAME_MAP = (
    ("image_encoder.", "visual."),
    ("prompt_embedding", "hub"),
    ("attn.", "sta."),
    ("classifier.BN.", "classifier.cls.bnneck."),
    ("classifier.classifier.", "classifier.cls.classifier."),
    ("classifier_proj.BN.", "classifier.proj.bnneck."),
    ("classifier_proj.classifier.", "classifier.proj.classifier."),
    ("classifier_STP.BN.", "classifier.sta.bnneck."),
    ("classifier_STP.classifier.", "classifier.sta.classifier."),
    ("prompt_learner.", "prompt_learner."),
    ("text_encoder.", "text_encoder."),
)
UNUSED_PREFIXES = ("ln_post2.", "logit_scale", "classifier_proj_STP.")

# Google Drive file ids of the released checkpoints
OFFICIAL_CHECKPOINTS = {
    "hitsz_vcm": "1x9a4_RasztWPfcA2SH_KvSpSM0kmZRcf",
    "bupt": "1BIJqfo2GCbkrEuNv-PhjU8eyxBnDeD4T",
}


def _rename(name, pairs):
    for src, dst in pairs:
        if name == src or (src.endswith(".") and name.startswith(src)):
            return dst + name[len(src):]
    return None


def convert_official_state_dict(state_dict):
    """Rename an official VLD ``state_dict`` to this plugin's ``VLD`` names (unused keys dropped)."""
    out, unknown = {}, []
    for name, value in state_dict.items():
        name = name[len("module."):] if name.startswith("module.") else name
        if name.startswith(UNUSED_PREFIXES):
            continue
        new = _rename(name, NAME_MAP)
        if new is None:
            unknown.append(name)
        else:
            out[new] = value
    if unknown:
        raise CheckpointError(f"{len(unknown)} parameter names are not from an official VLD checkpoint "
                         f"(e.g. {unknown[:3]}); is it one of the authors' released files?")
    return out


def to_official_state_dict(state_dict):
    """The inverse renaming: our ``VLD.state_dict()`` in the authors' parameter names."""
    inverse = [(dst, src) for src, dst in NAME_MAP]
    out = {}
    for name, value in state_dict.items():
        new = _rename(name, inverse)
        if new is None:
            raise CheckpointError(f"parameter '{name}' has no name in the official VLD model")
        out[new] = value
    return out


def checkpoint_dir():
    """Where torchreid caches downloaded weights: ``$TORCH_HOME/checkpoints`` (default
    ``~/.cache/torch/checkpoints``)."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return os.path.join(os.path.expanduser(os.getenv("TORCH_HOME", default)), "checkpoints")


def download_official_checkpoint(dataset, cache_dir=None):
    """Fetch the authors' trained VLD for ``dataset`` ('hitsz_vcm' or 'bupt') once; return its path."""
    if dataset not in OFFICIAL_CHECKPOINTS:
        raise ConfigError(f"no official VLD checkpoint for '{dataset}'; choose one of "
                         f"{sorted(OFFICIAL_CHECKPOINTS)}")
    file_id = OFFICIAL_CHECKPOINTS[dataset]
    cache_dir = cache_dir or checkpoint_dir()
    path = os.path.join(cache_dir, f"vld_official_{dataset}.pth")
    if os.path.isfile(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    import gdown

    url = f"https://drive.google.com/uc?id={file_id}"
    try:
        result = gdown.download(id=file_id, output=path + ".part", quiet=False)
    except Exception as e:  # gdown raises assorted network and Drive-quota errors
        result, reason = None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    else:
        reason = "gdown returned nothing"
    if not result or not os.path.isfile(path + ".part"):
        raise PretrainedWeightsError(f"cannot download the official VLD checkpoint for {dataset} ({reason}); "
                           f"fetch {url} in a browser and save it as {path}")
    os.replace(path + ".part", path)
    return path

