"""Small stand-ins for the data manager, the VLD model and the evaluation, following the plugin's contracts.

Synthetic tracklets: each identity has a random signature vector; a frame is the signature
plus a large modality-specific offset and noise, so raw features rank across modalities at
about chance while a trained model aligns the modalities.
"""
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vld_plugin.modality import Protocol

T, H, W = 3, 4, 2
DIM = 3 * H * W
PROTOCOLS = [Protocol("infrared-to-visible", "query", 1, "gallery", 0),
             Protocol("visible-to-infrared", "gallery", 0, "query", 1)]


class TinyVideoModel(nn.Module):
    """(B, T, 3, H, W) -> the contract's train dict / a (B, 2 * width) eval feature."""

    def __init__(self, num_classes, width=16, bnneck=False):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(DIM, 32), nn.ReLU(), nn.Linear(32, width))
        self.pre = nn.Linear(DIM, width)
        self.proj = nn.Linear(width, 8, bias=False)
        self.sta = nn.Linear(width, width)
        self.prompt_learner = nn.Module()
        self.prompt_learner.ctx = nn.Parameter(torch.randn(num_classes, 8) * 0.1)
        self.bnneck = nn.BatchNorm1d(width) if bnneck else nn.Identity()
        self.classifier = nn.Linear(width, num_classes, bias=False)
        self.classifier_proj = nn.Linear(8, num_classes, bias=False)
        self.classifier_sta = nn.Linear(width, num_classes, bias=False)

    def forward(self, x):
        frames = x.flatten(2)  # (B, T, DIM)
        cls = self.frame(frames).mean(1)
        sta = self.sta(self.frame(frames)).mean(1)
        if not self.training:
            return torch.cat([cls, sta], 1)
        proj = self.proj(cls)
        return {
            "feat_pre": self.pre(frames).mean(1), "feat_cls": cls, "feat_proj": proj, "feat_sta": sta,
            "logits_cls": self.classifier(self.bnneck(cls)), "logits_proj": self.classifier_proj(proj),
            "logits_text": proj @ self.prompt_learner.ctx.t(), "logits_sta": self.classifier_sta(sta),
        }


class Tracklets(Dataset):
    """Items (pid, modality, camid); frames = signature[pid] + offset[modality] + noise."""

    def __init__(self, items, signatures, offsets, augment):
        self.items, self.signatures, self.offsets, self.augment = items, signatures, offsets, augment

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        pid, modality, camid, k = self.items[i]
        g = torch.Generator().manual_seed(1000 * pid + 10 * k + modality)
        frames = self.signatures[pid] + self.offsets[modality] + 0.15 * torch.randn(T, DIM, generator=g)
        if self.augment:  # draws from the global RNG, so resuming must restore it
            frames = frames + 0.1 * torch.randn(T, DIM)
        return {"img": frames.view(T, 3, H, W), "pid": pid, "camid": camid, "dsetid": 0, "modality": modality}


class PairSampler:
    """Batches of ``p`` identities x ``k`` visible+infrared pairs, deterministic by seed and epoch.

    Under ``rank``/``world`` each rank takes its contiguous share of every global batch.
    """

    def __init__(self, num_ids, per_id, p, k, iters, seed=0, rank=0, world=1):
        self.num_ids, self.per_id, self.p, self.k, self.iters = num_ids, per_id, p, k, iters
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.iters

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        for _ in range(self.iters):
            batch = []
            for pid in torch.randperm(self.num_ids, generator=g)[: self.p].tolist():
                for _ in range(self.k):
                    k = torch.randint(self.per_id, (1,), generator=g).item()
                    base = (pid * self.per_id + k) * 2
                    batch += [base, base + 1]  # visible, infrared
            share = len(batch) // self.world
            yield batch[self.rank * share:(self.rank + 1) * share]


class FakeDataManager:
    """Train loader of paired batches and test loaders with both cross-modal protocols."""

    def __init__(self, num_train=16, num_test=8, per_id=3, p=4, k=2, iters=4, seed=0, augment=True,
                 rank=0, world=1, targets=("fake",), num_val=0):
        g = torch.Generator().manual_seed(seed)
        signatures = torch.randn(num_train + num_test + num_val, DIM, generator=g)
        offsets = 3.0 * torch.randn(2, DIM, generator=g)
        train = [(pid, m, 0, k) for pid in range(num_train) for k in range(per_id) for m in (0, 1)]
        train_set = Tracklets(train, signatures, offsets, augment)
        sampler = PairSampler(num_train, per_id, p, k, iters, seed, rank, world)
        self.train_loader = DataLoader(train_set, batch_sampler=sampler)
        test_pids = range(num_train, num_train + num_test)
        query = Tracklets([(pid, 1, 1, 0) for pid in test_pids], signatures, offsets, False)
        gallery = Tracklets([(pid, 0, 2, 0) for pid in test_pids], signatures, offsets, False)
        self.test_loader = {t: {"query": DataLoader(query, batch_size=3), "gallery": DataLoader(gallery, batch_size=3)}
                            for t in targets}
        self.val_loader = None
        if num_val:  # held-out identities after the test ones: infrared query in camera 1, visible gallery in 2
            val_pids = range(num_train + num_test, num_train + num_test + num_val)
            self.val_loader = {
                "query": DataLoader(Tracklets([(pid, 1, 1, 0) for pid in val_pids], signatures, offsets, False),
                                    batch_size=3),
                "gallery": DataLoader(Tracklets([(pid, 0, 2, 0) for pid in val_pids], signatures, offsets, False),
                                      batch_size=3)}
        self.num_train_pids = num_train
        self.sources, self.targets = ["fake"], list(targets)

    def protocols(self, name):
        return PROTOCOLS

    def remove_same_camera(self, name):
        return False


def torchreid_engine_rank1(engine, datamanager, dist_metric="euclidean", name="hitsz_vcm"):
    """Rank-1 of a torchreid video engine's model on ``name``, computed apart from ``engine.test``: its
    own hooks extract query and gallery features (average pooling over frames), torchreid's distance
    and the plugin's ``evaluate_rank`` (same-identity same-camera gallery items dropped) rank them."""
    import numpy as np

    from vld_plugin import compat
    from vld_plugin.evaluation import evaluate_rank

    engine.set_model_mode("eval")
    splits = {}
    for split in ("query", "gallery"):
        feats, pids, camids = [], [], []
        for data in datamanager.test_loader[name][split]:
            imgs, p, c = engine.parse_data_for_eval(data)
            with torch.no_grad():
                feats.append(engine.extract_features(imgs))
            pids += p.tolist()
            camids += c.tolist()
        splits[split] = torch.cat(feats), np.array(pids), np.array(camids)
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = splits["query"], splits["gallery"]
    distmat = compat.metrics.compute_distance_matrix(qf, gf, dist_metric).numpy()
    cmc, _, _ = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    return float(cmc[0])
