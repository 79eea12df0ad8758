"""The paired-modality engine: torchreid's ``Engine`` trained on visible+infrared tracklet pairs.

Each step runs the model once over a batch holding both modalities (dict batch with ``img``
(B, T, 3, H, W) and ``pid``), computes the VLD loss (or CE + WRT for torchreid models) and
steps, with optional mixed precision, gradient clipping and DistributedDataParallel. It uses
torchreid's hooks: ``parse_data_for_train`` / ``parse_data_for_eval`` put a batch on the device,
``forward_backward`` is the step, ``extract_features`` (inherited) runs the model in eval mode.
``run(...)`` takes torchreid's arguments; it writes a resumable checkpoint after every epoch and
evaluates every protocol of every target dataset (reported by ``evaluation.report``).
"""
import os
import time

import numpy as np
import torch
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from . import compat
from .checkpoint import (
    FORMAT,
    load_checkpoint,
    load_model_state,
    remove_stale_temporaries,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .distributed import gather_for_loss, gather_objects, rank_and_world, shard_loader
from .errors import CheckpointError, ConfigError, EngineConfigError, NonFiniteLossError, VLDError, one_line
from .evaluation.report import report_results, report_selection
from .losses import VLDLoss

CHECKPOINT_NAME = "checkpoint.pth"
BEST_NAME = "best.pth"  # weights of the epoch with the best validation mAP (data.val_ids > 0)
RESUME_KEYS = ("epoch", "model", "optimizer", "scheduler", "scaler", "rng", "sampler")  # what resume reads
AMP_MODES = ("auto", "bf16", "fp16", "off")
EVAL_KEYS = ("img", "pid", "camid", "modality")  # what a test batch holds


def resolve_amp(mode, device):
    """``(autocast dtype or None, use a GradScaler)`` for ``train.amp`` on ``device``.

    ``auto``: bf16 on a GPU that supports it, else fp16 with a scaler on GPU, off on CPU.
    """
    if mode not in AMP_MODES:
        raise EngineConfigError(f"train.amp must be one of {', '.join(AMP_MODES)}, got '{mode}'")
    if mode == "auto":
        if device.type != "cuda":
            return None, False
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return None, False
    if mode == "bf16":
        return torch.bfloat16, False
    return torch.float16, True


class PairedModalityEngine(compat.engine.Engine):
    """Train and evaluate a video model on paired visible/infrared batches.

    Args:
        datamanager: torchreid-style data manager (``train_loader``, ``test_loader``,
            ``sources``) with ``protocols(name)`` and ``remove_same_camera(name)`` per target,
            and optionally ``prepare_batch(batch, device, train)``.
        model: takes (B, T, 3, H, W); train mode returns the contract's dict of features and
            logits, eval mode the (B, D) feature (``models.build_model`` makes torchreid's frame
            models do so).
        optimizer, scheduler: from ``vld_plugin.optim``; the scheduler is stepped per epoch.
        criterion: ``(outputs, pids) -> (loss, terms)``; default ``VLDLoss()``.
        amp: ``auto``, ``bf16``, ``fp16`` (with a GradScaler) or ``off``.
        grad_clip: maximum gradient norm; 0 disables clipping.
        compile: train through ``torch.compile`` of the model (DDP-wrapped under torchrun);
            evaluation and checkpoints use the model itself.
        settings: ``{"fixed": {key: value}, "applied": {key: value}}`` stored in checkpoints; a resume
            refuses a checkpoint whose fixed settings differ and reports the applied ones that changed.
    """

    def __init__(self, datamanager, model, optimizer, scheduler=None, criterion=None, use_gpu=True,
                 amp="auto", grad_clip=0.0, compile=False, settings=None):
        super().__init__(datamanager, use_gpu)
        self.rank, self.world_size = rank_and_world()
        if self.use_gpu:
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self.model = model.to(self.device)
        self.net = model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        if compile:
            self.net = torch.compile(self.net)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.criterion = criterion if criterion is not None else VLDLoss()
        self.amp_dtype, use_scaler = resolve_amp(amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=use_scaler)
        self.grad_clip = grad_clip
        self.settings = settings
        self.save_dir = "log"
        self.max_epoch = 0
        self.selection = None  # {epoch, val_mAP, validation, test} of the best validation epoch so far
        self.register_model("model", model, optimizer, scheduler)

    # ---------------------------------------------------------------- torchreid's hooks
    def _on_device(self, data, train):
        """The batch on the device, through ``datamanager.prepare_batch`` when it has one."""
        prepare = getattr(self.datamanager, "prepare_batch", None)
        if prepare is not None:
            return prepare(data, self.device, train=train)
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in data.items()}

    def parse_data_for_train(self, data):
        """``(imgs, pids)`` of a training batch on the device, augmented by the data manager."""
        batch = self._on_device(data, train=True)
        return batch["img"], batch["pid"]

    def parse_data_for_eval(self, data):
        """``(imgs, pids, camids, modalities)`` of a test batch: images on the device, labels on the CPU."""
        imgs = self._on_device({"img": data["img"], "modality": data["modality"]}, train=False)["img"]
        return (imgs, *(torch.as_tensor(data[k]).cpu() for k in EVAL_KEYS[1:]))

    def forward_backward(self, data):
        """One training step on ``data``; returns the loss and its terms as floats."""
        imgs, pids = self.parse_data_for_train(data)
        amp_dtype = self.amp_dtype or torch.float32
        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=self.amp_dtype is not None):
            outputs = self.net(imgs)
        if self.world_size > 1:
            outputs, pids = gather_for_loss(outputs, pids)
        loss, terms = self.criterion(outputs, pids)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        values = torch.stack([loss.detach().float()] + [v.float() for v in terms.values()]).tolist()
        summary = dict(zip(["loss"] + list(terms), values))
        if not all(np.isfinite(values)):
            shown = ", ".join(f"{k} {v:.4g}" for k, v in summary.items())
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.epoch + 1} iteration {self.batch_idx + 1} ({shown}); training "
                f"stopped before the update, the last good checkpoint in {self.save_dir} is intact: "
                "resume from it with a lower train.lr, train.grad_clip > 0 or train.amp off"
            )
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return summary

    # ---------------------------------------------------------------- training loop
    def run(self, save_dir="log", max_epoch=0, start_epoch=0, print_freq=10, fixbase_epoch=0, open_layers=None,
            start_eval=0, eval_freq=-1, test_only=False, dist_metric="inner_product", normalize_feature=False,
            visrank=False, visrank_topk=10, ranks=(1, 5, 10, 20), rerank=False):
        """torchreid's ``Engine.run``: train ``start_epoch..max_epoch-1``, evaluating every ``eval_freq``
        epochs (from ``start_eval``) and after the last, with a checkpoint after every epoch.

        When the data manager has a ``val_loader`` (``data.val_ids``), every evaluation also scores
        the held-out identities; the epoch with the best mean validation mAP is kept as ``best.pth``
        and its test results are reported next to the last epoch's. (torchreid's ``use_metric_cuhk03``
        does not apply to video re-id and is not taken.)
        """
        self.save_dir = save_dir
        test_kwargs = dict(dist_metric=dist_metric, normalize_feature=normalize_feature, visrank=visrank,
                           visrank_topk=visrank_topk, save_dir=save_dir, ranks=ranks, rerank=rerank)
        if test_only:
            return self.test(**test_kwargs)
        if self.rank == 0 and self.writer is None:
            self.writer = SummaryWriter(log_dir=save_dir)
        self.start_epoch, self.max_epoch = start_epoch, max_epoch
        if self.rank == 0:
            removed = remove_stale_temporaries(save_dir)
            if removed:
                print(f"removed {len(removed)} partial checkpoint file(s) left by an interrupted write in {save_dir}")
        rank1 = None
        try:
            for self.epoch in range(start_epoch, max_epoch):
                self.train(print_freq=print_freq, fixbase_epoch=fixbase_epoch, open_layers=open_layers)
                done = self.epoch + 1
                state = self.checkpoint_state()
                self.write_checkpoint(state, save_dir)  # before evaluation: a fault there costs no training
                rank1 = None
                if done == max_epoch or (done >= start_eval and eval_freq > 0 and done % eval_freq == 0):
                    rank1 = self._evaluate_saved_epoch(test_kwargs, state)
        finally:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        if self.rank == 0 and self.selection is not None:
            report_selection(self.selection, os.path.join(save_dir, BEST_NAME))
        return rank1

    def _evaluate_saved_epoch(self, test_kwargs, state):
        """``_evaluate_epoch`` after the epoch's checkpoint ``state`` was written: the random streams
        are left as saved (so a resumed run continues exactly), a new validation selection is
        written into the checkpoint, and an error names the checkpoint that kept the epoch."""
        saved_rng = rng_state()
        selection = self.selection
        try:
            rank1 = self._evaluate_epoch(test_kwargs)
        except VLDError as e:
            raise type(e)(f"{one_line(e)} (evaluating after epoch {self.epoch + 1}; the trained epoch is saved "
                          f"in {self.checkpoint_path()}: fix the cause, then evaluate it with --eval-only "
                          f"--resume {self.checkpoint_path()} or resume training from it)") from None
        set_rng_state(saved_rng)
        if self.rank == 0 and self.selection is not selection:
            self.write_checkpoint({**state, "selection": self.selection}, test_kwargs["save_dir"])
        return rank1

    def _evaluate_epoch(self, test_kwargs):
        """Validation (if any) and test after a training epoch; updates the selection; rank-1 on rank 0."""
        val = None
        if getattr(self.datamanager, "val_loader", None) is not None:
            val = self.validate(dist_metric=test_kwargs["dist_metric"],
                                normalize_feature=test_kwargs["normalize_feature"],
                                ranks=test_kwargs["ranks"])
        results = self.evaluate_targets(**test_kwargs)
        if self.rank != 0:
            return None
        if val is not None:
            self._update_selection(val, results, test_kwargs["save_dir"])
        report_results(results, test_kwargs["save_dir"], self.epoch + 1, val, self.selection, self.writer)
        return first_rank1(results)

    def _update_selection(self, val, results, save_dir):
        """Keep ``best.pth`` and the test results of the epoch with the best mean validation mAP (rank 0)."""
        score = float(np.mean([m["mAP"] for m in val.values()]))
        if self.selection is not None and not score > self.selection["val_mAP"]:
            return
        self.selection = {"epoch": self.epoch + 1, "val_mAP": score, "validation": val, "test": results}
        save_checkpoint({"state_dict": self.model.state_dict(), "epoch": self.epoch + 1, "val_mAP": score},
                        os.path.join(save_dir, BEST_NAME))

    def _train_sampler(self):
        for sampler in (getattr(self.train_loader, "batch_sampler", None), getattr(self.train_loader, "sampler", None)):
            if hasattr(sampler, "set_epoch"):
                return sampler
        return None

    def train(self, print_freq=10, fixbase_epoch=0, open_layers=None):
        """One epoch over ``train_loader`` with a progress bar and one summary line."""
        self.set_model_mode("train")
        self.two_stepped_transfer_learning(self.epoch, fixbase_epoch, open_layers)
        sampler = self._train_sampler()
        if sampler is not None:
            sampler.set_epoch(self.epoch)
        self.num_batches = len(self.train_loader)
        lr = self.optimizer.param_groups[0]["lr"]
        sums, count, tracklets, start = {}, 0, 0, time.time()
        bar = tqdm(self.train_loader, total=self.num_batches, desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
                   disable=self.rank != 0, leave=False, dynamic_ncols=True)
        for self.batch_idx, data in enumerate(bar):
            summary = self.forward_backward(data)
            count += 1
            tracklets += len(data["pid"]) * self.world_size
            for k, v in summary.items():
                sums[k] = sums.get(k, 0.0) + v
            if (self.batch_idx + 1) % print_freq == 0:
                bar.set_postfix(loss=f"{sums['loss'] / count:.4f}")
            if self.writer is not None:
                n_iter = self.epoch * self.num_batches + self.batch_idx
                for k, v in summary.items():
                    self.writer.add_scalar(f"Train/{k}", v, n_iter)
                self.writer.add_scalar("Train/lr", lr, n_iter)
        bar.close()
        self.update_lr()
        elapsed = time.time() - start
        if self.rank == 0:
            terms = " ".join(f"{k} {v / max(count, 1):.4f}" for k, v in sums.items())
            print(f"epoch {self.epoch + 1}/{self.max_epoch}  {terms}  lr {lr:.3g}  "
                  f"{elapsed:.1f}s ({tracklets / max(elapsed, 1e-9):.1f} tracklets/s)", flush=True)

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_path(self, save_dir=None):
        return os.path.join(save_dir or self.save_dir, CHECKPOINT_NAME)

    def checkpoint_state(self):
        """The resume state at the end of the current epoch (every rank must call; None off rank 0)."""
        sampler = self._train_sampler()
        rngs = gather_objects(rng_state())
        if self.rank != 0:
            return None
        return {
            "format": FORMAT,
            "epoch": self.epoch + 1,
            "settings": self.settings,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "rng": rngs,
            "sampler": sampler.state_dict() if hasattr(sampler, "state_dict") else None,
            "selection": self.selection,
        }

    def write_checkpoint(self, state, save_dir=None):
        """Write ``checkpoint_state()`` atomically on rank 0."""
        if self.rank == 0:
            save_checkpoint(state, self.checkpoint_path(save_dir))


    def resume(self, path):
        """Restore everything ``checkpoint_state`` saved; returns the epoch to start from."""
        state = load_checkpoint(path)
        if state.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} is not a vld_plugin training checkpoint (no resume state); "
                "use model.load_weights to start from its weights instead"
            )
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{path} lacks the resume state {missing}; it is incomplete: use an intact "
                                  "checkpoint, or model.load_weights to start from its weights")
        self._check_settings(state.get("settings"), path)
        load_model_state(self.model, state["model"], path)
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as e:
            raise CheckpointError(f"optimizer state in {path} does not fit this optimizer: {e}") from None
        for group, hyper in zip(self.optimizer.param_groups, fresh):
            group.update(hyper)  # this run's lr, weight decay, ...: only the optimizer's moments are restored
        if self.scheduler is not None and state["scheduler"] is not None:
            self._restart_schedule(state["scheduler"]["last_epoch"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        sampler = self._train_sampler()
        if state["sampler"] is not None and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(state["sampler"])
        self.selection = state.get("selection")
        rngs = state["rng"]
        if len(rngs) != self.world_size and self.rank == 0:
            print(f"warning: {path} was saved by {len(rngs)} processes, resuming with {self.world_size}: "
                  "random streams will differ from an uninterrupted run")
        set_rng_state(rngs[self.rank % len(rngs)])
        if self.rank == 0:
            print(f"resumed from {path} (epoch {state['epoch']})")
        return state["epoch"]

    def _check_settings(self, saved, path):
        """Refuse a resume whose fixed settings differ from the checkpoint's; say which others change."""
        if not saved or not self.settings:
            return
        for kind in ("fixed", "applied"):
            for key, value in self.settings.get(kind, {}).items():
                old = saved.get(kind, {}).get(key, value)
                if old == value:
                    continue
                if kind == "fixed":
                    raise ConfigError(f"cannot resume {path} with {key} {value}: it was trained with {key} {old}; "
                                      f"resume with {key} {old}, or start a new run from its weights with "
                                      f"model.load_weights {path}")
                if self.rank == 0:
                    print(f"resume: {key} {old} -> {value} (applied; the learning-rate schedule is recomputed)")

    def _restart_schedule(self, last_epoch):
        """Put the scheduler at ``last_epoch`` with this run's settings and set the groups' lr from it."""
        sched = self.scheduler
        sched.last_epoch = last_epoch
        closed_form = getattr(sched, "_get_closed_form_lr", None)
        lrs = closed_form() if closed_form is not None else sched.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        sched._last_lr = list(lrs)

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def extract(self, loader, desc=""):
        """Features (N, D) on the CPU and meta ``{pids, camids, modalities}`` (NumPy) of a test loader.

        Runs the model in eval mode. Under DDP each rank extracts a contiguous share; the shares
        are gathered on every rank.
        """
        self.set_model_mode("eval")
        feats, meta = [], {"pids": [], "camids": [], "modalities": []}
        for data in tqdm(shard_loader(loader, self.rank, self.world_size), desc=desc, leave=False,
                         disable=self.rank != 0, dynamic_ncols=True):
            missing = [k for k in EVAL_KEYS if k not in data]
            if missing:
                raise EngineConfigError(f"test batches must hold {', '.join(EVAL_KEYS)}; {desc} lacks {missing}")
            imgs, *labels = self.parse_data_for_eval(data)
            feats.append(self.extract_features(imgs).float().cpu())
            for values, key in zip(labels, meta):
                meta[key].append(values)
        shares = gather_objects((feats, meta))
        feats = [f for share in shares for f in share[0]]
        if not feats:
            raise EngineConfigError(f"{desc or 'a test loader'} yielded no batch")
        meta = {k: torch.cat([t for share in shares for t in share[1][k]]).numpy() for k in meta}
        return torch.cat(feats), meta

    def _features(self, loaders, label, normalize_feature):
        """Query and gallery features and meta of ``loaders`` (``{'query', 'gallery'}``)."""
        qf, q_meta = self.extract(loaders["query"], f"{label} query")
        gf, g_meta = self.extract(loaders["gallery"], f"{label} gallery")
        if normalize_feature:
            qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
        return qf, q_meta, gf, g_meta

    def validate(self, dist_metric="inner_product", normalize_feature=False, ranks=(1, 5, 10, 20)):
        """Cross-modal results ``{protocol: metrics}`` of the held-out validation identities (None off rank 0).

        Gallery items of the query's identity and camera are dropped, so an aligned RGB/IR pair
        never matches itself.
        """
        from vld_plugin.data.validation import VAL_PROTOCOLS
        from vld_plugin.evaluation import evaluate_protocols

        qf, q_meta, gf, g_meta = self._features(self.datamanager.val_loader, "validation", normalize_feature)
        if self.rank != 0:
            return None
        return evaluate_protocols(qf, q_meta, gf, g_meta, VAL_PROTOCOLS, True, dist_metric=dist_metric,
                                  max_rank=max(ranks), ranks=ranks)

    def evaluate_targets(self, dist_metric="inner_product", normalize_feature=False, visrank=False, visrank_topk=10,
                         save_dir="", ranks=(1, 5, 10, 20), rerank=False):
        """``{target: {protocol: metrics}}`` of every protocol of every target (None off rank 0).

        Query and gallery features are extracted once per target and shared by its protocols.
        """
        from vld_plugin.evaluation import evaluate_protocols

        if visrank:
            from vld_plugin.evaluation.visualize import visualize_protocols

        results = {}
        save_dir = save_dir or self.save_dir
        for name in self.test_loader:
            qf, q_meta, gf, g_meta = self._features(self.test_loader[name], name, normalize_feature)
            if self.rank != 0:
                continue
            protocols = self.datamanager.protocols(name)
            same_camera = self.datamanager.remove_same_camera(name)
            results[name] = evaluate_protocols(qf, q_meta, gf, g_meta, protocols, same_camera, dist_metric=dist_metric,
                                               max_rank=max(ranks), ranks=ranks, rerank=rerank)
            if visrank:
                splits = self.datamanager.test_dataset[name]
                q_meta["img_paths"] = [t[0] for t in splits["query"]]
                g_meta["img_paths"] = [t[0] for t in splits["gallery"]]
                folder = os.path.join(save_dir, "visrank", name)
                written = visualize_protocols(qf, q_meta, gf, g_meta, protocols, folder,
                                              same_camera, dist_metric=dist_metric, topk=visrank_topk)
                print(f"figures written: {', '.join(written)}")
        return results if self.rank == 0 else None

    def test(self, dist_metric="inner_product", normalize_feature=False, visrank=False, visrank_topk=10,
             save_dir="", ranks=(1, 5, 10, 20), rerank=False):
        """Evaluate every protocol of every target; print a table, write JSON, return the first rank-1.

        Returns None on ranks other than 0.
        """
        save_dir = save_dir or self.save_dir
        results = self.evaluate_targets(dist_metric, normalize_feature, visrank, visrank_topk, save_dir, ranks, rerank)
        if self.rank != 0:
            return None
        epoch = self.epoch + 1 if self.max_epoch > 0 else None  # None: weights not trained by this engine
        report_results(results, save_dir, epoch, selection=self.selection, writer=self.writer)
        return first_rank1(results)


def first_rank1(results):
    """Rank-1 of the first protocol of the first target in ``{target: {protocol: metrics}}``."""
    first = next(iter(results.values()))
    return next(iter(first.values()))["rank1"]
