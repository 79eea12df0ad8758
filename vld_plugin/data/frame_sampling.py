"""Which frames of a tracklet to load: one function per sampling method.

Every function takes the tracklet length ``n`` and the sequence length ``seq_len`` and
returns an int64 array of frame indices (``seq_len`` of them, except ``all``); the random
ones take a ``numpy.random.Generator``.
"""
import math

import numpy as np

from ..errors import ConfigError, DataError


def chunks(n, seq_len):
    """The (seq_len, c) chunk table of HITSZ-VCM sampling: c = ceil(n / seq_len) (at least 1);
    the index list is padded with the last index to c * seq_len and cut into seq_len chunks."""
    if n < 1:
        raise DataError("cannot sample frames from an empty tracklet")
    c = max(1, math.ceil(n / seq_len))
    idx = np.arange(c * seq_len, dtype=np.int64)
    return np.minimum(idx, n - 1).reshape(seq_len, c)


def restricted_random(n, seq_len, rng):
    """Train sampling of the VLD/VCM code: one random frame from each of the seq_len chunks."""
    table = chunks(n, seq_len)
    return table[np.arange(seq_len), rng.integers(0, table.shape[1], seq_len)]


def first_of_chunk(n, seq_len, rng=None):
    """Test sampling of the VLD/VCM code: the first frame of each chunk."""
    return chunks(n, seq_len)[:, 0].copy()


def sorted_random(n, seq_len, rng):
    """BUPTCampus train sampling: a sorted random choice (with replacement only if n < seq_len)."""
    return np.sort(rng.choice(n, seq_len, replace=n < seq_len)).astype(np.int64)


def linspace(n, seq_len, rng=None):
    """BUPTCampus test sampling: ``linspace(0, n, seq_len, endpoint=False)`` as ints."""
    return np.linspace(0, n, seq_len, endpoint=False).astype(np.int64)


def evenly(n, seq_len, rng=None):
    """torchreid's ``evenly``: a stride over the largest multiple of seq_len, or pad with the last."""
    if n >= seq_len:
        m = n - n % seq_len
        return np.arange(0, m, m / seq_len).astype(np.int64)
    return np.concatenate([np.arange(n), np.full(seq_len - n, n - 1)]).astype(np.int64)


def all_frames(n, seq_len=None, rng=None):
    """torchreid's ``all``: every frame (test batch size must then be 1)."""
    return np.arange(n, dtype=np.int64)


METHODS = {
    "restricted_random": restricted_random,
    "first_of_chunk": first_of_chunk,
    "sorted_random": sorted_random,
    "linspace": linspace,
    "random": sorted_random,  # torchreid's 'random' is the same sorted random choice
    "evenly": evenly,
    "all": all_frames,
}

# the deterministic counterpart of a random train method of the method's own
TEST_COUNTERPART = {"restricted_random": "first_of_chunk", "sorted_random": "linspace"}


def check_method(method):
    """Raise a one-line ValueError for an unknown sampling method name."""
    if method not in METHODS:
        raise ConfigError(f"unknown frame sample method '{method}'; choose one of {sorted(METHODS)}")
    return method


def sample_indices(method, n, seq_len, rng):
    """Frame indices of a length-``n`` tracklet by ``method`` (a key of ``METHODS``)."""
    return METHODS[check_method(method)](n, seq_len, rng)


def eval_sample_method(train_method, dataset_method=None, override=""):
    """The frame sampling at test time, the one rule every loader and the feature extractor follow.

    ``override`` (``video.test_sample_method``) when given; after a random train method of the
    method's own (restricted_random, sorted_random) the dataset's protocol method ``dataset_method``
    (HITSZ-VCM first_of_chunk, BUPTCampus linspace; also in cross-dataset runs), or without a dataset
    the train method's deterministic counterpart; otherwise (torchreid's random, evenly, all) the
    train method itself, as torchreid tests.
    """
    if override:
        return check_method(override)
    if train_method in TEST_COUNTERPART:
        return check_method(dataset_method or TEST_COUNTERPART[train_method])
    return check_method(train_method)
