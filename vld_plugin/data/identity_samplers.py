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
from torch.utils.data import Sampler

from ..distributed import rank_and_world
from ..errors import EngineConfigError
from ..modality import INFRARED, VISIBLE, modality_of


def _world(num_replicas, rank):
    """``(num_replicas, rank)``, from the process group when ``num_replicas`` is None."""
    if num_replicas is None:
        rank, num_replicas = rank_and_world()
    if not 0 <= (rank or 0) < num_replicas:
        raise EngineConfigError(f"rank {rank} is outside 0..{num_replicas - 1}")
    return num_replicas, rank or 0


class _PairSampler(Sampler):
    """Common machinery: epochs, seeds, ranks, eligibility warnings; subclasses define
    ``_global_batches(epoch)``, the epoch's batches of ``P * world_size`` identity groups."""

    def __init__(self, batch_size, group, iters_per_epoch, seed, num_replicas, rank):
        if batch_size % (2 * group) or batch_size < 2 * group:
            raise EngineConfigError(f"batch size {batch_size} must be a multiple of 2 x {group} "
                                    "(tracklets per identity)")
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
            raise EngineConfigError(f"{type(self).__name__} needs at least {need} eligible identities "
                                    f"({self.ids_per_batch} per batch x {self.num_replicas} ranks), "
                                    f"the data has {len(self.pids)}")

    def set_epoch(self, epoch):
        """Fix the epoch the next iteration yields (otherwise each iteration advances it by one)."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.iters_per_epoch * self.batch_size

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        p = self.ids_per_batch
        for groups in self._global_batches(epoch):  # every rank computes the same global batches
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

    def _global_batches(self, epoch):
        """``iters_per_epoch`` global batches, each ``P * world_size`` groups drawn with replacement."""
        rng = np.random.default_rng([self.seed, epoch])
        for _ in range(self.iters_per_epoch):
            chosen = rng.choice(len(self.pids), self.ids_per_batch * self.num_replicas, replace=False)
            yield [self._draw(self.pids[i], rng) for i in chosen]

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
    """BUPTCampus's sampler (the dataset authors'): P identities x ``num_cams`` cameras x 1 aligned pair.

    Needs ``aligned_pairs``; identities with aligned pairs in fewer than ``num_cams`` cameras
    are excluded (one warning with their count). Works in passes without replacement: a pass
    cuts each identity's pairs into groups of ``num_cams`` pairs from distinct random cameras
    (each pair at most once), then each global batch takes ``P * world_size`` random
    identities that still have a group and pops the first group of each, until fewer than
    that many remain (leftover groups are dropped). Batches stream from pass to pass across
    epochs: epoch ``e`` is batches ``e * iters_per_epoch`` onwards of the stream, pass ``k``
    being drawn from seed (``seed``, ``k``).
    """

    def __init__(self, data_source, batch_size=32, num_cams=2, iters_per_epoch=200, seed=1,
                 num_replicas=None, rank=None, aligned_pairs=None):
        if aligned_pairs is None:
            raise EngineConfigError("CameraModalitySampler needs a dataset with aligned visible+infrared pairs "
                             "(bupt_campus); use ModalityIdentitySampler for hitsz_vcm")
        super().__init__(batch_size, num_cams, iters_per_epoch, seed, num_replicas, rank)
        self.num_cams = num_cams
        self.cams = collections.defaultdict(lambda: collections.defaultdict(list))
        for v, i in aligned_pairs:
            self.cams[data_source[v][1]][data_source[v][2]].append((v, i))
        all_pids = {item[1] for item in data_source}
        eligible = {pid for pid, cams in self.cams.items() if len(cams) >= num_cams}
        self._check_ids(eligible, len(all_pids - eligible), f"seen in fewer than {num_cams} cameras")
        self._pass_lengths = []  # batches in passes 0, 1, ... (found by drawing them)
        self._last_pass = (None, None)

    def _groups(self, pid, rng):
        """One pass's groups of ``pid``, in creation order."""
        unused = [[self.cams[pid][c][j] for j in rng.permutation(len(self.cams[pid][c]))]
                  for c in sorted(self.cams[pid])]
        groups = collections.deque()
        while True:
            available = [c for c, pairs in enumerate(unused) if pairs]
            if len(available) < self.num_cams:
                return groups
            group = []
            for c in rng.choice(available, self.num_cams, replace=False):
                v, i = unused[c].pop()
                seed = int(rng.integers(0, 2 ** 62))
                group += [(int(v), seed), (int(i), seed)]
            groups.append(group)

    def _pass(self, k):
        """The global batches of pass ``k``."""
        if self._last_pass[0] == k:
            return self._last_pass[1]
        rng = np.random.default_rng([self.seed, k])
        groups = {pid: self._groups(pid, rng) for pid in self.pids}
        active, need, batches = list(self.pids), self.ids_per_batch * self.num_replicas, []
        while len(active) >= need:
            batches.append([groups[active[j]].popleft() for j in rng.choice(len(active), need, replace=False)])
            active = [pid for pid in active if groups[pid]]
        if k == len(self._pass_lengths):
            self._pass_lengths.append(len(batches))
        self._last_pass = (k, batches)
        return batches

    def _length(self, k):
        """The number of global batches in pass ``k`` (drawing the passes not measured yet)."""
        while len(self._pass_lengths) <= k:
            self._pass(len(self._pass_lengths))
        return self._pass_lengths[k]

    def _global_batches(self, epoch):
        start, k = epoch * self.iters_per_epoch, 0
        while start >= self._length(k):
            start, k = start - self._length(k), k + 1
        left = self.iters_per_epoch
        while left:
            batches = self._pass(k)[start:start + left]
            yield from batches
            left, start, k = left - len(batches), 0, k + 1


SAMPLERS = {"ModalityIdentitySampler": ModalityIdentitySampler, "CameraModalitySampler": CameraModalitySampler}
