"""The CLI under faults: one line and the right exit code, nothing trained lost, nothing silently different.

In-process through ``launch.main`` where the behaviour is the library's, as a subprocess of
``projects/VLD/main.py`` where it is the process's (signals, a missing optional package).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from vld_plugin.checkpoint import load_checkpoint
from vld_plugin.launch import main
from vld_plugin.optim import WarmupCosineLR

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = os.path.join(REPO, "projects", "VLD", "main.py")
DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
# train.lr and train.warmup_epochs: the values the resume expectations below were written for
TINY = ["train.iters_per_epoch", "2", "data.workers", "0", "test.eval_freq", "1", "train.batch_size", "16",
        "sampler.num_instances", "2", "train.max_epoch", "1", "train.lr", "0.001", "train.warmup_epochs", "1"]


@pytest.fixture(scope="module")
def root(cli_data):
    return cli_data


@pytest.fixture(scope="module")
def trained(root, tmp_path_factory):
    """A finished one-epoch run (its folder)."""
    run = str(tmp_path_factory.mktemp("trained") / "run")
    assert main(["--config-file", DEMO, "data.root", root, "data.save_dir", run] + TINY) == 0
    return run


def cli(args, capsys):
    """``main(args)`` -> (exit code, stdout, stderr lines without the progress bars)."""
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "%|" not in line]


def base(root, save_dir):
    return ["--config-file", DEMO, "data.root", root, "data.save_dir", str(save_dir)] + TINY


def test_flags_work_after_the_overrides(root, tmp_path, capsys):
    code, _, err = cli(base(root, tmp_path / "r") + ["--eval-only"], capsys)
    assert code == 2 and err == ["error: --eval-only needs trained weights: add --resume CHECKPOINT or "
                                 "model.load_weights PATH"]
    code, _, err = cli(base(root, tmp_path / "r") + ["--evaluate"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: unknown option --evaluate; the options are")
    code, _, err = cli(base(root, tmp_path / "r") + ["--resume"], capsys)
    assert code == 2 and err == ["error: argument --resume: expected one argument; run with --help for the options"]


def test_eval_only_resume_evaluates_the_checkpoint_into_its_own_folder(root, trained, capsys):
    records = {n: open(os.path.join(trained, n)).read() for n in ("config.yaml", "results.json")}
    ckpt = os.path.join(trained, "checkpoint.pth")
    code, out, _ = cli(base(root, trained) + ["--eval-only", "--resume", ckpt], capsys)
    assert code == 0 and f"loaded weights from {ckpt}" in out
    for name, text in records.items():  # the training run's records are untouched
        assert open(os.path.join(trained, name)).read() == text
    evaluated = json.load(open(os.path.join(trained, "eval", "results.json")))["hitsz_vcm"]
    for protocol, metrics in json.loads(records["results.json"])["hitsz_vcm"].items():
        assert evaluated[protocol] == pytest.approx(metrics, abs=1e-6)


def test_resume_applies_a_new_lr_and_max_epoch(root, trained, tmp_path, capsys):
    run = str(tmp_path / "run")
    shutil.copytree(trained, run)
    ckpt = os.path.join(run, "checkpoint.pth")
    args = base(root, run) + ["--resume", ckpt, "train.lr", "0.0005", "train.max_epoch", "3"]
    code, out, _ = cli(args, capsys)
    assert code == 0
    assert "resume: train.lr 0.001 -> 0.0005 (applied" in out and "resume: train.max_epoch 1 -> 3 (applied" in out
    # epoch 2 trains at the new schedule's lr: warm-up 1 epoch, cosine over 3 epochs from 5e-4
    model = torch.nn.Linear(1, 1)
    sched = WarmupCosineLR(torch.optim.SGD(model.parameters(), lr=5e-4), 3, warmup_epochs=1, lr=5e-4)
    expected = [sched.group_lr(5e-4, e) for e in (1, 2)]
    lines = [line for line in out.splitlines() if line.startswith(("epoch 2/3 ", "epoch 3/3 "))]
    assert [float(line.split(" lr ")[1].split()[0]) for line in lines] == pytest.approx(expected, rel=1e-2)
    assert load_checkpoint(ckpt)["settings"]["applied"]["train.lr"] == 0.0005


@pytest.mark.parametrize("key, value, old", [("train.optim", "sgd", "adamw"), ("train.batch_size", "32", "16")])
def test_resume_refuses_a_changed_optimizer_or_batch(root, trained, key, value, old, capsys):
    ckpt = os.path.join(trained, "checkpoint.pth")
    before = os.path.getmtime(ckpt)
    code, _, err = cli(base(root, trained) + ["--resume", ckpt, key, value, "train.max_epoch", "2"], capsys)
    assert code == 2 and err == [f"error: cannot resume {ckpt} with {key} {value}: it was trained with {key} {old}; "
                                 f"resume with {key} {old}, or start a new run from its weights with "
                                 f"model.load_weights {ckpt}"]
    assert os.path.getmtime(ckpt) == before


def test_resuming_a_finished_run_says_so(root, trained, capsys):
    ckpt = os.path.join(trained, "checkpoint.pth")
    code, out, err = cli(base(root, trained) + ["--resume", ckpt], capsys)
    assert code == 0 and err == []
    assert f"{ckpt} has finished training (epoch 1 of train.max_epoch 1); nothing to train" in out


def test_a_fault_during_evaluation_keeps_the_trained_epoch(root, tmp_path, capsys, monkeypatch):
    from vld_plugin.engine import PairedModalityEngine
    from vld_plugin.errors import ImageReadError

    def broken(self, *args, **kwargs):
        raise ImageReadError("cannot read frame /data/x.jpg (truncated)")

    monkeypatch.setattr(PairedModalityEngine, "evaluate_targets", broken)
    run = tmp_path / "run"
    code, _, err = cli(base(root, run), capsys)
    ckpt = str(run / "checkpoint.pth")
    assert code == 1 and len(err) == 1
    assert err[0].startswith("error: cannot read frame /data/x.jpg (truncated) (evaluating after epoch 1; "
                             f"the trained epoch is saved in {ckpt}")
    assert load_checkpoint(ckpt)["epoch"] == 1
    log = [n for n in os.listdir(run) if n.endswith(".log")]
    assert err[0] in open(run / log[0]).read()  # the error is in the run's log too


def test_a_full_disk_while_writing_results_keeps_the_trained_epoch(root, tmp_path, capsys, monkeypatch):
    import json as json_module

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json_module, "dump", no_space)
    run = tmp_path / "run"
    code, _, err = cli(base(root, run), capsys)
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: cannot write {run}/results.json: No space left on device; free some space")
    assert load_checkpoint(str(run / "checkpoint.pth"))["epoch"] == 1
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_a_data_loader_worker_error_is_the_same_one_line(root, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(root, data)
    frames = sorted((data / "HITSZ-VCM" / "Train").rglob("*.jpg"))
    for frame in frames:
        frame.write_bytes(b"")
    code, _, err = cli(base(str(data), tmp_path / "r") + ["data.workers", "1"], capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0]
    assert str(data) in err[0] and ".jpg" in err[0]


def test_stale_partial_checkpoints_are_removed(root, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".tmp-abc123.pth").write_bytes(b"half a checkpoint")
    code, out, _ = cli(base(root, run), capsys)
    assert code == 0 and f"removed 1 partial checkpoint file(s) left by an interrupted write in {run}" in out
    assert not [n for n in os.listdir(run) if n.startswith(".tmp-")]


def test_save_dir_faults_are_one_line(root, tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    code, _, err = cli(base(root, a_file), capsys)
    assert code == 1
    assert err == [f"error: data.save_dir {a_file} is a file, not a folder; set data.save_dir to a folder"]
    code, _, err = cli(base(root, a_file / "sub"), capsys)
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: cannot write into data.save_dir {a_file / 'sub'}: ")
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1024))
    code, _, err = cli(base(root, tmp_path / "full"), capsys)
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: data.save_dir {tmp_path / 'full'} has 0 MB free but a checkpoint needs about ")


def test_another_models_folder_is_not_overwritten(root, trained, capsys):
    code, _, err = cli(base(root, trained) + ["model.name", "clip_tap"], capsys)
    assert code == 2 and err == [f"error: data.save_dir {trained} holds a checkpoint of model.name vld, not clip_tap; "
                                 "set data.save_dir to another folder"]


def test_the_run_ends_by_saying_where_everything_went(root, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, _ = cli(base(root, run) + ["data.val_ids", "2"], capsys)
    logs = [n for n in os.listdir(run) if n.startswith("train-")]
    assert code == 0 and len(logs) == 1
    assert out[out.index("outputs:"):].splitlines()[1:] == [
        f"  checkpoint: {run}/checkpoint.pth", f"  best checkpoint (validation): {run}/best.pth",
        f"  results: {run}/results.json", f"  config: {run}/config.yaml", f"  log: {run}/{logs[0]}",
        f"  TensorBoard: tensorboard --logdir {run}"]
    assert "outputs:" in open(run / logs[0]).read()


def _until(predicate, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, how", [(signal.SIGINT, 130, "stopped by Ctrl-C"),
                                             (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_a_signal_ends_with_the_resume_command(root, tmp_path, sig, code, how):
    run = tmp_path / "run"
    args = base(root, run) + ["train.max_epoch", "50", "test.eval_freq", "0"]
    proc = subprocess.Popen([sys.executable, MAIN] + args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert _until(lambda: (run / "checkpoint.pth").exists(), 120)
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    epoch = load_checkpoint(str(run / "checkpoint.pth"))["epoch"]
    assert proc.returncode == code and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    command = f"python projects/VLD/main.py --config-file {DEMO} --resume {run}/checkpoint.pth"
    assert last.startswith(f"error: {how}; the last checkpoint is {run}/checkpoint.pth (after epoch ")
    assert f"(after epoch {epoch} of 50); resume with: {command} " in last


@pytest.mark.slow
def test_fresh_install_without_matplotlib(root, tmp_path):
    """What a plain ``pip install -e .`` (no extras) gets: training works, --visrank says what to install."""
    block = ("import sys, runpy; sys.modules['matplotlib'] = None; sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", block, MAIN] + base(root, tmp_path / "a"), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run([sys.executable, "-c", block, MAIN, "--visrank"] + base(root, tmp_path / "b"), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --visrank / test.visrank draws figures with matplotlib, which is not installed: "
        "pip install 'vld_plugin[plots]' (or pip install matplotlib)"]


def test_threads_leave_room_for_the_loader_workers(monkeypatch):
    from vld_plugin.launch import configure_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    torch.set_num_threads(16)  # restored after the test (conftest)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert configure_threads(8) == 7 and torch.get_num_threads() == 7
    assert configure_threads(0) == 7  # never more than it had
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert configure_threads(2) == 1 and configure_threads(0) == 1 and torch.get_num_threads() == 1
    torch.set_num_threads(3)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice wins
    assert configure_threads(0) == 3 and torch.get_num_threads() == 3


def test_the_interrupt_line_names_only_a_checkpoint_this_run_can_resume(root, trained, tmp_path):
    from vld_plugin.launch import interrupted_line, parse_args, prepare_run

    args = parse_args(base(root, trained) + ["train.lr", "1e-3 "])
    cfg = prepare_run(args)
    ckpt = os.path.join(trained, "checkpoint.pth")
    # the folder's checkpoint is older than this run: it belongs to another run
    assert interrupted_line(cfg, args, "stopped by Ctrl-C", time.time() + 1) == (
        "stopped by Ctrl-C before the first epoch ended; nothing to resume (run the same command again)")
    line = interrupted_line(cfg, args, "stopped by Ctrl-C", 0)
    assert line.startswith(f"stopped by Ctrl-C; the last checkpoint is {ckpt} (after epoch 1 of 1); resume with: ")
    assert line.endswith(f"--resume {ckpt} {' '.join(base(root, trained)[2:])} train.lr '1e-3 '")  # shell-quoted
    resumed = prepare_run(parse_args(base(root, tmp_path / "r") + ["--resume", ckpt]))
    assert f"the last checkpoint is {ckpt} " in interrupted_line(resumed, args, "stopped by SIGTERM", time.time() + 1)
