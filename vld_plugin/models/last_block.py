"""Run a transformer's last block only where its output is read.

After the last block of a CLIP tower only a few tokens are used (the visual CLS and hub tokens,
the text EOT token), yet every token still serves as a key and value. Computing the queries,
the attention output projection and the MLP for the used tokens alone gives exactly the same
values for them and skips most of the last block: about 7% of the visual encoder's MACs.
"""
import torch


def block_at_ends(block, x, head, tail):
    """``block(x)`` of an open_clip ``ResidualAttentionBlock`` at the first ``head`` and the last
    ``tail`` tokens only: (N, head + tail, D) for batch-first ``x`` (N, L, D), no attention mask
    (every kept query may see every token)."""
    kept = torch.cat([x[:, :head], x[:, x.shape[1] - tail:]], dim=1)
    keys = block.ln_1(x)
    kept = kept + block.ls_1(block.attention(block.ln_1(kept), keys, keys))
    return kept + block.ls_2(block.mlp(block.ln_2(kept)))
