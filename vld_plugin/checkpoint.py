"""Checkpoints that survive crashes and load with ``torch.load(weights_only=True)``.

A checkpoint is a dict of tensors and plain Python values only (no NumPy objects, no
classes), written atomically: to a temporary file in the same folder, flushed, then renamed
over the target, so a crash mid-write leaves the previous checkpoint intact. Loading checks the
CRC-32 of every record of the zip file, so damaged bytes are reported instead of loaded.
"""
import os
import random
import shutil
import tempfile
import zipfile

import numpy as np
import torch

from .errors import CheckpointError, OutputError

FORMAT = "vld_plugin.checkpoint/1"


TMP_PREFIX, TMP_SUFFIX = ".tmp-", ".pth"


def save_checkpoint(state, path):
    """Write ``state`` to ``path`` atomically (temporary file + ``os.replace``); OutputError if it cannot."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=folder)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch reports a failed write (full disk) as a RuntimeError
        reason = (e.strerror or str(e)) if isinstance(e, OSError) else "the write failed"
        raise OutputError(f"cannot write checkpoint {path}: {reason} ({free_space(folder)}); "
                          "free some space or set data.save_dir to another folder") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def free_space(folder):
    """``'N MB free'`` on the filesystem of ``folder`` (or its nearest existing parent), for messages."""
    while folder and not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        return f"{shutil.disk_usage(folder or '.').free / 2**20:.0f} MB free there"
    except OSError:
        return "free space unknown"


def remove_stale_temporaries(folder):
    """Delete partial checkpoint files a killed write left in ``folder``; returns their paths."""
    if not os.path.isdir(folder):
        return []
    stale = [os.path.join(folder, n) for n in sorted(os.listdir(folder))
             if n.startswith(TMP_PREFIX) and n.endswith(TMP_SUFFIX)]
    for path in stale:
        os.remove(path)
    return stale


def verify_checksums(path):
    """CheckpointError if a record of the zip file ``torch.save`` wrote fails its CRC-32 (damaged bytes);
    ``torch.load`` itself does not check them."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged ({e}); use an intact copy") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: its record {bad} fails the CRC check; use an intact copy")


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint dict with ``weights_only=True`` after checking its CRCs; one-line
    CheckpointError if missing, damaged or unreadable."""
    if not os.path.isfile(path):
        what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise CheckpointError(f"checkpoint {path} {what}; check --resume / model.load_weights")
    verify_checksums(path)
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
