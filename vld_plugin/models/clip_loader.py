"""Creation of the open_clip CLIP model VLD is built from, and loading of its pretrained weights.

The architecture comes from an open_clip model name (``ViT-B-16-quickgelu`` by default), with
optional overrides that give a tiny model of the same architecture for tests and demos. Weights:
``'openai'`` (downloaded and cached by open_clip), a local file (OpenAI's TorchScript
``ViT-B-16.pt``, an open_clip checkpoint, safetensors) or ``'none'`` (random init). The visual
positional embedding is resized to the input grid like the authors' code: the CLS row is kept
and the square grid is resized with bilinear interpolation.
"""
import copy
import os
import warnings

import open_clip
import torch
import torch.nn.functional as F

from ..errors import ConfigError, PretrainedWeightsError

# the size keys of the plugin's ``vld`` config group -> (open_clip config tower, key)
ARCH_KEYS = {
    "width": ("vision_cfg", "width"),
    "layers": ("vision_cfg", "layers"),
    "patch_size": ("vision_cfg", "patch_size"),
    "text_width": ("text_cfg", "width"),
    "text_layers": ("text_cfg", "layers"),
    "text_heads": ("text_cfg", "heads"),
}


def clip_config(clip_name, image_size, width=0, layers=0, heads=0, patch_size=0, embed_dim=0,
                text_width=0, text_layers=0, text_heads=0):
    """open_clip's config of ``clip_name`` at ``image_size`` (H, W); non-zero sizes override it."""
    base = open_clip.get_model_config(clip_name)
    if base is None:
        raise ConfigError(f"vld.clip_name '{clip_name}' is not an open_clip model name; "
                         f"use e.g. 'ViT-B-16-quickgelu' (see open_clip.list_models())")
    cfg = copy.deepcopy(base)
    sizes = dict(width=width, layers=layers, patch_size=patch_size, text_width=text_width,
                 text_layers=text_layers, text_heads=text_heads)
    for key, value in sizes.items():
        if value:
            tower, name = ARCH_KEYS[key]
            cfg[tower][name] = int(value)
    vision = cfg["vision_cfg"]
    if heads:
        if vision["width"] % heads:
            raise ConfigError(f"vld.width {vision['width']} is not divisible by vld.heads {heads}")
        vision["head_width"] = vision["width"] // heads
    if embed_dim:
        cfg["embed_dim"] = int(embed_dim)
    vision["image_size"] = tuple(int(s) for s in image_size)
    for side, size in zip(("height", "width"), vision["image_size"]):
        if size % vision["patch_size"]:
            raise ConfigError(f"input {side} {size} is not a multiple of the patch size "
                             f"{vision['patch_size']}; set data.{side} accordingly")
    return cfg


def create_clip(cfg):
    """A randomly initialised open_clip ``CLIP`` from a config made by :func:`clip_config`."""
    cfg = copy.deepcopy(cfg)
    return open_clip.CLIP(**cfg)


NO_WEIGHTS = ("", "none", "false")  # model.pretrained values that mean random initialisation


def resolve_pretrained(pretrained):
    """Normalise ``model.pretrained`` / torchreid's bool to ``'openai'``, a path, or ``None``."""
    if pretrained is True:
        return "openai"
    if pretrained is False or pretrained is None:
        return None
    text = str(pretrained).strip()
    return None if text.lower() in NO_WEIGHTS else text


def openai_checkpoint_path(clip_name, cache_dir=None):
    """Download (or find in open_clip's cache) the OpenAI weights of ``clip_name``; return the file."""
    tag_cfg = open_clip.get_pretrained_cfg(clip_name, "openai")
    if not tag_cfg:
        raise PretrainedWeightsError(
            f"open_clip has no 'openai' weights for vld.clip_name '{clip_name}'; set "
            f"model.pretrained to a checkpoint file or 'none'")
    try:
        return open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as e:  # network errors come in many types (OSError, HTTP, hub errors)
        url = tag_cfg.get("url", "")
        name = os.path.basename(url) or "the OpenAI CLIP checkpoint"
        raise PretrainedWeightsError(
            f"cannot download OpenAI CLIP weights for {clip_name} ({type(e).__name__}); "
            f"download {name} from {url}, put it anywhere (e.g. ~/.cache/clip/{name}) and set "
            f"model.pretrained to that file (or model.pretrained none for random init)") from None


def read_checkpoint(path):
    """A CLIP state dict from a local file: TorchScript archive, torch pickle or safetensors."""
    if not os.path.isfile(path):
        raise PretrainedWeightsError(
            f"model.pretrained file {path} does not exist; give the path of OpenAI's ViT-B-16.pt "
            f"or an open_clip checkpoint, 'openai' to download, or 'none'")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path, device="cpu")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
            state = torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:  # not a TorchScript archive: a pickled (possibly wrapped) state dict
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise PretrainedWeightsError(
                f"cannot read CLIP checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0]}"
            ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise PretrainedWeightsError(f"CLIP checkpoint {path} holds no state dict")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    for key in ("input_resolution", "context_length", "vocab_size", "attn_mask"):  # not weights
        state.pop(key, None)
    return state


def resize_pos_embed(pos_embed, grid):
    """Resize a (1 + g*g, D) positional embedding to (1 + gh*gw, D): CLS kept, grid bilinear."""
    n_old = pos_embed.shape[0] - 1
    side = int(round(n_old ** 0.5))
    if side * side != n_old:
        raise PretrainedWeightsError(
            f"pretrained positional embedding has {n_old} patch rows, not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    cls_row, patches = pos_embed[:1], pos_embed[1:]
    patches = patches.float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=tuple(grid), mode="bilinear", align_corners=False)
    patches = patches.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1).to(pos_embed.dtype)
    return torch.cat([cls_row, patches], dim=0)


def load_clip_weights(clip, pretrained, clip_name, cache_dir=None):
    """Load ``pretrained`` ('openai' or a file path) into ``clip``, resizing the positional embedding."""
    path = openai_checkpoint_path(clip_name, cache_dir) if pretrained == "openai" else pretrained
    state = read_checkpoint(path)
    key = "visual.positional_embedding"
    if key in state:
        state[key] = resize_pos_embed(state[key], clip.visual.grid_size)
    state.pop("logit_bias", None)
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(clip.logit_scale.shape)
    own = clip.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        k = mismatched[0]
        raise PretrainedWeightsError(
            f"CLIP checkpoint {path} does not fit the configured architecture ({k}: "
            f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}); reset the vld size keys to 0 "
            f"or set model.pretrained none")
    result = clip.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        keys = (result.missing_keys + result.unexpected_keys)[:3]
        raise PretrainedWeightsError(
            f"CLIP checkpoint {path} is not a CLIP {clip_name} state dict "
            f"({len(result.missing_keys)} missing, {len(result.unexpected_keys)} unexpected keys, "
            f"e.g. {keys})")
    return path


def build_clip(clip_name, image_size, pretrained=None, cache_dir=None, **sizes):
    """An open_clip CLIP at ``image_size`` with weights from ``pretrained`` ('openai', path, None)."""
    cfg = clip_config(clip_name, image_size, **sizes)
    source = resolve_pretrained(pretrained)
    if source == "openai" and cfg != clip_config(clip_name, image_size):
        raise PretrainedWeightsError(
            f"OpenAI weights fit only the {clip_name} architecture, but vld size keys change it "
            f"({ {k: v for k, v in sizes.items() if v} }); set model.pretrained none")
    clip = create_clip(cfg)
    if source is not None:
        load_clip_weights(clip, source, clip_name, cache_dir)
    return clip
