"""Two gloo processes under torchrun match one process over the same global batches."""
import os
import socket
import subprocess
import sys

import pytest
import torch

from vld_plugin.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
HERE = os.path.dirname(os.path.abspath(__file__))


def run_worker(tmp_path, name, kind, processes):
    """tests/ddp_worker.py with ``processes`` gloo processes (1: plain Python); returns what rank 0 saved."""
    # single-threaded, so that float reductions happen in the same order in every run
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE), OMP_NUM_THREADS="1")
    worker = os.path.join(HERE, "ddp_worker.py")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = (launch if processes > 1 else [sys.executable]) + [worker, str(tmp_path / f"{name}.pth"),
                                                            str(tmp_path / name), kind]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(tmp_path / f"{name}.pth"), proc


def relative_differences(a, b):
    """Per tensor, the largest difference relative to the tensor's largest entry."""
    return {k: ((a[k] - v).abs().max() / v.abs().max().clamp_min(1e-6)).item() for k, v in b.items()}


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    ddp, proc = run_worker(tmp_path, "ddp", "fake", 2)
    single, _ = run_worker(tmp_path, "single", "fake", 1)
    assert ddp["world"] == 2 and single["world"] == 1
    # float32 rounding of the gathered loss reaches ~1.5e-5 after 6 steps; a gradient averaged wrongly
    # across ranks would differ by ~1e-2
    diffs = relative_differences(ddp["model"], single["model"])
    assert max(diffs.values()) < 5e-5, diffs
    # gathered evaluation features: every gallery item once, in order
    assert torch.equal(ddp["pids"], single["pids"])
    assert torch.allclose(ddp["feats"], single["feats"], rtol=1e-4, atol=1e-5)
    # rank 0 wrote the checkpoint, with the random states of both ranks
    state = load_checkpoint(str(tmp_path / "ddp" / "checkpoint.pth"))
    assert state["epoch"] == 2 and len(state["rng"]) == 2
    assert proc.stdout.count("epoch 2/2 ") == 1  # one summary line, from rank 0 only


@pytest.mark.slow
def test_ddp_shares_the_text_pass_and_matches_single_process(tmp_path):
    """The tiny VLD under two gloo processes: each rank encodes half of the identities' prompts, the
    halves are all-gathered with their gradients, and the updates of every weight (prompts included)
    over 6 steps equal those of one process over the same global batches."""
    from ddp_worker import tiny_vld

    ddp, _ = run_worker(tmp_path, "ddp", "vld", 2)
    single, _ = run_worker(tmp_path, "single", "vld", 1)
    num_ids = single["model"]["prompt_learner.cls_ctx"].shape[0]
    assert set(single["text_rows"]) == {num_ids} and set(ddp["text_rows"]) == {num_ids // 2}
    torch.manual_seed(0)  # as the worker, before building the model
    initial = tiny_vld(num_ids).state_dict()
    errors = {}
    for key, weights in single["model"].items():
        update = (weights - initial[key]).float()
        if update.norm() > 0:
            errors[key] = ((ddp["model"][key] - initial[key]).float() - update).norm().item() / update.norm().item()
    assert "prompt_learner.cls_ctx" in errors and "visual.proj" in errors
    # float32 rounding through 4 blocks stays near 1e-4 of each update; a gradient halved or doubled by
    # a wrong sum over the ranks would be off by 0.5 or more
    assert max(errors.values()) < 2e-3, {k: v for k, v in errors.items() if v >= 2e-3}
    assert errors["prompt_learner.cls_ctx"] < 1e-4
    assert torch.allclose(ddp["feats"], single["feats"], rtol=1e-3, atol=1e-4)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_train_as_two_processes_on_one_node(tmp_path):
    """torchrun --nnodes 2 (two launches on this machine, rendezvous on 127.0.0.1, one gloo process
    each) trains the tiny VLD to the same weights as --nproc_per_node 2 on one node."""
    one_node, _ = run_worker(tmp_path, "one_node", "vld", 2)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE), OMP_NUM_THREADS="1")
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                               "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", str(port),
                               os.path.join(HERE, "ddp_worker.py"), str(tmp_path / "two_nodes.pth"),
                               str(tmp_path / "two_nodes"), "vld"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for node in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    two_nodes = torch.load(tmp_path / "two_nodes.pth")
    assert two_nodes["world"] == 2 and two_nodes["text_rows"] == one_node["text_rows"]
    for key, weights in one_node["model"].items():
        torch.testing.assert_close(two_nodes["model"][key], weights, rtol=1e-6, atol=1e-7, msg=key)


@pytest.mark.slow
def test_a_configuration_error_under_torchrun_is_one_line_printed_once(tmp_path, cli_data):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    main_py = os.path.join(os.path.dirname(HERE), "projects", "VLD", "main.py")
    demo = os.path.join(os.path.dirname(HERE), "configs", "vld_demo.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", main_py,
           "--config-file", demo, "data.root", cli_data, "data.save_dir", str(tmp_path / "run"),
           "data.workers", "0", "train.iters_per_epoch", "2", "train.max_epoch", "1", "train.batch_size", "64",
           "sampler.num_instances", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0
    assert errors == ["error: ModalityIdentitySampler needs at least 32 eligible identities (16 per batch x 2 ranks), "
                      "the data has 9"]
    assert "vld_plugin" not in proc.stderr  # no traceback from our code; torchrun adds its own failure summary
    assert proc.stdout.count("=> Loaded HitszVCM") == 1  # dataset tables from rank 0 only
