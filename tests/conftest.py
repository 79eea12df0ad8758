import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(args, cwd=REPO, env_extra=None, timeout=300):
    """Run the venv's Python in a subprocess and return the CompletedProcess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [(env_extra or {}).pop("PYTHONPATH", None), REPO]))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Restore torch's thread count after each test: the CLI, the mini CLIP script and some tests set it."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def python_runner():
    return run_python


# Synthetic HITSZ-VCM copies shared by the whole session; tests only read them (a test that damages
# data makes its own copy).
@pytest.fixture(scope="session")
def cli_data(tmp_path_factory):
    """Data root (str) with a 16-identity HITSZ-VCM copy at 64x32: the CLI and torchrun runs' data."""
    from vld_plugin.data.synthetic import generate_vcm

    root = tmp_path_factory.mktemp("cli_data")
    generate_vcm(str(root / "HITSZ-VCM"), num_ids=16, seed=3, height=64, width=32, num_cams=3, max_len=14)
    return str(root)


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory):
    """Data root (str) with an 8-identity HITSZ-VCM copy at 32x16: the smallest end-to-end runs."""
    from vld_plugin.data.synthetic import generate_vcm

    root = tmp_path_factory.mktemp("mini_data")
    generate_vcm(str(root / "HITSZ-VCM"), num_ids=8, seed=2, height=32, width=16, num_cams=2, min_len=12,
                 max_len=13, short_fraction=0.0)
    return str(root)


@pytest.fixture(scope="session")
def torchreid_data(tmp_path_factory):
    """HITSZ-VCM root (str), 26 identities at 32x16 with 70% of them for testing: torchreid's own
    evaluation needs 50+ gallery tracklets per query."""
    from vld_plugin.data.synthetic import generate_vcm

    root = str(tmp_path_factory.mktemp("torchreid_data"))
    generate_vcm(root, num_ids=26, seed=7, height=32, width=16, num_cams=3, min_len=12, max_len=13,
                 short_fraction=0.0, test_fraction=0.7)
    return root
