"""Modality-aware identity samplers: every batch holds visible+infrared pairs of the same identity.

Both samplers yield ``(dataset_index, frame_seed)`` tuples (the plugin's datasets accept
them; both tracklets of an aligned pair share the seed, hence the same frame indices), a
fixed ``iters_per_epoch`` batches per epoch. Under torch.distributed every rank draws the
same global batch of ``P * world_size`` distinct identities and keeps its own ``P`` of
them, so shares are disjoint and depend only on (seed, epoch).
"""
import collections
import warnings

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from ..modality import INFRARED, VISIBLE
from .base import modality_of


def _world(num_replicas, rank):
    if num_replicas is None:
        initialised = dist.is_available() and dist.is_initialized()
        num_replicas = dist.get_world_size() if initialised else 1
        rank = dist.get_rank() if initialised else 0
    if not 0 <= (rank or 0) < num_replicas:
        raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
    return num_replicas, rank or 0


class _PairSampler(Sampler):
    """Common machinery: epochs, seeds, ranks, eligibility warnings."""

    def __init__(self, batch_size, group, iters_per_epoch, seed, num_replicas, rank):
        if batch_size % (2 * group) or batch_size < 2 * group:
            raise ValueError(f"batch size {batch_size} must be a multiple of 2 x {group} (tracklets per identity)")
        self.ids_per_batch = batch_size // (2 * group)
        self.batch_size = batch_size
        self.iters_per_epoch = int(iters_per_epoch)
        self.seed = int(seed)
        self.num_replicas, self.rank = _world(num_replicas, rank)
        self.epoch = 0

    def _check_ids(self, eligible, excluded, why):
        if excluded:
            warnings.warn(f"{type(self).__name__}: {excluded} training identities {why} are never sampled")
        self.pids = sorted(eligible)
        need = self.ids_per_batch * self.num_replicas
        if len(self.pids) < need:
            raise ValueError(f"{type(self).__name__} needs at least {need} eligible identities "
                             f"({self.ids_per_batch} per batch x {self.num_replicas} ranks), the data has {len(self.pids)}")

    def set_epoch(self, epoch):
        """Fix the epoch the next pass draws (otherwise each pass advances it by one)."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.iters_per_epoch * self.batch_size

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        p = self.ids_per_batch
        for _ in range(self.iters_per_epoch):
            chosen = rng.choice(len(self.pids), p * self.num_replicas, replace=False)
            groups = [self._draw(self.pids[i], rng) for i in chosen]  # every rank consumes the same draws
            for group in groups[self.rank * p:(self.rank + 1) * p]:
                yield from group


class ModalityIdentitySampler(_PairSampler):
    """P identities x K pairs (one visible + one infrared tracklet each, drawn with replacement).

    ``data_source``: the training Tracklets; ``batch_size`` counts tracklets (2 P K);
    ``num_instances`` is K. An identity with ``aligned_pairs`` ((visible_index,
    infrared_index) list, BUPTCampus) draws aligned pairs sharing a frame seed; others draw
    their visible and infrared tracklets independently. Identities lacking a modality are excluded
    (one warning with their count). Batch order: per identity v, i, v, i, ...
    """

    def __init__(self, data_source, batch_size=32, num_instances=4, iters_per_epoch=200, seed=1,
                 num_replicas=None, rank=None, aligned_pairs=None):
        super().__init__(batch_size, num_instances, iters_per_epoch, seed, num_replicas, rank)
        self.num_instances = num_instances
        by_mod = {VISIBLE: collections.defaultdict(list), INFRARED: collections.defaultdict(list)}
        for idx, item in enumerate(data_source):
            if modality_of(item) in by_mod:
                by_mod[modality_of(item)][item[1]].append(idx)
        self.visible, self.infrared = by_mod[VISIBLE], by_mod[INFRARED]
        self.pairs = collections.defaultdict(list)
        for v, i in aligned_pairs or ():
            self.pairs[data_source[v][1]].append((v, i))
        all_pids = {item[1] for item in data_source}
        eligible = set(self.pairs) | (set(self.visible) & set(self.infrared))
        self._check_ids(eligible, len(all_pids - eligible), "lacking a visible or an infrared tracklet")

    def _draw(self, pid, rng):
        k = self.num_instances
        seeds = rng.integers(0, 2 ** 62, (k, 2))
        if pid in self.pairs:
            pairs = self.pairs[pid]
            chosen = [pairs[j] for j in rng.integers(0, len(pairs), k)]
            seeds[:, 1] = seeds[:, 0]
        else:
            vis, ir = self.visible[pid], self.infrared[pid]
            chosen = zip(rng.choice(vis, k), rng.choice(ir, k))
        out = []
        for (v, i), (sv, si) in zip(chosen, seeds):
            out += [(int(v), int(sv)), (int(i), int(si))]
        return out


class CameraModalitySampler(_PairSampler):
    """BUPTCampus's sampler: P identities x ``num_cams`` cameras x 1 aligned pair.

    Needs ``aligned_pairs``; identities with aligned pairs in fewer than ``num_cams`` cameras
    are excluded (one warning with their count).
    """

    def __init__(self, data_source, batch_size=32, num_cams=2, iters_per_epoch=200, seed=1,
                 num_replicas=None, rank=None, aligned_pairs=None):
        if aligned_pairs is None:
            raise ValueError("CameraModalitySampler needs a dataset with aligned visible+infrared pairs "
                             "(bupt_campus); use ModalityIdentitySampler for hitsz_vcm")
        super().__init__(batch_size, num_cams, iters_per_epoch, seed, num_replicas, rank)
        self.num_cams = num_cams
        self.cams = collections.defaultdict(lambda: collections.defaultdict(list))
        for v, i in aligned_pairs:
            self.cams[data_source[v][1]][data_source[v][2]].append((v, i))
        all_pids = {item[1] for item in data_source}
        eligible = {pid for pid, cams in self.cams.items() if len(cams) >= num_cams}
        self._check_ids(eligible, len(all_pids - eligible), f"seen in fewer than {num_cams} cameras")

    def _draw(self, pid, rng):
        cams = self.cams[pid]
        keys = sorted(cams)
        out = []
        for c in rng.choice(len(keys), self.num_cams, replace=False):
            pairs = cams[keys[c]]
            v, i = pairs[int(rng.integers(0, len(pairs)))]
            seed = int(rng.integers(0, 2 ** 62))
            out += [(int(v), seed), (int(i), seed)]
        return out


SAMPLERS = {"ModalityIdentitySampler": ModalityIdentitySampler, "CameraModalitySampler": CameraModalitySampler}
