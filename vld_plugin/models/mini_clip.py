"""A miniature CLIP, pretrained here on synthetic frames and captions: the demo's starting point.

    python -m vld_plugin.models.mini_clip --seed 0 --out vld_plugin/weights/mini_clip.pt

The real pipeline fine-tunes VLD from OpenAI's CLIP, whose image and text spaces are already
aligned; the demo does the same from this model. It is open_clip's ``ViT-B-16-quickgelu``
architecture at a CPU size (:data:`ARCH`), trained with CLIP's symmetric contrastive loss on
frames of synthetic identities (:mod:`vld_plugin.data.synthetic`, visible and infrared) paired
with captions of their attributes (:func:`~vld_plugin.data.synthetic.caption`: colours for
visible frames, grey levels for infrared ones; half of the time the terse caption without
either). Its identities and cameras come from their own world seed (:data:`WORLD_OFFSET` +
seed), disjoint from the demo's dataset (world seed 1).

The model has a square 8x8 positional grid, as OpenAI's ViT-B/16 has 14x14, and trains on the
demo's 64x32 frames with the grid resized to 8x4 in every forward pass by the function that
resizes it when ``model.pretrained`` loads the file. The output is a state dict in OpenAI's key
names, fp16, that loads like ``ViT-B-16.pt``; token-embedding rows that no caption or prompt
template uses are stored as zeros (they were never trained). 33 minutes on 2 CPU cores (on 1 thread,
which the script sets: other thread counts sum floats in another order and give another file).
"""
import argparse
import math
import os
import time

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.synthetic import World, caption
from .clip_loader import clip_config, create_clip, resize_pos_embed
from .prompt import TEMPLATES

CLIP_NAME = "ViT-B-16-quickgelu"
# vld config keys of the demo (configs/vld_demo.yaml sets the same ones)
ARCH = dict(width=64, layers=4, heads=4, patch_size=8, embed_dim=32, text_width=32, text_layers=2, text_heads=4)
IMAGE_SIZE = (64, 64)  # the model's (square) positional grid, 8x8, as OpenAI's files have one (14x14)
FRAME_SIZE = (64, 32)  # trained on the demo's frames: the grid resized to 8x4 in every forward pass
RENDER_SIZE = (128, 64)  # rendered as the demo's dataset, then resized to FRAME_SIZE as its loader does
WORLD_OFFSET = 1000  # pretraining world seed = WORLD_OFFSET + seed; the demo's dataset is world seed 1
NUM_CAMS = 8  # cameras per modality in the pretraining world
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the demo's normalisation (ImageNet)
DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "weights", "mini_clip.pt")


def build_pairs(num_ids, seed, tracks=1, frames=2):
    """Frames of ``num_ids`` identities of the pretraining world ``seed`` and their captions, a dict:
    ``images`` (N, 3, H, W) uint8 at FRAME_SIZE, ``captions`` (distinct strings), ``caption_of``
    (N, 2): each frame's full and terse (colourless) caption index, ``pid`` and ``infrared`` (N,).

    Each identity gives ``tracks`` tracklets per modality (random camera, pose and jitter),
    ``frames`` frames of each.
    """
    world = World(WORLD_OFFSET + seed, *RENDER_SIZE)
    index, images, caption_of, pid_of, infrared = {}, [], [], [], []
    for pid in range(1, num_ids + 1):
        rng = world.rng(6, pid)
        for modality in ("rgb", "ir"):
            texts = [caption(world.identity(pid), modality, shades) for shades in (True, False)]
            ids = [index.setdefault(text, len(index)) for text in texts]
            for track in range(tracks):
                cam = int(rng.integers(1, NUM_CAMS + 1))
                length = int(rng.integers(frames, 4 * frames))
                out = world.frames(pid, cam, [modality], length, (pid, modality == "ir", track))[modality]
                for t in np.linspace(0, length - 1, frames).round().astype(int):
                    img = Image.fromarray(out[t]).resize(FRAME_SIZE[::-1], Image.BILINEAR)
                    images.append(np.asarray(img).transpose(2, 0, 1))
                    caption_of.append(ids)
                    pid_of.append(pid)
                    infrared.append(modality == "ir")
    return dict(images=torch.from_numpy(np.stack(images)), captions=list(index), caption_of=torch.tensor(caption_of),
                pid=torch.tensor(pid_of), infrared=torch.tensor(infrared))


def preprocess(images, train, generator=None):
    """uint8 (N, 3, H, W) -> normalised float; in training a random shift (zero padding) and flip."""
    x = images.float().div_(255)
    if train:
        n, _, h, w = x.shape
        pad = 2  # the demo's crop padding (the authors' 10 pixels at 288x144, scaled)
        padded = F.pad(x, (pad, pad, pad, pad))
        dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
        x = torch.stack([p[:, y:y + h, c:c + w] for p, y, c in zip(padded, dy.tolist(), dx.tolist())])
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_image(clip, images):
    """CLIP's ``encode_image`` on frames of any size that the patches tile: the positional grid is
    resized to the frames' grid by :func:`~vld_plugin.models.clip_loader.resize_pos_embed`, the
    resize that ``model.pretrained`` applies when it loads the file."""
    v = clip.visual
    x = v.conv1(images)
    grid = x.shape[2:]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(len(x), 1, -1), x], dim=1)
    x = v.ln_pre(x + resize_pos_embed(v.positional_embedding, grid))
    return v.ln_post(v.transformer(x)[:, 0]) @ v.proj


