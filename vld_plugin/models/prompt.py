"""IMLP: identity-level learnable text prompts and CLIP's frozen text encoder.

Each identity's prompt is a template (paper Table VII) whose ``{}`` holds M learnable tokens:
``prefix (SOS + words before) | M learnable tokens | suffix (words after + EOT + padding)``.
The prefix and suffix embeddings are fixed buffers computed once from CLIP's token embedding.
"""
import open_clip
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .last_block import block_at_ends

# paper Table VII; {} is replaced by the M learnable tokens
TEMPLATES = {
    1: "{} person.",
    2: "A {} person.",
    3: "A {} person observed in RGB and infrared sequences.",
    4: "A {} person observed in both day and night conditions.",
}


def template_text(template):
    """The template string of index ``template`` (1-4)."""
    if template not in TEMPLATES:
        raise ConfigError(f"vld.prompt_template must be one of {sorted(TEMPLATES)}, got {template}")
    return TEMPLATES[template]


class PromptLearner(nn.Module):
    """Per-identity learnable context tokens ``cls_ctx`` (num_classes, M, D) between fixed embeddings."""

    def __init__(self, num_classes, clip, clip_name, template=4, num_ctx=4):
        super().__init__()
        if num_ctx < 1:
            raise ConfigError(f"vld.num_ctx must be >= 1, got {num_ctx}")
        text = template_text(template)
        tokenizer = open_clip.get_tokenizer(clip_name)
        tokens = tokenizer([text.format(" ".join(["X"] * num_ctx))])  # (1, context_length)
        n_prefix = 1 + len(tokenizer.encode(text.split("{}")[0]))  # SOS + words before {}
        with torch.no_grad():
            embedding = clip.token_embedding(tokens).float()  # (1, L, D)
        width = embedding.shape[-1]
        self.cls_ctx = nn.Parameter(torch.empty(num_classes, num_ctx, width).normal_(std=0.02))
        self.register_buffer("token_prefix", embedding[:, :n_prefix].clone())
        self.register_buffer("token_suffix", embedding[:, n_prefix + num_ctx:].clone())
        self.eot_index = int(tokens.argmax(dim=-1))  # the EOT token has the largest id

    def forward(self):
        """Prompt embeddings of all identities, cut after EOT: (num_classes, eot_index + 1, D).

        The text transformer is causal, so tokens after EOT cannot change the EOT output:
        dropping them gives the same text features with ~5x fewer tokens.
        """
        n = self.cls_ctx.shape[0]
        keep = self.eot_index + 1 - self.token_prefix.shape[1] - self.cls_ctx.shape[1]
        return torch.cat([
            self.token_prefix.expand(n, -1, -1).to(self.cls_ctx.dtype),
            self.cls_ctx,
            self.token_suffix[:, :keep].expand(n, -1, -1).to(self.cls_ctx.dtype),
        ], dim=1)


class FrozenTextEncoder(nn.Module):
    """CLIP's text transformer, positional embedding, ``ln_final`` and projection; never trained.

    Its parameters keep ``requires_grad=False`` even after torchreid's ``open_all_layers``
    (which switches every parameter on): ``forward`` switches them off again, so they never
    receive gradients; gradients still flow through it into the prompts.
    """

    def __init__(self, clip):
        super().__init__()
        self.transformer = clip.transformer
        self.positional_embedding = clip.positional_embedding
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask.clone(), persistent=False)
        self.requires_grad_(False)

    def forward(self, prompts):
        """Text features (N, embed_dim) of prompt embeddings (N, L, width) that end at EOT.

        Only the EOT output is read, so the last block computes that token alone.
        """
        self.requires_grad_(False)
        n_tok = prompts.shape[1]
        x = prompts + self.positional_embedding[:n_tok].to(prompts.dtype)
        mask = self.attn_mask[:n_tok, :n_tok]
        blocks = self.transformer.resblocks
        for block in blocks[:-1]:
            if self.transformer.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, None, None, mask, use_reentrant=False)
            else:
                x = block(x, attn_mask=mask)
        # the EOT token is the last one: its causal-mask row masks nothing
        x = block_at_ends(blocks[-1], x, head=0, tail=1)
        return self.ln_final(x[:, 0]) @ self.text_projection
