"""The compatibility module resolves torchreid in both its PyPI and its source layout."""
import os
import re
import shutil

import pytest
import torchreid


def _make_layout(tmp_path, layout):
    """A copy of the installed torchreid (either layout) in ``layout``: 'pypi' (``torchreid.reid.*``,
    as torchreid 0.2.5 from PyPI) or 'source' (``torchreid.*``, as 1.4.0 from its repository)."""
    installed = os.path.dirname(torchreid.__file__)
    code = os.path.join(installed, "reid") if os.path.isdir(os.path.join(installed, "reid")) else installed
    top = tmp_path / layout / "torchreid"
    dst = top / "reid" if layout == "pypi" else top
    shutil.copytree(code, dst, ignore=shutil.ignore_patterns("__pycache__", "reid_model_factory*"))
    for root, _, files in os.walk(dst):
        for name in (n for n in files if n.endswith(".py")):
            path = os.path.join(root, name)
            with open(path) as f:
                text = re.sub(r"\btorchreid\.reid\b", "torchreid", f.read())  # the source layout's names
            if layout == "pypi":
                text = re.sub(r"\btorchreid\b", "torchreid.reid", text)
            with open(path, "w") as f:
                f.write(text)
    if layout == "pypi":
        (top / "__init__.py").write_text("from torchreid.reid import data, engine, losses, metrics, models, optim, "
                                         "utils\n__version__ = '0.2.5'\n")
    return tmp_path / layout


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["pypi", "source"])
def test_either_layout_resolves_and_registers_everything(tmp_path, python_runner, layout):
    site = _make_layout(tmp_path, layout)
    code = (
        "import vld_plugin, torchreid\n"
        "from vld_plugin import compat\n"
        "print(compat.LAYOUT, torchreid.__file__.startswith(sys.argv[1]))\n"
        "print(sorted({m.__name__ for m in (compat.data, compat.engine, compat.metrics, compat.models)}))\n"
        "print(compat.import_module('data.datamanager').VideoDataManager is compat.data.VideoDataManager)\n"
        "print(all(n in compat.model_factory() for n in ('resnet50', *vld_plugin.registry.MODELS)))\n"
        "print(all(n in compat.video_dataset_factory() for n in ('mars', *vld_plugin.registry.VIDEO_DATASETS)))\n"
    )
    result = python_runner(["-c", "import sys\n" + code, str(site)], env_extra={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    prefix = "torchreid.reid" if layout == "pypi" else "torchreid"
    assert result.stdout.splitlines() == [
        f"{layout} True", str(sorted(f"{prefix}.{m}" for m in ("data", "engine", "metrics", "models"))),
        "True", "True", "True"]


@pytest.mark.slow
def test_missing_torchreid_gives_install_hint(tmp_path, python_runner):
    blocker = tmp_path / "torchreid.py"
    blocker.write_text("raise ModuleNotFoundError('No module named torchreid', name='torchreid')\n")
    result = python_runner(["-c", "import vld_plugin.compat"], env_extra={"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    assert "pip install torchreid==0.2.5" in result.stderr
