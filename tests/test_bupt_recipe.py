"""configs/vld_bupt.yaml: the released BUPTCampus data pipeline, end to end on a synthetic copy."""
import os
import warnings

import pytest

from vld_plugin.config import load_config
from vld_plugin.data import CameraModalitySampler
from vld_plugin.data.synthetic import generate_bupt, generate_vcm
from vld_plugin.launch import build_datamanager
from vld_plugin.modality import INFRARED, VISIBLE

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def test_bupt_config_is_the_released_recipe():
    cfg = load_config(os.path.join(CONFIGS, "vld_bupt.yaml"))
    vcm = load_config(os.path.join(CONFIGS, "vld_vcm.yaml"))
    assert cfg.sampler.train_sampler == "CameraModalitySampler" and cfg.sampler.num_cams == 2
    assert cfg.train.batch_size == 32  # 8 identities x 2 cameras x 1 visible+infrared pair
    assert cfg.video.sample_method == "sorted_random"
    assert cfg.video.test_sample_method == ""  # each target's own: linspace for BUPTCampus
    assert cfg.bupt_campus.trimmed_test is False
    assert cfg.train == vcm.train and cfg.model == vcm.model and cfg.loss == vcm.loss
    # a cross-dataset run keeps the recipe of its training set
    assert load_config(os.path.join(CONFIGS, "vld_bupt_to_vcm.yaml")).sampler == cfg.sampler
    to_bupt = load_config(os.path.join(CONFIGS, "vld_vcm_to_bupt.yaml"))
    assert to_bupt.sampler == vcm.sampler and to_bupt.video == vcm.video
    assert to_bupt.sampler.train_sampler == "ModalityIdentitySampler"


@pytest.fixture(scope="module")
def bupt_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("recipe") / "BUPTCampus")
    summary = generate_bupt(root, num_ids=30, seed=2, height=32, width=16, min_len=4, max_len=7)
    assert summary["train_ids"] >= 8  # the recipe's 8 identities per batch
    return root


def test_manager_from_bupt_config(bupt_root):
    cfg = load_config(os.path.join(CONFIGS, "vld_bupt.yaml"),
                      opts=["data.root", bupt_root, "data.height", "32", "data.width", "16", "data.workers", "0",
                            "train.iters_per_epoch", "2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = build_datamanager(cfg, verbose=False)
    assert isinstance(dm.train_sampler, CameraModalitySampler)
    assert dm.train_sampler.ids_per_batch == 8 and dm.train_sampler.num_cams == 2
    assert dm.train_loader.dataset.sample_method == "sorted_random"
    assert {dm.test_loader["bupt_campus"][s].dataset.sample_method for s in ("query", "gallery")} == {"linspace"}
    batch = next(iter(dm.train_loader))
    assert batch["modality"].tolist() == [VISIBLE, INFRARED] * 16
    pids, cams = batch["pid"].tolist(), batch["camid"].tolist()
    assert len(set(pids)) == 8 and all(len(set(pids[g:g + 4])) == 1 for g in range(0, 32, 4))
    assert all(cams[g] == cams[g + 1] != cams[g + 2] == cams[g + 3] for g in range(0, 32, 4))


def test_cross_dataset_targets_keep_their_own_test_frames(bupt_root):
    roots = os.path.dirname(bupt_root)  # holds BUPTCampus/ and, written here, HITSZ-VCM/
    generate_vcm(os.path.join(roots, "HITSZ-VCM"), num_ids=24, seed=3, height=32, width=16)
    shared = ["data.height", "32", "data.width", "16", "data.workers", "0", "train.iters_per_epoch", "1"]
    pairs = (("vld_bupt_to_vcm.yaml", "sorted_random"), ("vld_vcm_to_bupt.yaml", "restricted_random"))
    for config, train_method in pairs:
        cfg = load_config(os.path.join(CONFIGS, config), opts=["data.root", roots, "sampler.num_instances", "1",
                                                                  "train.batch_size", "16", *shared])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dm = build_datamanager(cfg, verbose=False)
        assert dm.train_loader.dataset.sample_method == train_method
        methods = {name: dm.test_loader[name]["query"].dataset.sample_method for name in dm.test_loader}
        assert methods == {"bupt_campus": "linspace", "hitsz_vcm": "first_of_chunk"}, config


def test_validation_split_holds_identities_out_of_training(bupt_root):
    cfg = load_config(os.path.join(CONFIGS, "vld_bupt.yaml"),
                      opts=["data.root", bupt_root, "data.height", "32", "data.width", "16", "data.workers", "0",
                            "train.iters_per_epoch", "2", "data.val_ids", "4"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = build_datamanager(cfg, verbose=False, val_ids=0)
        dm = build_datamanager(cfg, verbose=False)
    assert dm.num_train_pids == full.num_train_pids - 4
    assert sorted({t[1] for t in dm.train_set}) == list(range(dm.num_train_pids))  # relabelled, contiguous
    query, gallery = dm.val_loader["query"].dataset.items, dm.val_loader["gallery"].dataset.items
    held = {t[0] for t in query}
    assert len({t[1] for t in query}) == 4 and {t[1] for t in query} == {t[1] for t in gallery}
    assert {t.modality for t in query} == {INFRARED} and {t.modality for t in gallery} == {VISIBLE}
    assert not held & {t[0] for t in dm.train_set}  # no held-out tracklet is trained on
    assert len(query) + len(gallery) + len(dm.train_set) == len(full.train_set)
    assert dm.val_loader["query"].dataset.sample_method == "linspace"
    # the aligned pairs still point at visible/infrared tracklets of one identity
    batch = next(iter(dm.train_loader))
    assert batch["modality"].tolist() == [VISIBLE, INFRARED] * 16 and max(batch["pid"].tolist()) < dm.num_train_pids