def encode_text(clip, tokens):
    """CLIP's ``encode_text`` on tokens cut after the longest caption's EOT (causal: same features)."""
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    x = clip.token_embedding(tokens) + clip.positional_embedding[:length]
    x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
    x = clip.ln_final(x)
    return x[torch.arange(len(tokens)), tokens.argmax(dim=-1)] @ clip.text_projection


def used_tokens(tokenizer, captions):
    """Token ids of the captions and of every IMLP prompt template (SOS, EOT and padding included)."""
    texts = list(captions) + [t.format("X") for t in TEMPLATES.values()]
    return torch.unique(torch.cat([tokenizer(texts).flatten(), torch.tensor([0])]))


def contrastive_loss(image_features, text_features, caption_of, logit_scale):
    """CLIP's symmetric loss over a batch's distinct captions: each image has one true caption;
    a caption's probability mass is shared equally by the images it describes."""
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.T  # (images, captions)
    image_to_text = F.cross_entropy(logits, caption_of)
    target = F.one_hot(caption_of, text_features.shape[0]).T.float()
    text_to_image = -(target / target.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return (image_to_text + text_to_image) / 2


@torch.no_grad()
def evaluate(clip, data, tokens):
    """Top-1 image-to-caption accuracy among all full captions of ``data`` (from :func:`build_pairs`,
    ``tokens`` its tokenised captions) and cross-modal frame Rank-1 (infrared frames against
    visible frames by visual feature)."""
    was_training = clip.training
    clip.eval()
    feats = torch.cat([encode_image(clip, preprocess(b, False)) for b in data["images"].split(256)])
    feats = F.normalize(feats, dim=-1)
    full = torch.unique(data["caption_of"][:, 0])
    text = F.normalize(encode_text(clip, tokens[full]), dim=-1)
    top1 = full[(feats @ text.T).argmax(1)].eq(data["caption_of"][:, 0]).float().mean().item()
    ir, pid = data["infrared"], data["pid"]
    nearest = (feats[ir] @ feats[~ir].T).argmax(1)
    rank1 = pid[~ir][nearest].eq(pid[ir]).float().mean().item()
    clip.train(was_training)
    return top1, rank1


def pretrain(seed=0, num_ids=6000, steps=6000, batch_size=128, lr=1e-3, weight_decay=0.1, warmup=100, terse=0.5,
             log=print):
    """Train the miniature CLIP from ``seed``; return (model, the captions it saw).

    Each step draws ``batch_size`` of the frames (2 visible and 2 infrared per identity); each is
    paired with its terse caption with probability ``terse``, else with its full one. AdamW, linear
    warm-up then cosine; the held-out figures in the log are on 100 identities of another seed.
    """
    torch.manual_seed(seed)
    start = time.time()
    data = build_pairs(num_ids, seed)
    val = build_pairs(100, seed + 500)  # held-out identities (another world seed), for the log only
    images, caption_of, captions = data["images"], data["caption_of"], data["captions"]
    log(f"rendered {len(images)} frames of {num_ids} identities ({len(captions)} captions) "
        f"in {time.time() - start:.0f}s")
    tokenizer = open_clip.get_tokenizer(CLIP_NAME)
    tokens, val_tokens = tokenizer(captions), tokenizer(val["captions"])
    clip = create_clip(clip_config(CLIP_NAME, IMAGE_SIZE, **ARCH))
    decay = [p for n, p in clip.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in clip.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / steps))))
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        variant = (torch.rand(batch_size, generator=generator) < terse).long()
        present, local = torch.unique(caption_of[index, variant], return_inverse=True)
        image_features = encode_image(clip, preprocess(images[index], True, generator))
        text_features = encode_text(clip, tokens[present])
        loss = contrastive_loss(image_features, text_features, local, clip.logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            clip.logit_scale.clamp_(0, math.log(100))
        if (step + 1) % 250 == 0 or step + 1 == steps:
            top1, rank1 = evaluate(clip, val, val_tokens)
            log(f"step {step + 1}/{steps}  loss {loss.item():.3f}  held-out ids: image-to-caption top-1 "
                f"{100 * top1:.1f}%, infrared-to-visible frame Rank-1 {100 * rank1:.1f}%  {time.time() - start:.0f}s")
    return clip.eval(), captions


def save_weights(clip, captions, path):
    """Save ``clip`` as an OpenAI-style fp16 state dict; unused token-embedding rows become zeros."""
    state = {k: v.detach().half().clone() for k, v in clip.state_dict().items() if k != "attn_mask"}
    keep = used_tokens(open_clip.get_tokenizer(CLIP_NAME), captions)
    table = torch.zeros_like(state["token_embedding.weight"])
    table[keep] = state["token_embedding.weight"][keep]
    state["token_embedding.weight"] = table
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)  # an interrupted save leaves the old file
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=DEFAULT_WEIGHTS, help="weights file to write")
    parser.add_argument("--num-ids", type=int, default=6000, help="pretraining identities")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # float sums differ with the thread count: one thread reproduces the file exactly
    start = time.time()
    clip, captions = pretrain(args.seed, args.num_ids, args.steps, args.batch_size, args.lr)
    path = save_weights(clip, captions, args.out)
    print(f"wrote {path} ({os.path.getsize(path) / 2 ** 20:.1f} MiB) in {time.time() - start:.0f}s "
          f"on {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
