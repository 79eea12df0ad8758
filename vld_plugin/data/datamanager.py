"""The plugin's data manager: torchreid's VideoDataManager interface with paired-modality batches."""
import torch

from .. import compat
from ..errors import ConfigError
from .base import TrackletView, VLDVideoDataset
from .frame_sampling import check_method, eval_sample_method
from .identity_samplers import SAMPLERS
from .transforms import ERASE_FILL, TrackletTransform, channel_augment, normalize, random_erase
from .validation import carve_validation


class VLDDataManager(compat.import_module("data.datamanager").VideoDataManager):
    """Train/test loaders for the plugin's modality-aware datasets (``hitsz_vcm``, ``bupt_campus``).

    Takes torchreid's VideoDataManager arguments plus the extras below (``config.videodata_kwargs``
    translates a config). ``dataset_options``: ``{dataset name: keyword arguments}`` given to
    that dataset only (``hitsz_vcm``: ``min_seq_len``; ``bupt_campus``: ``auxiliary``,
    ``auxiliary_ir``, ``trimmed_test``). Train batches: P identities x K visible+infrared
    pairs (``train_sampler`` 'ModalityIdentitySampler' or 'CameraModalitySampler'),
    ``iters_per_epoch`` of them per epoch. Test loaders per target: ``query`` and
    ``gallery``; ``protocols(name)`` says which to pair. With ``val_ids`` > 0 that many
    training identities are held out: ``val_loader`` (``query`` = their infrared tracklets,
    ``gallery`` = their visible ones, evaluated with ``validation.VAL_PROTOCOLS``), else None.
    Loaders return ``img`` as uint8 (B, T, 3, H, W): call :meth:`prepare_batch` to get float
    normalised (and, in training, randomly erased and channel-augmented) images on the device.
    """

    def __init__(self, root="", sources=None, targets=None, height=288, width=144,
                 transforms=("random_crop", "random_flip", "random_erase"), norm_mean=None, norm_std=None,
                 use_gpu=None, split_id=0, combineall=False, batch_size_train=32, batch_size_test=64, workers=4,
                 num_instances=4, num_cams=2, train_sampler="ModalityIdentitySampler", seq_len=6,
                 sample_method="restricted_random", test_sample_method=None, iters_per_epoch=200, seed=1,
                 consistent_geometry=False, modality_augment=True, dataset_options=None, val_ids=0,
                 num_replicas=None, rank=None, verbose=True):
        if not sources:
            raise ConfigError("sources must name at least one dataset (e.g. 'hitsz_vcm')")
        self.sources = [sources] if isinstance(sources, str) else list(sources)
        targets = targets or self.sources
        self.targets = [targets] if isinstance(targets, str) else list(targets)
        self.height, self.width = height, width
        self.use_gpu = torch.cuda.is_available() if use_gpu is None else bool(use_gpu and torch.cuda.is_available())
        transforms = [transforms] if isinstance(transforms, str) else [t.lower() for t in (transforms or [])]
        self.norm_mean = list(norm_mean or [0.485, 0.456, 0.406])
        self.norm_std = list(norm_std or [0.229, 0.224, 0.225])
        self.random_erase = "random_erase" in transforms
        self.consistent_geometry = consistent_geometry
        self.modality_augment = modality_augment
        self.transform_tr = TrackletTransform(
            height, width, train=True, crop="random_crop" in transforms, flip="random_flip" in transforms,
            consistent_geometry=consistent_geometry)
        self.transform_te = TrackletTransform(height, width, train=False)
        check_method(sample_method)
        if test_sample_method:
            check_method(test_sample_method)
        options = dataset_options or {}
        datasets = {name: self._build(name, root, combineall, split_id, seq_len, sample_method,
                                      options.get(name, {}), verbose)
                    for name in dict.fromkeys(self.sources + self.targets)}

        train, pairs, offset = [], [], 0
        for dsetid, name in enumerate(self.sources):
            ds = datasets[name]
            base = len(train)
            train += [t.replace(pid=t[1] + offset, dsetid=dsetid) for t in ds.train]
            pairs += [(v + base, i + base) for v, i in (ds.train_pairs or [])]
            offset += ds.num_train_pids
        test_methods = {name: eval_sample_method(sample_method, ds.test_sample_method, test_sample_method)
                        for name, ds in datasets.items()}
        self.val_loader = None
        if val_ids:
            test_method = test_methods[self.sources[0]]
            train, pairs, val_query, val_gallery = carve_validation(train, pairs, val_ids, seed)
            offset -= val_ids
            self.val_dataset = {"query": val_query, "gallery": val_gallery}
            self.val_loader = {
                split: self._loader(TrackletView(items, seq_len, test_method, self.transform_te),
                                    batch_size_test, workers, shuffle=False, drop_last=False)
                for split, items in self.val_dataset.items()}
        self.train_set = train
        self._num_train_pids = offset
        self._num_train_cams = len({(t[3], t[2]) for t in train})
        if train_sampler not in SAMPLERS:
            raise ConfigError(f"unknown train_sampler '{train_sampler}'; choose one of {sorted(SAMPLERS)}")
        if train_sampler == "ModalityIdentitySampler":
            group = dict(num_instances=num_instances)
        else:
            group = dict(num_cams=num_cams)
        self.train_sampler = SAMPLERS[train_sampler](
            train, batch_size=batch_size_train, iters_per_epoch=iters_per_epoch, seed=seed,
            num_replicas=num_replicas, rank=rank, aligned_pairs=pairs or None, **group)
        self.train_loader = self._loader(TrackletView(train, seq_len, sample_method, self.transform_tr),
                                         batch_size_train, workers, sampler=self.train_sampler, drop_last=True,
                                         persistent_workers=workers > 0,
                                         generator=torch.Generator().manual_seed(seed))

        self.test_loader, self.test_dataset, self._targets = {}, {}, {}
        for name in self.targets:
            ds = datasets[name]
            self._targets[name] = ds
            self.test_dataset[name] = {"query": ds.query, "gallery": ds.gallery}
            self.test_loader[name] = {
                split: self._loader(TrackletView(items, seq_len, test_methods[name], self.transform_te),
                                    batch_size_test, workers, shuffle=False, drop_last=False)
                for split, items in self.test_dataset[name].items()}
        if verbose:
            held = f", {val_ids} ids held out for validation" if val_ids else ""
            print(f"=> VLDDataManager: sources {self.sources} "
                  f"({self._num_train_pids} ids, {len(train)} tracklets{held}), "
                  f"targets {self.targets}, sampler {train_sampler}, frames {sample_method} (train) / "
                  f"{', '.join(test_methods[t] for t in self.targets)} (test) x {seq_len}")

    def _build(self, name, root, combineall, split_id, seq_len, sample_method, options, verbose):
        factory = compat.video_dataset_factory()
        cls = factory.get(name)
        if cls is None or not issubclass(cls, VLDVideoDataset):
            raise ConfigError(f"VLDDataManager needs a modality-aware dataset (hitsz_vcm, bupt_campus), got '{name}'; "
                             "use torchreid's VideoDataManager for other datasets")
        return cls(root=root, mode="train", transform=self.transform_te, combineall=combineall, split_id=split_id,
                   seq_len=seq_len, sample_method=sample_method, verbose=verbose, **options)

    def _loader(self, dataset, batch_size, workers, **kwargs):
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                           pin_memory=self.use_gpu, **kwargs)

    def protocols(self, name):
        """The evaluation protocols (``Protocol`` tuples) of target ``name``."""
        return list(self._targets[name].protocols)

    def remove_same_camera(self, name):
        """Whether evaluation on target ``name`` drops gallery items with the query's pid and camid."""
        return self._targets[name].remove_same_camera

    def prepare_batch(self, batch, device, train):
        """Move a loader batch to ``device``; uint8 ``img`` becomes float normalised, and when
        ``train`` then randomly erased (p 0.5, the authors' fill) and channel-augmented by
        modality, in the authors' order."""
        out = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        img = out["img"]
        if img.dtype == torch.uint8:
            img = normalize(img, self.norm_mean, self.norm_std)
            if train and self.random_erase:
                img = random_erase(img, ERASE_FILL, per_tracklet=self.consistent_geometry)
            if train and self.modality_augment:
                img = channel_augment(img, out["modality"])
            out["img"] = img
        return out

