"""A validation split carved from the training identities, for model selection without the test set.

The released code keeps the epoch with the best TEST-set Rank-1; ``data.val_ids N`` instead
holds N training identities out of training and evaluates them cross-modally after every
evaluation epoch (query = their infrared tracklets, gallery = their visible ones, and the
swapped protocol), so the best epoch is picked on data the test never sees.
"""
import numpy as np

from ..errors import ValidationSplitError
from ..modality import INFRARED, VISIBLE, Protocol, modality_of

# query split = the held-out infrared tracklets, gallery split = the held-out visible ones
VAL_PROTOCOLS = [
    Protocol("infrared-to-visible", "query", INFRARED, "gallery", VISIBLE),
    Protocol("visible-to-infrared", "gallery", VISIBLE, "query", INFRARED),
]


def carve_validation(train, pairs, num_ids, seed):
    """Hold ``num_ids`` identities (drawn with ``seed`` among those with both modalities) out of ``train``.

    ``train``: training Tracklets (pids 0..N-1); ``pairs``: (visible index, infrared index)
    aligned pairs into ``train``. Returns ``(train, pairs, query, gallery)``: the remaining
    tracklets relabelled 0..N-num_ids-1 with their pairs re-indexed, and the held-out
    infrared (query) and visible (gallery) tracklets with their original pids.
    """
    pids = sorted({t[1] for t in train})
    by_modality = {m: {t[1] for t in train if modality_of(t) == m} for m in (VISIBLE, INFRARED)}
    eligible = sorted(by_modality[VISIBLE] & by_modality[INFRARED])
    if not 0 < num_ids < len(pids) or num_ids > len(eligible):
        raise ValidationSplitError(f"data.val_ids {num_ids} must be between 1 and {min(len(eligible), len(pids) - 1)} "
                         f"(the training set has {len(pids)} identities, {len(eligible)} with both modalities)")
    held = {int(p) for p in np.random.default_rng(seed).choice(eligible, num_ids, replace=False)}
    label = {pid: i for i, pid in enumerate(p for p in pids if p not in held)}
    kept, new_index = [], {}
    for i, t in enumerate(train):
        if t[1] not in held:
            new_index[i] = len(kept)
            kept.append(t.replace(pid=label[t[1]]))
    kept_pairs = [(new_index[v], new_index[i]) for v, i in pairs if v in new_index]
    query = [t for t in train if t[1] in held and modality_of(t) == INFRARED]
    gallery = [t for t in train if t[1] in held and modality_of(t) == VISIBLE]
    return kept, kept_pairs, query, gallery
