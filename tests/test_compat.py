"""The compatibility module resolves torchreid in both its PyPI and its source layout."""
import os
import re
import shutil

import torchreid

from vld_plugin import compat


def test_pypi_layout_resolves_reid_namespace():
    assert compat.LAYOUT == "pypi"
    for name in compat.SUBMODULES:
        module = getattr(compat, name)
        assert module.__name__ == f"torchreid.reid.{name}"
    assert compat.import_module("data.datamanager").VideoDataManager is compat.data.VideoDataManager
    assert "resnet50" in compat.model_factory()
    assert "mars" in compat.video_dataset_factory()


def _make_source_layout(tmp_path):
    """A source-layout torchreid (1.4.0 style: torchreid.data, ...) built from the installed PyPI one."""
    src = os.path.join(os.path.dirname(torchreid.__file__), "reid")
    dst = tmp_path / "torchreid"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for root, _, files in os.walk(dst):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(re.sub(r"torchreid\.reid\b", "torchreid", text))
    return tmp_path


def test_source_layout_resolves_top_level_namespace(tmp_path, python_runner):
    site = _make_source_layout(tmp_path)
    code = (
        "import vld_plugin, torchreid\n"
        "from vld_plugin import compat\n"
        "assert not hasattr(torchreid, 'reid')\n"
        "print(compat.LAYOUT, torchreid.__version__, compat.data.__name__, compat.metrics.__name__)\n"
        "print(sorted(n for n, _ in vld_plugin.registry.MODELS if n in compat.model_factory()))\n"
        "print(sorted(n for n, _ in vld_plugin.registry.VIDEO_DATASETS if n in compat.video_dataset_factory()))\n"
        "print(sorted(n for n, _ in vld_plugin.registry.MODELS))\n"
        "print(sorted(n for n, _ in vld_plugin.registry.VIDEO_DATASETS))\n"
    )
    result = python_runner(["-c", code], env_extra={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "source 1.4.0 torchreid.data torchreid.metrics"
    # everything the plugin registers is registered in the source layout too
    assert lines[1] == lines[3] and lines[2] == lines[4]


def test_missing_torchreid_gives_install_hint(tmp_path, python_runner):
    blocker = tmp_path / "torchreid.py"
    blocker.write_text("raise ModuleNotFoundError('No module named torchreid', name='torchreid')\n")
    result = python_runner(["-c", "import vld_plugin.compat"], env_extra={"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert "pip install torchreid==0.2.5" in result.stderr
