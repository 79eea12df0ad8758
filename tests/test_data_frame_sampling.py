import numpy as np
import pytest

from vld_plugin.data import frame_sampling as sampling


def test_chunk_table_pads_with_last_index():
    assert sampling.chunks(13, 6).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 12, 12], [12, 12, 12]]
    assert sampling.chunks(4, 6).tolist() == [[0], [1], [2], [3], [3], [3]]


@pytest.mark.parametrize("n,expected", [(24, [0, 4, 8, 12, 16, 20]), (13, [0, 3, 6, 9, 12, 12]),
                                        (4, [0, 1, 2, 3, 3, 3]), (6, [0, 1, 2, 3, 4, 5]), (7, [0, 2, 4, 6, 6, 6])])
def test_first_of_chunk(n, expected):
    assert sampling.first_of_chunk(n, 6).tolist() == expected


def test_restricted_random_takes_one_frame_per_chunk_and_covers_each_chunk():
    rng = np.random.default_rng(0)
    draws = np.stack([sampling.restricted_random(24, 6, rng) for _ in range(400)])
    assert draws.shape == (400, 6)
    for k in range(6):
        assert set(draws[:, k].tolist()) == {4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3}
    short = np.stack([sampling.restricted_random(4, 6, rng) for _ in range(20)])
    assert (short == [0, 1, 2, 3, 3, 3]).all()


def test_bupt_linspace_and_sorted_random():
    assert sampling.linspace(10, 6).tolist() == [0, 1, 3, 5, 6, 8]
    assert sampling.linspace(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    rng = np.random.default_rng(1)
    for _ in range(50):
        long = sampling.sorted_random(20, 6, rng)
        assert len(set(long.tolist())) == 6 and (np.diff(long) > 0).all() and long.max() < 20
        short = sampling.sorted_random(4, 6, rng)
        assert len(short) == 6 and (np.diff(short) >= 0).all() and short.max() <= 3


def test_torchreid_methods():
    assert sampling.evenly(14, 6).tolist() == [0, 2, 4, 6, 8, 10]
    assert sampling.evenly(4, 6).tolist() == [0, 1, 2, 3, 3, 3]
    assert sampling.all_frames(5).tolist() == [0, 1, 2, 3, 4]
    rng = np.random.default_rng(2)
    r = sampling.sample_indices("random", 30, 6, rng)
    assert len(set(r.tolist())) == 6 and (np.diff(r) > 0).all()


def test_unknown_method_and_empty_tracklet():
    with pytest.raises(ValueError, match="unknown frame sample method 'chunky'"):
        sampling.sample_indices("chunky", 10, 6, None)
    with pytest.raises(ValueError, match="empty tracklet"):
        sampling.first_of_chunk(0, 6)
