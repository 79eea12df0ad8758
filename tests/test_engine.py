"""The paired-modality engine on a tiny fake model and fake paired data (CPU)."""
import json
import os

import pytest
import torch
from fakes import FakeDataManager, TinyVideoModel

from vld_plugin.checkpoint import CheckpointError, load_checkpoint
from vld_plugin.config import get_default_config, load_config
from vld_plugin.engine import (
    EngineConfigError,
    NonFiniteLossError,
    PairedModalityEngine,
    resolve_amp,
)
from vld_plugin.evaluation import compute_distance, evaluate_protocols, rerank_distance
from vld_plugin.evaluation.report import SELECTED_KEY
from vld_plugin.launch import build_engine
from vld_plugin.models import build_model
from vld_plugin.models.frame_wise import FrameWise

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def make_engine(model_seed=0, max_epoch=4, amp="off", model=None, **dm_kwargs):
    cfg = get_default_config()
    cfg.train.lr, cfg.train.max_epoch, cfg.train.warmup_epochs, cfg.train.amp = 1e-2, max_epoch, 1, amp
    dm = FakeDataManager(**dm_kwargs)
    torch.manual_seed(model_seed)
    model = model if model is not None else TinyVideoModel(dm.num_train_pids)
    return build_engine(cfg, dm, model, use_gpu=False)


def run_kwargs(save_dir, max_epoch, **over):
    kw = dict(save_dir=str(save_dir), max_epoch=max_epoch, eval_freq=2, print_freq=100)
    kw.update(over)
    return kw


def test_training_lifts_cross_modal_rank1_far_above_chance(tmp_path, capsys):
    engine = make_engine(max_epoch=6, iters=10, num_train=30, num_test=16)
    engine.run(save_dir=str(tmp_path), test_only=True)
    before = json.load(open(tmp_path / "results.json"))["fake"]
    rank1 = engine.run(**run_kwargs(tmp_path, 6))
    after = json.load(open(tmp_path / "results.json"))["fake"]
    chance = 1 / 16
    for protocol in ("infrared-to-visible", "visible-to-infrared"):
        assert after[protocol]["rank1"] >= 6 * chance  # 0.56 and 0.62 here, from 0.06 and 0.12
        assert after[protocol]["rank1"] >= before[protocol]["rank1"] + 3 * chance
    assert rank1 == after["infrared-to-visible"]["rank1"]
    out = capsys.readouterr().out
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 6 and all(" v2t " in line and " wrt_sta " in line for line in epoch_lines)
    assert "infrared-to-visible" in out and "R20" in out
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("results_epoch")) == [
        "results_epoch002.json", "results_epoch004.json", "results_epoch006.json"]
    state = load_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert state["epoch"] == 6


def test_tensorboard_logs_terms_lr_and_metrics(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    make_engine(max_epoch=2).run(**run_kwargs(tmp_path, 2))
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"Train/loss", "Train/v2t", "Train/ce_sta", "Train/wrt_sta", "Train/lr"} <= tags
    assert "Test/fake/visible-to-infrared/rank1" in tags and "Test/fake/infrared-to-visible/mAP" in tags
    assert len(acc.Scalars("Train/loss")) == 2 * 4  # every iteration of 2 epochs
    assert acc.Scalars("Train/lr")[0].value == pytest.approx(1e-2 * 0.01)  # warm-up start


def _weights(engine):
    return {k: v.clone() for k, v in engine.model.state_dict().items()}


@pytest.mark.parametrize("stop_epoch,stop_iter", [(2, 0), (2, 2)])
def test_resume_continues_exactly(tmp_path, stop_epoch, stop_iter):
    full = make_engine()
    full.run(**run_kwargs(tmp_path / "full", 4))
    expected = _weights(full)

    interrupted = make_engine()
    original = interrupted.forward_backward

    def killed(data):  # a crash in the middle of epoch `stop_epoch` (0-based)
        if interrupted.epoch == stop_epoch and interrupted.batch_idx == stop_iter:
            raise KeyboardInterrupt
        return original(data)

    interrupted.forward_backward = killed
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(**run_kwargs(tmp_path / "resumed", 4))

    resumed = make_engine(model_seed=123)  # different initial weights, random state moved on
    assert not all(torch.equal(v, expected[k]) for k, v in resumed.model.state_dict().items())
    start = resumed.resume(str(tmp_path / "resumed" / "checkpoint.pth"))
    assert start == stop_epoch
    resumed.run(**run_kwargs(tmp_path / "resumed", 4, start_epoch=start))
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    engine = make_engine()
    criterion = engine.criterion

    def poisoned(outputs, targets):
        loss, terms = criterion(outputs, targets)
        return (loss * float("nan"), terms) if engine.epoch == 1 else (loss, terms)

    engine.criterion = poisoned
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at epoch 2 iteration 1 \(loss nan") as err:
        engine.run(**run_kwargs(tmp_path, 4))
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)
    state = load_checkpoint(str(tmp_path / "checkpoint.pth"))
    assert state["epoch"] == 1
    for k, v in engine.model.state_dict().items():  # no update was applied after the checkpoint
        assert torch.equal(v, state["model"][k]) and torch.isfinite(v.float()).all()


