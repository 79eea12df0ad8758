import warnings

import pytest

from vld_plugin.data import CameraModalitySampler, ModalityIdentitySampler, Tracklet
from vld_plugin.modality import INFRARED, VISIBLE


def make_source(num_ids=12, visible_only=(), cams=(0, 1, 2)):
    items = []
    for pid in range(num_ids):
        for cam in cams:
            items.append(Tracklet([f"{pid}v{cam}"], pid, cam, 0, VISIBLE))
            if pid not in visible_only:
                items.append(Tracklet([f"{pid}i{cam}"], pid, cam, 0, INFRARED))
    return items


def batches(sampler, batch_size):
    flat = list(sampler)
    assert len(flat) == len(sampler)
    return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]


def test_p_by_k_pairs_with_matching_identities_and_modalities():
    src = make_source()
    s = ModalityIdentitySampler(src, batch_size=16, num_instances=2, iters_per_epoch=5, seed=0)
    bs = batches(s, 16)
    assert len(bs) == 5
    for b in bs:
        items = [src[i] for i, _ in b]
        assert [t.modality for t in items] == [VISIBLE, INFRARED] * 8
        pids = [t[1] for t in items]
        for p in range(4):  # P = 16 / (2 x 2) = 4 identities, 4 consecutive tracklets each
            assert len(set(pids[4 * p:4 * p + 4])) == 1
        assert len(set(pids)) == 4


def test_deterministic_by_seed_and_epoch_and_auto_advance():
    src = make_source()
    a = ModalityIdentitySampler(src, batch_size=8, num_instances=2, iters_per_epoch=4, seed=5)
    b = ModalityIdentitySampler(src, batch_size=8, num_instances=2, iters_per_epoch=4, seed=5)
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # the next pass is epoch 1
    a.set_epoch(0)
    assert list(a) == first
    c = ModalityIdentitySampler(src, batch_size=8, num_instances=2, iters_per_epoch=4, seed=6)
    assert list(c) != first


def test_distributed_shares_are_disjoint_and_cover_the_global_batch():
    src = make_source(num_ids=20)
    ranks = [ModalityIdentitySampler(src, batch_size=8, num_instances=2, iters_per_epoch=6, seed=1,
                                     num_replicas=3, rank=r) for r in range(3)]
    per_rank = [batches(s, 8) for s in ranks]
    for it in range(6):
        ids = [{src[i][1] for i, _ in per_rank[r][it]} for r in range(3)]
        assert all(len(x) == 2 for x in ids)
        assert len(ids[0] | ids[1] | ids[2]) == 6  # disjoint identities across ranks
    again = ModalityIdentitySampler(src, batch_size=8, num_instances=2, iters_per_epoch=6, seed=1,
                                    num_replicas=3, rank=1)
    assert list(again) == [x for b in per_rank[1] for x in b]


def test_identities_lacking_a_modality_are_excluded_with_one_warning():
    src = make_source(num_ids=10, visible_only=(0, 3, 7))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = ModalityIdentitySampler(src, batch_size=8, num_instances=2, iters_per_epoch=20, seed=0)
    assert len(w) == 1 and "3 training identities" in str(w[0].message)
    assert {src[i][1] for i, _ in s}.isdisjoint({0, 3, 7})


def test_too_few_identities_and_bad_batch_size():
    with pytest.raises(ValueError, match="needs at least 8 eligible identities"):
        ModalityIdentitySampler(make_source(num_ids=5), batch_size=16, num_instances=1, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="multiple of 2 x 4"):
        ModalityIdentitySampler(make_source(), batch_size=12, num_instances=4)


def aligned_source(cams_per_id):
    items, pairs = [], []
    for pid, cams in enumerate(cams_per_id):
        for cam in cams:
            pairs.append((len(items), len(items) + 1))
            items += [Tracklet([f"{pid}v{cam}"], pid, cam, 0, VISIBLE), Tracklet([f"{pid}i{cam}"], pid, cam, 0, INFRARED)]
    return items, pairs


def test_aligned_pairs_share_frame_seeds():
    src, pairs = aligned_source([(0, 1)] * 6)
    s = ModalityIdentitySampler(src, batch_size=8, num_instances=2, iters_per_epoch=3, aligned_pairs=pairs)
    flat = list(s)
    pair_set = set(pairs)
    for (v, sv), (i, si) in zip(flat[::2], flat[1::2]):
        assert (v, i) in pair_set and sv == si


def test_camera_sampler_two_cameras_one_pair_each():
    cams = [(0, 1, 2)] * 5 + [(3,)] * 2 + [(1, 4)] * 3
    src, pairs = aligned_source(cams)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = CameraModalitySampler(src, batch_size=8, num_cams=2, iters_per_epoch=10, seed=0, aligned_pairs=pairs)
    assert len(w) == 1 and "2 training identities seen in fewer than 2 cameras" in str(w[0].message)
    for b in batches(s, 8):
        items = [src[i] for i, _ in b]
        assert [t.modality for t in items] == [VISIBLE, INFRARED] * 4
        for p in range(2):
            group = items[4 * p:4 * p + 4]
            assert len({t[1] for t in group}) == 1 and group[0][1] not in (5, 6)
            assert group[0][2] == group[1][2] and group[2][2] == group[3][2] and group[0][2] != group[2][2]
        seeds = [sd for _, sd in b]
        assert seeds[0::2] == seeds[1::2]
    with pytest.raises(ValueError, match="needs a dataset with aligned"):
        CameraModalitySampler(src, batch_size=8)
