"""The released code's training loss, re-written in plain loops from the official notes, as a reference.

Total = CE(cls) + CE(proj) + WRT(block-11-input CLS) + WRT(CLS) + WRT(proj)
        + 0.08 CE(text) + 0.4 CE(STA) + 1.0 WRT(STA), over the joint visible+infrared batch.
"""
import torch


def released_wrt(features, targets):
    """AGW's WRT as released: float32 expanded distances, weights exp(x - max(x * mask)) * mask / (sum + 1e-6)."""
    x = features.float()
    sq = (x * x).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp(min=1e-12).sqrt()
    losses = []
    for i in range(len(x)):
        pos = (targets == targets[i]).float()
        neg = 1.0 - pos
        sums = []
        for mask, sign in ((pos, 1.0), (neg, -1.0)):
            row = sign * dist[i] * mask  # masked-out entries are 0 and take part in the max
            e = torch.exp(row - row.max()) * mask
            sums.append((dist[i] * mask * e / (e.sum() + 1e-6)).sum())
        losses.append(torch.log1p(torch.exp(-(sums[1] - sums[0]))))  # soft margin on (n - p)
    return torch.stack(losses).mean()


def released_ce(logits, targets):
    """Plain cross-entropy: mean over rows of -log softmax at the target."""
    logp = logits.float() - torch.logsumexp(logits.float(), dim=1, keepdim=True)
    return -logp[torch.arange(len(targets)), targets].mean()


def released_total(outputs, targets):
    """The released total loss from a VLD train-mode output dict."""
    return (released_ce(outputs["logits_cls"], targets) + released_ce(outputs["logits_proj"], targets)
            + released_wrt(outputs["feat_pre"], targets) + released_wrt(outputs["feat_cls"], targets)
            + released_wrt(outputs["feat_proj"], targets) + 0.08 * released_ce(outputs["logits_text"], targets)
            + 0.4 * released_ce(outputs["logits_sta"], targets) + 1.0 * released_wrt(outputs["feat_sta"], targets))