def test_amp_modes():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) == (None, False)
    assert resolve_amp("off", cpu) == (None, False)
    assert resolve_amp("bf16", cpu) == (torch.bfloat16, False)
    assert resolve_amp("fp16", cpu) == (torch.float16, True)
    with pytest.raises(EngineConfigError, match="train.amp must be one of"):
        resolve_amp("fp8", cpu)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_step_trains(tmp_path, amp):
    engine = make_engine(amp=amp)
    assert engine.scaler.is_enabled() == (amp == "fp16")
    before = _weights(engine)
    engine.set_model_mode("train")
    engine.epoch = 0
    # fp16: the scaler may skip the first steps (overflow at its initial scale) and lower its scale
    for engine.batch_idx, data in enumerate(engine.train_loader):
        summary = engine.forward_backward(data)
        assert all(torch.isfinite(torch.tensor(v)) for v in summary.values())
    assert not torch.equal(before["classifier.weight"], engine.model.classifier.weight)


def test_gradient_clipping_bounds_the_update():
    dm = FakeDataManager()
    torch.manual_seed(0)
    model = TinyVideoModel(dm.num_train_pids)
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    engine = PairedModalityEngine(dm, model, sgd, use_gpu=False, amp="off", grad_clip=1e-3)
    before = torch.nn.utils.parameters_to_vector(model.parameters()).clone()
    engine.epoch, engine.batch_idx = 0, 0
    engine.forward_backward(next(iter(engine.train_loader)))
    step = (torch.nn.utils.parameters_to_vector(model.parameters()) - before).norm().item()
    assert 0 < step <= 1e-3 * (1 + 1e-4)


def test_cross_dataset_targets_each_evaluated(tmp_path):
    engine = make_engine(targets=("source_ds", "other_ds"))
    rank1 = engine.run(save_dir=str(tmp_path), test_only=True)
    results = json.load(open(tmp_path / "results.json"))
    assert list(results) == ["source_ds", "other_ds"]
    assert set(results["other_ds"]) == {"infrared-to-visible", "visible-to-infrared"}
    assert rank1 == results["source_ds"]["infrared-to-visible"]["rank1"]


def test_cuhk03_metric_is_not_taken(tmp_path):
    # torchreid's image-only option is not silently accepted and ignored
    with pytest.raises(TypeError, match="use_metric_cuhk03"):
        make_engine().run(save_dir=str(tmp_path), test_only=True, use_metric_cuhk03=True)
    with pytest.raises(TypeError, match="use_metric_cuhk03"):
        make_engine().test(save_dir=str(tmp_path), use_metric_cuhk03=True)


def test_rerank_changes_the_distances_but_not_the_protocols(tmp_path):
    plain = make_engine().run(save_dir=str(tmp_path / "plain"), test_only=True)
    reranked = make_engine().run(save_dir=str(tmp_path / "rerank"), test_only=True, rerank=True)
    a = json.load(open(tmp_path / "plain" / "results.json"))["fake"]
    b = json.load(open(tmp_path / "rerank" / "results.json"))["fake"]
    assert set(a) == set(b) == {"infrared-to-visible", "visible-to-infrared"}
    assert plain == a["infrared-to-visible"]["rank1"] and reranked == b["infrared-to-visible"]["rank1"]
    # the reranked results are k-reciprocal re-ranking of the same features, and not the plain ones
    engine = make_engine()
    loaders = engine.datamanager.test_loader["fake"]
    (qf, q_meta), (gf, g_meta) = engine.extract(loaders["query"]), engine.extract(loaders["gallery"])
    expected = evaluate_protocols(qf, q_meta, gf, g_meta, engine.datamanager.protocols("fake"), True, rerank=True)
    assert b == {p: {k: None if v != v else pytest.approx(v, abs=1e-12) for k, v in m.items()}  # NaN -> null
                 for p, m in expected.items()}
    plain_distances = compute_distance(qf[q_meta["modalities"] == 1], gf[g_meta["modalities"] == 0])
    assert not torch.allclose(rerank_distance(qf[q_meta["modalities"] == 1], gf[g_meta["modalities"] == 0]),
                              plain_distances)


