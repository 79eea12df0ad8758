"""Importing the plugin registers its datasets and models into torchreid, idempotently."""
import importlib
import os
import subprocess
import sys

import pytest

import vld_plugin
from vld_plugin import compat, registry
from vld_plugin.data import BUPTCampus, HitszVCM
from vld_plugin.errors import VLDError
from vld_plugin.models import build_clip_tap, build_vld


def test_every_entry_is_registered_and_reimport_is_harmless():
    factory, datasets = compat.model_factory(), compat.video_dataset_factory()
    before = (dict(factory), dict(datasets))
    importlib.reload(vld_plugin)
    vld_plugin.register_all()
    vld_plugin.register_all()
    assert (dict(factory), dict(datasets)) == before
    assert {n: factory[n] for n in ("vld", "clip_tap")} == {"vld": build_vld, "clip_tap": build_clip_tap}
    assert {n: datasets[n] for n in ("hitsz_vcm", "bupt_campus")} == {"hitsz_vcm": HitszVCM, "bupt_campus": BUPTCampus}


def test_a_foreign_object_under_our_name_is_an_error(monkeypatch):
    monkeypatch.setitem(compat.model_factory(), "vld", object())
    with pytest.raises(VLDError, match="different model named 'vld'"):
        vld_plugin.register_all()


@pytest.mark.slow
def test_cli_prints_registration_table(python_runner):
    result = python_runner(["-m", "vld_plugin"])
    assert result.returncode == 0, result.stderr
    assert f"torchreid layout: {compat.LAYOUT}" in result.stdout
    for kind, name, target in registry.registered():
        row = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert row.split()[-1] == "yes" and target in row


@pytest.mark.slow
def test_importing_the_package_loads_neither_the_engine_nor_matplotlib():
    # (TensorBoard is imported by torchreid's own engine package, which registration needs)
    code = ("import sys, vld_plugin; "
            "print(sorted(m for m in ('matplotlib', 'vld_plugin.engine') if m in sys.modules)); "
            "print(vld_plugin.FeatureExtractor.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "FeatureExtractor"]
