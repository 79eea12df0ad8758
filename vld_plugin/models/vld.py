"""The VLD model: CLIP's visual encoder with the spatial-temporal hub (STH), spatial-temporal
aggregation (STA), BNNeck heads and IMLP text prompts; with every part off it is the paper's
baseline B (CLIP + temporal average pooling).

Input: (B, T, 3, H, W), a tracklet's T frames contiguous. Training output (a dict, all features
pooled over T and taken before the BNNecks; keys of switched-off parts are absent):

==============  =========================================================================
``feat_pre``    CLS token entering the last block (width, no ``ln_post``)
``feat_cls``    CLS after the last block and ``ln_post`` (width), pooled by the temporal fusion
``feat_proj``   ``feat_cls`` projected by CLIP's ``proj`` (embed_dim)
``feat_sta``    STA output through ``ln_post`` (width); needs STH + STA
``logits_cls``  ``classifier.cls`` (BNNeck + linear) on ``feat_cls``
``logits_proj`` ``classifier.proj`` on ``feat_proj``
``logits_sta``  ``classifier.sta`` on ``feat_sta``
``logits_text`` ``feat_proj @ text_features.T`` over all identities (IMLP)
==============  =========================================================================

Eval output: the test feature (B, 2 * width) = [feat_cls, feat_sta] (1536 for ViT-B/16),
or (B, width) = feat_cls when STA is off.
"""
from functools import partial

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..distributed import shard_rows
from ..errors import ConfigError
from .fusion import build_fusion
from .last_block import block_at_ends
from .prompt import FrozenTextEncoder, PromptLearner


class BNNeck(nn.Module):
    """BatchNorm1d (weight 1, bias 0) then a bias-free linear classifier initialised N(0, 0.001)."""

    def __init__(self, dim, num_classes):
        super().__init__()
        self.bnneck = nn.BatchNorm1d(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, x):
        return self.classifier(self.bnneck(x))