def test_torchreid_model_trains_frame_wise_and_evaluates(tmp_path):
    dm = FakeDataManager()
    model = build_model("resnet18", dm.num_train_pids, pretrained="none")
    assert isinstance(model, FrameWise)
    engine = make_engine(model=model, max_epoch=1)
    engine.epoch, engine.batch_idx = 0, 0
    engine.set_model_mode("train")
    summary = engine.forward_backward(next(iter(engine.train_loader)))
    assert set(summary) == {"loss", "ce_cls", "wrt_cls"}
    feats, meta = engine.extract(dm.test_loader["fake"]["query"])
    assert feats.shape == (8, 512) and list(meta["modalities"]) == [1] * 8
    # the tracklet feature is the mean of the torchreid model's frame features
    imgs = torch.cat([batch["img"] for batch in dm.test_loader["fake"]["query"]])
    with torch.no_grad():
        frames = super(FrameWise, model).forward(imgs.flatten(0, 1)).view(8, imgs.shape[1], -1)
    torch.testing.assert_close(feats, frames.mean(1), rtol=1e-5, atol=1e-5)
    rank1 = engine.run(**run_kwargs(tmp_path, 1))
    assert rank1 == json.load(open(tmp_path / "results.json"))["fake"]["infrared-to-visible"]["rank1"]


def test_resume_rejects_foreign_or_mismatched_checkpoints(tmp_path):
    engine = make_engine()
    plain = tmp_path / "weights.pth"
    torch.save({"state_dict": engine.model.state_dict()}, str(plain))
    with pytest.raises(CheckpointError, match="not a vld_plugin training checkpoint"):
        engine.resume(str(plain))
    engine.run(**run_kwargs(tmp_path / "a", 1))
    other = make_engine(num_train=20)  # another number of identities
    with pytest.raises(CheckpointError, match="does not fit this model: .*of another shape"):
        other.resume(str(tmp_path / "a" / "checkpoint.pth"))


def test_run_accepts_the_config_run_kwargs(tmp_path):
    from vld_plugin.config import engine_run_kwargs

    cfg = get_default_config()
    cfg.data.save_dir, cfg.train.max_epoch, cfg.test.eval_freq = str(tmp_path), 1, 2
    rank1 = make_engine(max_epoch=1).run(**engine_run_kwargs(cfg))
    assert rank1 == json.load(open(tmp_path / "results.json"))["fake"]["infrared-to-visible"]["rank1"]


