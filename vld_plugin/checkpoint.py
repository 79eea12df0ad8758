"""Checkpoints that survive crashes and load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no NumPy objects, no
classes), written atomically: to a temporary file in the same folder, flushed, then renamed
over the target, so a crash mid-write leaves the previous checkpoint intact.
"""
import os
import random
import tempfile

import numpy as np
import torch
from .errors import CheckpointError

FORMAT = "vld_plugin.checkpoint/1"


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint dict with ``weights_only=True``; one-line CheckpointError if missing or unreadable."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path} does not exist; check model.resume / model.load_weights")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # corrupt file, or objects a weights-only load refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {first}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict")
    return state


def rng_state():
    """RNG states of Python, NumPy, torch (and CUDA devices) as tensors and plain values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    """Restore what ``rng_state`` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_model_state(model, state_dict, source):
    """``model.load_state_dict(state_dict)`` with a one-line CheckpointError naming what does not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} keys {label} (e.g. {keys[0]})")
        raise CheckpointError(
            f"checkpoint {source} does not fit this model: {', '.join(parts)}; "
            "was it trained with another model.name, model size or number of identities?"
        )
    model.load_state_dict(state_dict)


def read_weights(path):
    """The model state dict in ``path``: a training checkpoint of ours, an official VLD checkpoint
    (converted from the authors' parameter names) or a plain state dict; one-line CheckpointError."""
    state = load_checkpoint(path)
    if state.get("format") == FORMAT:
        state = state["model"]
    elif isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if any(k.startswith(("image_encoder.", "module.image_encoder.")) for k in state):
        from .models import convert_official_state_dict

        state = convert_official_state_dict(state)
    return state


def load_weights(model, path):
    """Load trained weights into ``model`` from any checkpoint ``read_weights`` reads; one-line
    CheckpointError on mismatch."""
    load_model_state(model, read_weights(path), path)
    return model
