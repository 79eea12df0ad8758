"""Atomic, weights-only-loadable checkpoints and RNG state round trips."""
import errno
import random

import numpy as np
import pytest
import torch

from vld_plugin.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vld_plugin.errors import OutputError


def _draws():
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(1).item()


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in NumPy's state
    random.gauss(0, 1)
    state = rng_state()
    expected = _draws()
    save_checkpoint({"rng": state}, str(tmp_path / "c.pth"))
    _draws()
    loaded = torch.load(str(tmp_path / "c.pth"), weights_only=True)  # what torch >= 2.6 does by default
    set_rng_state(loaded["rng"])
    assert _draws() == expected


def test_atomic_save_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pth")
    save_checkpoint({"w": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OutputError, match=r"cannot write checkpoint .*ckpt.pth: No space left on device \(\d+ MB free"):
        save_checkpoint({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth"]  # no temporary file left


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist; check --resume"):
        load_checkpoint(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load checkpoint") as err:
        load_checkpoint(str(bad))
    assert "\n" not in str(err.value)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"rank1": np.float64(0.5)}, str(unsafe))  # what torchreid's save_model stores
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(str(unsafe))


def test_model_state_mismatch_is_named():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2), torch.nn.ReLU())
    state = other.state_dict()
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as err:
        load_model_state(model, state, "x.pth")
    msg = str(err.value)
    assert "x.pth does not fit this model" in msg and "unexpected (e.g. extra.weight)" in msg
    assert "of another shape (e.g. 0.weight)" in msg and "\n" not in msg
    good = {k: v + 1 for k, v in model.state_dict().items()}
    load_model_state(model, good, "y.pth")
    assert torch.equal(model[0].bias, good["0.bias"])


def test_damaged_bytes_are_reported_not_loaded(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"w": torch.arange(50000, dtype=torch.float32)}, str(path))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the tensor's record: torch.load alone would load it silently
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(bytes(data))
    assert not torch.equal(torch.load(damaged, weights_only=True)["w"], torch.arange(50000, dtype=torch.float32))
    with pytest.raises(CheckpointError, match=r"damaged\.pth is damaged: its record .*/data/0 fails the CRC check"):
        load_checkpoint(str(damaged))
    cut = tmp_path / "cut.pth"
    cut.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(CheckpointError, match=r"cut\.pth"):
        load_checkpoint(str(cut))
    assert torch.equal(load_checkpoint(str(path))["w"], torch.arange(50000, dtype=torch.float32))