def test_validation_selects_best_epoch_and_reports_its_test_results(tmp_path, capsys):
    from vld_plugin.checkpoint import load_weights
    from vld_plugin.engine import BEST_NAME

    engine = make_engine(max_epoch=6, iters=6, num_train=30, num_test=12, num_val=10)
    engine.run(**run_kwargs(tmp_path, 6))
    per_epoch = {e: json.load(open(tmp_path / f"results_epoch{e:03d}.json")) for e in (2, 4, 6)}
    val_map = {e: (r["validation"]["infrared-to-visible"]["mAP"] + r["validation"]["visible-to-infrared"]["mAP"]) / 2
               for e, r in per_epoch.items()}
    best = max(val_map, key=lambda e: (val_map[e], -e))  # the first epoch reaching the best score
    summary = json.load(open(tmp_path / "results.json"))
    selected = summary[SELECTED_KEY]
    assert selected["epoch"] == best and selected["val_mAP"] == pytest.approx(val_map[best])
    assert selected["test"]["fake"] == per_epoch[best]["fake"] and summary["fake"] == per_epoch[6]["fake"]
    assert selected["validation"] == per_epoch[best]["validation"]
    # best.pth holds that epoch's weights: evaluating them gives its test results again
    state = load_checkpoint(str(tmp_path / BEST_NAME))
    assert state["epoch"] == best
    fresh = make_engine(num_train=30, num_test=12, num_val=10, model_seed=5)
    load_weights(fresh.model, str(tmp_path / BEST_NAME))
    fresh.run(save_dir=str(tmp_path / "eval"), test_only=True)
    again = json.load(open(tmp_path / "eval" / "results.json"))["fake"]
    for protocol, metrics in per_epoch[best]["fake"].items():
        assert again[protocol]["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)
    out = capsys.readouterr().out
    assert f"selected by validation: epoch {best}" in out and "validation after epoch 2" in out
    # the resume checkpoint carries the selection
    assert load_checkpoint(str(tmp_path / "checkpoint.pth"))["selection"]["epoch"] == best


def test_no_validation_split_writes_no_selection(tmp_path):
    from vld_plugin.engine import BEST_NAME

    make_engine(max_epoch=2).run(**run_kwargs(tmp_path, 2))
    assert SELECTED_KEY not in json.load(open(tmp_path / "results.json"))
    assert not os.path.exists(tmp_path / BEST_NAME)


def test_selection_keeps_the_first_best_validation_epoch(tmp_path):
    from vld_plugin.engine import BEST_NAME

    engine = make_engine()
    # means 0.3, 0.5, 0.45, 0.5: epoch 2 is best and the tie at epoch 4 does not replace it
    scores = {1: (0.2, 0.4), 2: (0.5, 0.5), 3: (0.3, 0.6), 4: (0.6, 0.4)}
    for epoch, (a, b) in scores.items():
        engine.epoch = epoch - 1
        with torch.no_grad():
            next(engine.model.parameters()).fill_(epoch)
        val = {"infrared-to-visible": {"mAP": a}, "visible-to-infrared": {"mAP": b}}
        test = {"fake": {"infrared-to-visible": {"rank1": epoch / 10, "mAP": 0.1}}}
        engine._update_selection(val, test, str(tmp_path))
    assert engine.selection["epoch"] == 2 and engine.selection["val_mAP"] == pytest.approx(0.5)
    assert engine.selection["test"]["fake"]["infrared-to-visible"]["rank1"] == pytest.approx(0.2)
    state = load_checkpoint(str(tmp_path / BEST_NAME))
    assert state["epoch"] == 2 and float(next(iter(state["state_dict"].values())).flatten()[0]) == 2.0


@pytest.mark.slow
def test_train_compile_gives_the_eager_losses():
    """Two steps of the tiny VLD through torch.compile (train.compile): every loss term as eager to 1e-5,
    forward and, through the first update, backward. In float64, so that what is compared is the
    computation, not float32 rounding (in float32 inductor's reordered sums move the total loss by
    about 1e-5 and single WRT terms of this random tiny model by up to 2e-4)."""
    from ddp_worker import tiny_vld

    from vld_plugin.optim import build_optimizer

    def in_float64(data, device, train):
        return {k: v.double() if k == "img" else v for k, v in data.items()}

    runs = []
    for compiled in (False, True):
        dm = FakeDataManager(augment=False)
        dm.prepare_batch = in_float64
        torch.manual_seed(0)
        model = tiny_vld(dm.num_train_pids).double()
        engine = PairedModalityEngine(dm, model, build_optimizer(model, optim="sgd", lr=0.05), use_gpu=False,
                                      amp="off", compile=compiled)
        assert (engine.net is not model) == compiled
        engine.epoch, engine.batch_idx = 0, 0
        engine.set_model_mode("train")
        batches = iter(engine.train_loader)
        runs.append([engine.forward_backward(next(batches)) for _ in range(2)])
    for eager, compiled in zip(*runs):
        assert set(eager) == set(compiled) and "v2t" in eager and "wrt_sta" in eager
        for key, value in eager.items():
            assert compiled[key] == pytest.approx(value, rel=1e-5), key


HOST_SYNC_OPS = ("aten._local_scalar_dense", "aten.lift_fresh", "aten.nonzero", "aten.masked_select",
                 "aten.unique", "aten._unique")


def test_a_training_step_waits_for_the_device_only_to_read_the_loss(cli_data):
    """One step of the real pipeline (data manager's normalisation, erasing and channel operations,
    the tiny VLD, the VLD loss) records no op that makes the host wait for the device: no scalar read
    (item, bool), no tensor made from host values (a blocking copy on a GPU), no data-dependent shape
    (nonzero, boolean indexing). The step's one wait is the loss read (``tolist``, after the backward).
    The optimizer's update runs outside the recording: on the CPU Adam's step counters are host
    tensors, read without waiting for anything (on CUDA the fused update keeps them on the device)."""
    from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

    from vld_plugin.launch import build_datamanager, build_engine
    from vld_plugin.launch import build_model as build_from_config

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append((str(func), [a.dtype for a in args if torch.is_tensor(a)]))
            return func(*args, **(kwargs or {}))

    demo = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "vld_demo.yaml")
    cfg = load_config(demo, ["data.root", cli_data, "data.synthetic", "False", "data.workers", "0",
                             "train.batch_size", "8", "sampler.num_instances", "2", "data.transforms",
                             "[random_crop,random_flip,random_erase]"])
    dm = build_datamanager(cfg, verbose=False)
    engine = build_engine(cfg, dm, build_from_config(cfg, dm.num_train_pids), use_gpu=False)
    engine.epoch, engine.batch_idx = 0, 0
    engine.set_model_mode("train")
    data = next(iter(engine.train_loader))
    step = engine.optimizer.step

    def unrecorded_step(*args, **kwargs):
        with _disable_current_modes():
            return step(*args, **kwargs)

    engine.optimizer.step = unrecorded_step
    with Recorder() as recorder:
        summary = engine.forward_backward(data)
    assert "v2t" in summary and len(recorder.ops) > 1000
    waits = [op for op, dtypes in recorder.ops
             if op.startswith(HOST_SYNC_OPS) or (op.startswith("aten.index.") and torch.bool in dtypes)]
    assert waits == []
