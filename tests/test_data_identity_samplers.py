import collections
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
    """Tracklets and aligned pairs: identity ``pid`` has one pair per entry of ``cams_per_id[pid]``
    (a camera repeated n times has n pairs)."""
    items, pairs = [], []
    for pid, cams in enumerate(cams_per_id):
        for cam in cams:
            pairs.append((len(items), len(items) + 1))
            items += [Tracklet([f"{pid}v{cam}"], pid, cam, 0, VISIBLE),
                      Tracklet([f"{pid}i{cam}"], pid, cam, 0, INFRARED)]
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


def camera_sampler(src, pairs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CameraModalitySampler(src, aligned_pairs=pairs, **kw)


def global_batches(flat, src, pairs, num_ids, num_cams=2):
    """Check the layout of ``flat`` (identity after identity, camera after camera, visible then
    infrared of one aligned pair sharing a seed) and return its batches as lists of (pid, pair) groups."""
    pair_set, per_batch = set(pairs), num_ids * num_cams * 2
    out = []
    for b in range(0, len(flat), per_batch):
        groups = []
        for g in range(b, b + per_batch, 2 * num_cams):
            group = [(flat[j][0], flat[j + 1][0]) for j in range(g, g + 2 * num_cams, 2)]
            assert all(flat[j][1] == flat[j + 1][1] for j in range(g, g + 2 * num_cams, 2))  # shared seed
            assert all(p in pair_set for p in group)
            assert len({src[v][1] for v, _ in group}) == 1  # one identity
            assert len({src[v][2] for v, _ in group}) == num_cams  # distinct cameras
            groups.append((src[group[0][0]][1], group))
        assert len({pid for pid, _ in groups}) == num_ids  # distinct identities
        out.append(groups)
    return out


# 20 identities with 2-4 cameras and 1-3 pairs per camera
MANY = [tuple(c for c in range(2 + pid % 3) for _ in range(1 + (pid + c) % 3)) for pid in range(20)]


def test_camera_sampler_pass_uses_each_pair_once_in_released_batches():
    src, pairs = aligned_source(MANY)
    probe = camera_sampler(src, pairs, batch_size=32, seed=3)
    length = probe._length(0)
    assert 4 <= length < len(pairs) // 16  # not every pair fits: the pass is shorter than the data
    s = camera_sampler(src, pairs, batch_size=32, iters_per_epoch=length, seed=3)
    pass0 = global_batches(list(s), src, pairs, num_ids=8)
    assert len(pass0) == length
    used = [p for batch in pass0 for _, group in batch for p in group]
    assert len(used) == 16 * length and len(set(used)) == len(used)  # no pair twice within a pass
    nxt = [p for batch in global_batches(list(s), src, pairs, num_ids=8) for _, group in batch for p in group]
    assert set(nxt) & set(used)  # the next pass draws from all pairs again


# cameras of each identity: (1, 1) pairs -> 1 group per pass; (2, 2) -> 2; (3, 1) -> 1; (1, 1, 1) -> 1
# (the third camera is alone once two are used); (3, 3) -> 3; one camera -> never; (3, 1, 1) -> 1 or 2
HAND = [(0, 1), (0, 0, 1, 1), (0, 0, 0, 1), (2, 2, 3, 3), (4, 4, 4, 4), (0, 1, 2), (1, 1, 1, 5, 5, 5), (0, 0, 0, 1, 2)]
GROUPS = {0: 1, 1: 2, 2: 1, 3: 2, 5: 1, 6: 3}


def test_camera_sampler_pass_structure_on_hand_made_identities():
    src, pairs = aligned_source(HAND)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        s = CameraModalitySampler(src, batch_size=8, seed=0, aligned_pairs=pairs)
    assert len(w) == 1 and "1 training identities seen in fewer than 2 cameras" in str(w[0].message)
    counts_of_7 = collections.Counter()
    for k in range(60):
        flat = [x for batch in s._pass(k) for group in batch for x in group]
        batches = global_batches(flat, src, pairs, num_ids=2)
        assert len({i for i, _ in flat}) == len(flat)  # no tracklet (so no pair) twice within the pass
        counts = collections.Counter(pid for batch in batches for pid, _ in batch)
        assert 4 not in counts  # one camera: never drawn
        # the pass ends when fewer than P = 2 identities have groups left: at most one is short
        short = [pid for pid, n in GROUPS.items() if counts[pid] != n]
        assert len(short) <= 1 and all(counts[pid] < GROUPS[pid] for pid in short)
        assert counts[7] <= 2
        counts_of_7[counts[7]] += 1
        if counts[7] == 2:  # two groups of (3, 1, 1) both use the camera with 3 pairs
            cams = [{src[v][2] for v, _ in group} for batch in batches for pid, group in batch if pid == 7]
            assert sorted(map(sorted, cams)) == [[0, 1], [0, 2]]
    assert counts_of_7[1] > 0 and counts_of_7[2] > 0


def tracklets(batches):
    return [i for b in batches for i, _ in b]


def test_camera_sampler_passes_run_across_epoch_boundaries():
    src, pairs = aligned_source(MANY)
    length = camera_sampler(src, pairs, batch_size=8, seed=2)._length(0)
    assert 20 < length < 30 and length % 10  # the first pass ends inside epoch 2
    s = camera_sampler(src, pairs, batch_size=8, iters_per_epoch=10, seed=2)
    epochs = [batches(s, 8) for _ in range(3)]
    stream = epochs[0] + epochs[1] + epochs[2]
    pass0 = tracklets(stream[:length])
    assert len(set(pass0)) == len(pass0)  # epochs 0, 1 and the start of 2 share one pass
    assert set(tracklets(stream[length:])) & set(pass0)  # then a new pass reuses the pairs
    # epochs are consecutive slices of one stream of batches, whatever iters_per_epoch is
    one = camera_sampler(src, pairs, batch_size=8, iters_per_epoch=1, seed=2)
    assert [batches(one, 8)[0] for _ in range(30)] == stream


def test_camera_sampler_set_epoch_reproduces_batches_in_a_fresh_sampler():
    src, pairs = aligned_source(MANY)
    s = camera_sampler(src, pairs, batch_size=8, iters_per_epoch=7, seed=4)
    epochs = [list(s) for _ in range(8)]  # 56 batches: two passes and part of a third
    fresh = camera_sampler(src, pairs, batch_size=8, iters_per_epoch=7, seed=4)
    fresh.set_epoch(6)
    assert list(fresh) == epochs[6]
    assert list(fresh) == epochs[7]  # without set_epoch, the next epoch
    fresh.set_epoch(2)
    assert list(fresh) == epochs[2]
    other = camera_sampler(src, pairs, batch_size=8, iters_per_epoch=7, seed=5)
    assert list(other) != epochs[0]


def test_camera_sampler_ranks_split_the_global_batch():
    src, pairs = aligned_source(MANY)
    single = camera_sampler(src, pairs, batch_size=16, iters_per_epoch=9, seed=1, num_replicas=1, rank=0)
    ranks = [camera_sampler(src, pairs, batch_size=8, iters_per_epoch=9, seed=1, num_replicas=2, rank=r)
             for r in range(2)]
    for epoch in range(3):  # 27 global batches of 4 identities: more than one pass
        whole = global_batches(list(single), src, pairs, num_ids=4)
        shares = [global_batches(list(s), src, pairs, num_ids=2) for s in ranks]
        for it, batch in enumerate(whole):
            assert shares[0][it] + shares[1][it] == batch  # rank r keeps identities 2r, 2r + 1
            assert {pid for pid, _ in shares[0][it]}.isdisjoint(pid for pid, _ in shares[1][it])


def test_camera_sampler_too_few_identities():
    src, pairs = aligned_source([(0, 1)] * 3 + [(2,)] * 5)
    with pytest.raises(ValueError) as e:
        camera_sampler(src, pairs, batch_size=8, num_replicas=2, rank=1)
    assert str(e.value) == ("CameraModalitySampler needs at least 4 eligible identities "
                            "(2 per batch x 2 ranks), the data has 3")
    assert len(list(camera_sampler(src, pairs, batch_size=8, iters_per_epoch=3))) == 24