class VLD(nn.Module):
    """VLD / baseline on an open_clip ``CLIP`` (its text tower is used only when ``imlp``).

    Args:
        clip: an open_clip CLIP model (weights already loaded).
        num_classes: number of training identities.
        clip_name: open_clip model name (selects the tokenizer for the prompts).
        seq_len: frames per tracklet T (the hub is T x T tokens).
        imlp, sth, sta: switches of the paper's ablations (Tables III and V).
        hub_start_block: first block that sees the hub tokens (Table VI, default 9).
        prompt_template, num_ctx: the IMLP prompt template (Table VII) and its M tokens.
        grad_checkpointing: recompute transformer blocks in backward to save memory.
        temporal_fusion: how frame CLS features become ``feat_cls`` (Table IV): 'none' (temporal
            average pooling), 'conv1d', 'transformer', 'transformer_cls' (see ``fusion``).
        prune_last_block: run the last block only for the tokens read after it (CLS, hubs): the
            same values with ~7% fewer MACs; False runs it on every token, as the paper's Table X
            counts it.
    """

    def __init__(self, clip, num_classes, clip_name, seq_len=6, imlp=True, sth=True, sta=True,
                 hub_start_block=9, prompt_template=4, num_ctx=4, grad_checkpointing=False, temporal_fusion="none",
                 prune_last_block=True):
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if sta and not sth:
            raise ConfigError("vld.sta needs vld.sth (STA attends to the hub tokens); "
                             "set vld.sth True or vld.sta False")
        self.visual = clip.visual
        if not self.visual.transformer.batch_first:
            raise ConfigError("open_clip visual transformer must be batch-first")
        width = self.visual.transformer.width
        layers = len(self.visual.transformer.resblocks)
        heads = self.visual.transformer.resblocks[0].attn.num_heads
        if sth and not 0 <= hub_start_block < layers:
            raise ConfigError(f"vld.hub_start_block must be in [0, {layers - 1}], got {hub_start_block}")
        self.seq_len = int(seq_len)
        self.hub_start_block = int(hub_start_block)
        self.grad_checkpointing = bool(grad_checkpointing)
        self.prune_last_block = bool(prune_last_block)

        self.hub = nn.Parameter(torch.randn(seq_len, seq_len, width)) if sth else None
        self.sta = nn.MultiheadAttention(width, heads, batch_first=True) if sta else None
        self.temporal_fusion = build_fusion(temporal_fusion, width, heads, seq_len)
        if imlp:
            self.prompt_learner = PromptLearner(num_classes, clip, clip_name, prompt_template, num_ctx)
            self.text_encoder = FrozenTextEncoder(clip)
            self.text_encoder.transformer.grad_checkpointing = self.grad_checkpointing
        else:
            self.prompt_learner = self.text_encoder = None
        heads_ = {"cls": BNNeck(width, num_classes), "proj": BNNeck(self.visual.proj.shape[1], num_classes)}
        if sta:
            heads_["sta"] = BNNeck(width, num_classes)
        self.classifier = nn.ModuleDict(heads_)
        self.feature_dim = 2 * width if sta else width

    def text_features(self):
        """Text features of all identities' prompts through the frozen encoder: (num_classes, embed_dim).

        Under data-parallel training each rank encodes its share of the identities and the shares
        are all-gathered with their gradients (``distributed.shard_rows``): the text pass, the same
        on every rank, is not repeated by each of them.
        """
        return shard_rows(self.prompt_learner(), self.text_encoder)

    def _embed(self, images):
        v = self.visual
        x = v.conv1(images).flatten(2).transpose(1, 2)  # (N, grid, width)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x)

    def _transpose_hubs(self, x):
        """Swap hub j of frame i with hub i of frame j within each tracklet."""
        t = self.seq_len
        n, length, width = x.shape
        hubs = x[:, length - t:].reshape(n // t, t, t, width).transpose(1, 2).reshape(n, t, width)
        return torch.cat([x[:, :length - t], hubs], dim=1)

    def _encode(self, images):
        """CLS (N, width) and hub tokens (N, T or 0, width) after the last block, and the CLS
        entering the last block (N, width)."""
        x = self._embed(images)
        blocks = self.visual.transformer.resblocks
        n_hub = 0 if self.hub is None else self.seq_len
        pre = None
        for i, block in enumerate(blocks):
            if self.hub is not None and i == self.hub_start_block:
                hub = self.hub.to(x.dtype).repeat(x.shape[0] // self.seq_len, 1, 1)  # frame t: hub[t]
                x = torch.cat([x, hub], dim=1)
            elif self.hub is not None and i > self.hub_start_block:
                x = self._transpose_hubs(x)
            run = block
            if i == len(blocks) - 1:
                pre = x[:, 0]
                if self.prune_last_block:
                    run = partial(block_at_ends, block, head=1, tail=n_hub)
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(run, x, use_reentrant=False)
            else:
                x = run(x)
        return x[:, 0], x[:, x.shape[1] - n_hub:], pre

    def forward(self, x):
        """(B, T, 3, H, W) -> training dict (see module doc) or eval feature (B, feature_dim)."""
        if x.dim() != 5:
            raise ConfigError(f"VLD expects (B, T, 3, H, W) input, got shape {tuple(x.shape)}")
        b, t = x.shape[:2]
        if self.hub is not None and t != self.seq_len:
            raise ConfigError(f"VLD was built for {self.seq_len} frames per tracklet (video.seq_len) "
                             f"but got {t}")
        cls_raw, hubs, pre = self._encode(x.flatten(0, 1))
        cls = self.visual.ln_post(cls_raw)
        frames = cls.view(b, t, -1)
        feat_cls = frames.mean(1) if self.temporal_fusion is None else self.temporal_fusion(frames)
        feat_sta = None
        if self.sta is not None:
            hubs = hubs.reshape(b, t * t, -1)  # all T*T hub tokens of each tracklet
            agg = self.sta(cls_raw.view(b, t, -1), hubs, hubs, need_weights=False)[0]
            feat_sta = self.visual.ln_post(agg).mean(1)
        if not self.training:
            return feat_cls if feat_sta is None else torch.cat([feat_cls, feat_sta], dim=1)

        feat_proj = feat_cls @ self.visual.proj
        out = {
            "feat_pre": pre.view(b, t, -1).mean(1),
            "feat_cls": feat_cls,
            "feat_proj": feat_proj,
            "logits_cls": self.classifier["cls"](feat_cls),
            "logits_proj": self.classifier["proj"](feat_proj),
        }
        if feat_sta is not None:
            out["feat_sta"] = feat_sta
            out["logits_sta"] = self.classifier["sta"](feat_sta)
        if self.prompt_learner is not None:
            out["logits_text"] = feat_proj @ self.text_features().t()
        return out
