"""torchreid's own VideoDataManager and VideoSoftmaxEngine on the plugin's hitsz_vcm dataset."""
import pytest
import torch
from fakes import torchreid_engine_rank1

import vld_plugin  # noqa: F401  (registers hitsz_vcm)
from vld_plugin import compat


@pytest.fixture(scope="module")
def root(torchreid_data):
    return torchreid_data


def torchreid_manager(root, sample_method):
    return compat.data.VideoDataManager(root=root, sources="hitsz_vcm", height=32, width=16, batch_size_train=4,
                                        batch_size_test=16, workers=0, seq_len=4, sample_method=sample_method,
                                        train_sampler="RandomIdentitySampler", num_instances=2, use_gpu=False)


@pytest.mark.parametrize("sample_method", ["evenly", "random", "all"])
def test_torchreid_sample_methods(root, sample_method):
    dm = torchreid_manager(root, sample_method)
    item = dm.train_loader.dataset[0]
    frames = len(dm.train_loader.dataset.train[0][0]) if sample_method == "all" else 4
    assert item["img"].shape == (frames, 3, 32, 16) and item["img"].dtype == torch.float32


def test_torchreid_video_softmax_engine_trains_and_evaluates(root, tmp_path):
    torch.manual_seed(0)
    dm = torchreid_manager(root, "restricted_random")  # the plugin's method works on torchreid's path too
    assert dm.num_train_pids == 8
    batch = next(iter(dm.train_loader))
    assert batch["img"].shape == (4, 4, 3, 32, 16) and batch["img"].dtype == torch.float32
    model = compat.models.build_model("resnet18", dm.num_train_pids, loss="softmax", pretrained=False, use_gpu=False)
    optimizer = compat.optim.build_optimizer(model, optim="adam", lr=1e-3)
    scheduler = compat.optim.build_lr_scheduler(optimizer, lr_scheduler="single_step", stepsize=1)
    engine = compat.engine.VideoSoftmaxEngine(dm, model, optimizer, scheduler=scheduler, use_gpu=False,
                                              pooling_method="avg")
    before = [p.detach().clone() for p in model.parameters()]
    engine.run(save_dir=str(tmp_path), max_epoch=1, eval_freq=-1, print_freq=100, ranks=[1, 5])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    rank1 = engine.test(dist_metric="euclidean", ranks=[1, 5])
    # torchreid evaluated the infrared-to-visible protocol of our dataset: the same Rank-1 from its features
    assert rank1 == pytest.approx(torchreid_engine_rank1(engine, dm), abs=1e-9)
