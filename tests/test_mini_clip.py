"""The demo's miniature CLIP: captions, the committed weights file through the real loading path
(``model.pretrained``), and fine-tuning from it against random initialisation."""
import json
import os

import open_clip
import pytest
import torch

from vld_plugin.config import load_config
from vld_plugin.data.synthetic import World, caption, generate_vcm
from vld_plugin.launch import build_model, main
from vld_plugin.models import mini_clip
from vld_plugin.models.clip_loader import build_clip, clip_config, create_clip
from vld_plugin.models.prompt import TEMPLATES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
WEIGHTS = os.path.join(REPO, "vld_plugin", "weights", "mini_clip.pt")
COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")


def test_captions_describe_attributes_and_infrared_has_no_colour():
    world = World(1, 128, 64)
    for pid in range(1, 41):
        ident = world.identity(pid)
        visible, infrared = caption(ident, "rgb"), caption(ident, "ir")
        assert any(c in visible for c in COLOURS + ("grey",))
        assert not any(c in infrared for c in COLOURS)
        assert ("backpack" in visible) == (ident["bag"] == 1) and ("hand bag" in visible) == (ident["bag"] == 2)
        assert visible.endswith("day conditions.") and infrared.endswith("night conditions.")
        assert visible.split(",")[0] == infrared.split(",")[0]  # body shape: the same words
        terse = caption(ident, "rgb", shades=False), caption(ident, "ir", shades=False)
        assert terse[0].replace("day", "night") == terse[1]  # without shades only the modality differs


def test_pretraining_identities_are_disjoint_from_the_demo():
    demo = World(1, 128, 64)  # the demo's dataset (data.synthetic: world seed 1, ids 1..70)
    pretraining = World(mini_clip.WORLD_OFFSET + 0, 128, 64)  # --seed 0
    key = ("height", "build", "head", "leg", "gait", "swing")
    demo_ids = {tuple(demo.identity(p)[k] for k in key) for p in range(1, 71)}
    assert not demo_ids & {tuple(pretraining.identity(p)[k] for k in key) for p in range(1, 6001)}


def test_committed_file_loads_through_model_pretrained():
    assert os.path.getsize(WEIGHTS) < 4 * 2 ** 20
    cfg = load_config(DEMO)  # the demo points to the committed file (relative to the repository root)
    assert os.path.samefile(os.path.join(REPO, cfg.model.pretrained), WEIGHTS)
    assert os.path.samefile(mini_clip.DEFAULT_WEIGHTS, WEIGHTS)
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values())  # as OpenAI's files
    model = build_model(load_config(DEMO, ["model.pretrained", WEIGHTS]), num_classes=5)
    # every visual weight equals the file's; the 8x8 positional grid is resized to the frames' 8x4
    for name, value in model.visual.state_dict().items():
        if name != "positional_embedding":
            assert torch.equal(value.half(), state["visual." + name]), name
    assert model.visual.positional_embedding.shape == (1 + 8 * 4, 64)
    assert torch.equal(model.visual.positional_embedding[0].half(), state["visual.positional_embedding"][0])
    for name, value in model.text_encoder.transformer.state_dict().items():
        assert torch.equal(value.half(), state["transformer." + name]), name
    # the prompts' fixed token embeddings are the file's rows (trained where a caption uses the token)
    tokens = open_clip.get_tokenizer(mini_clip.CLIP_NAME)([TEMPLATES[4].format("X X X X")])[0]
    table = state["token_embedding.weight"].float()
    assert torch.equal(model.prompt_learner.token_prefix[0], table[tokens[:2]])
    assert table[tokens[:14]].abs().sum(1).gt(0).all()
    assert table.abs().sum(1).gt(0).sum() < 1000  # rows no caption or prompt uses are zeros


def test_committed_file_matches_captions_of_unseen_identities():
    """Zero-shot image-to-caption retrieval on identities of another world seed: far above chance."""
    clip = build_clip(mini_clip.CLIP_NAME, mini_clip.IMAGE_SIZE, WEIGHTS, **mini_clip.ARCH).eval()
    data = mini_clip.build_pairs(20, seed=77)
    tokens = open_clip.get_tokenizer(mini_clip.CLIP_NAME)(data["captions"])
    top1, _ = mini_clip.evaluate(clip, data, tokens)
    assert top1 > 0.7  # 40 captions (20 identities x 2 modalities): chance 2.5%; the committed file: 94%
    random = build_clip(mini_clip.CLIP_NAME, mini_clip.IMAGE_SIZE, None, **mini_clip.ARCH).eval()
    assert mini_clip.evaluate(random, data, tokens)[0] < 0.15


@pytest.mark.slow
def test_fine_tuning_from_the_mini_clip_beats_random_init(tmp_path):
    """The same short fine-tune (demo config, few steps) from the committed file and from random
    weights, on a small synthetic HITSZ-VCM copy of its own identities."""
    root = tmp_path / "data"
    generate_vcm(str(root / "HITSZ-VCM"), num_ids=40, seed=5, test_fraction=0.5, max_len=18)
    short = ["data.root", str(root), "data.workers", "0", "train.max_epoch", "3", "train.iters_per_epoch", "10",
             "train.warmup_epochs", "1", "test.eval_freq", "3"]
    rank1 = {}
    for name, weights in (("mini_clip", WEIGHTS), ("random", "none")):
        run = tmp_path / name
        assert main(["--config-file", DEMO, "data.save_dir", str(run), "model.pretrained", weights] + short) == 0
        results = json.load(open(run / "results.json"))["hitsz_vcm"]
        rank1[name] = [results[p]["rank1"] for p in ("infrared-to-visible", "visible-to-infrared")]
    for pretrained, random in zip(rank1["mini_clip"], rank1["random"]):
        assert pretrained > 0.2 and pretrained > random + 0.15  # 20 test ids: chance 5%


def test_pretraining_script_reproduces_its_file_from_the_seed(tmp_path, capsys):
    """``python -m vld_plugin.models.mini_clip`` at a toy size: the same seed writes the same weights
    (trained: not the initial ones), and the file loads through the ``model.pretrained`` path."""
    for name in "ab":  # main() sets one thread (restored after the test by conftest)
        mini_clip.main(["--seed", "0", "--out", str(tmp_path / f"{name}.pt"), "--num-ids", "6", "--steps", "2",
                        "--batch-size", "8"])
    assert "step 2/2" in capsys.readouterr().out
    a, b = (torch.load(tmp_path / f"{name}.pt", weights_only=True) for name in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)  # pretrain()'s initial weights
    initial = create_clip(clip_config(mini_clip.CLIP_NAME, mini_clip.IMAGE_SIZE, **mini_clip.ARCH))
    change = (initial.visual.proj.detach().half() - a["visual.proj"]).abs().max()
    assert 0 < change < 0.01  # two small steps from the seed's initialisation (weights ~0.1; another seed: ~0.6)
    clip = build_clip(mini_clip.CLIP_NAME, mini_clip.IMAGE_SIZE, str(tmp_path / "a.pt"), **mini_clip.ARCH)
    assert torch.equal(clip.visual.proj.detach().half(), a["visual.proj"])
