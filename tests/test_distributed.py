"""Two gloo processes under torchrun match one process over the same global batches."""
import os
import subprocess
import sys

import pytest
import torch

from vld_plugin.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
HERE = os.path.dirname(os.path.abspath(__file__))


def test_two_process_ddp_matches_single_process(tmp_path):
    # both runs single-threaded, so that float reductions happen in the same order
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE), OMP_NUM_THREADS="1")
    worker = os.path.join(HERE, "ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           worker, str(tmp_path / "ddp.pth"), str(tmp_path / "ddp")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single_run = subprocess.run([sys.executable, worker, str(tmp_path / "single.pth"), str(tmp_path / "single")],
                                env=env, capture_output=True, text=True, timeout=300)
    assert single_run.returncode == 0, single_run.stderr[-3000:]
    ddp, single = torch.load(tmp_path / "ddp.pth"), torch.load(tmp_path / "single.pth")
    assert ddp["world"] == 2 and single["world"] == 1
    # relative to each tensor's largest entry: float32 rounding of the gathered loss reaches ~1.5e-5
    # after 6 steps; a gradient averaged wrongly across ranks would differ by ~1e-2
    diffs = {k: ((ddp["model"][k] - v).abs().max() / v.abs().max().clamp_min(1e-6)).item()
             for k, v in single["model"].items()}
    assert max(diffs.values()) < 5e-5, diffs
    # gathered evaluation features: every gallery item once, in order
    assert torch.equal(ddp["pids"], single["pids"])
    assert torch.allclose(ddp["feats"], single["feats"], rtol=1e-4, atol=1e-5)
    assert ddp["rank1"] == single["rank1"]
    # rank 0 wrote the checkpoint, with the random states of both ranks
    state = load_checkpoint(str(tmp_path / "ddp" / "checkpoint.pth"))
    assert state["epoch"] == 2 and len(state["rng"]) == 2
    assert proc.stdout.count("epoch 2/2 ") == 1  # one summary line, from rank 0 only


@pytest.mark.slow
def test_a_configuration_error_under_torchrun_is_one_line_printed_once(tmp_path):
    from vld_plugin.data.synthetic import generate_vcm

    generate_vcm(str(tmp_path / "data" / "HITSZ-VCM"), num_ids=16, seed=3, height=64, width=32, num_cams=3, max_len=14)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    main_py = os.path.join(os.path.dirname(HERE), "projects", "VLD", "main.py")
    demo = os.path.join(os.path.dirname(HERE), "configs", "vld_demo.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", main_py,
           "--config-file", demo, "data.root", str(tmp_path / "data"), "data.save_dir", str(tmp_path / "run"),
           "data.workers", "0", "train.iters_per_epoch", "2", "train.max_epoch", "1", "train.batch_size", "64",
           "sampler.num_instances", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0
    assert errors == ["error: ModalityIdentitySampler needs at least 32 eligible identities (16 per batch x 2 ranks), "
                      "the data has 9"]
    assert "vld_plugin" not in proc.stderr  # no traceback from our code; torchrun adds its own failure summary
    assert proc.stdout.count("=> Loaded HitszVCM") == 1  # dataset tables from rank 0 only
