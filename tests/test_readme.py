"""The README's plain-torchreid snippet runs as written (on a tiny synthetic copy, one epoch)."""
import os
import re

from vld_plugin.data.synthetic import generate_vcm

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_snippet(name):
    text = open(README).read()
    match = re.search(rf"<!-- snippet: {name} .*?-->\n```python\n(.*?)```", text, re.S)
    assert match, f"README lost the snippet '{name}'"
    return match.group(1)


def test_torchreid_reuse_snippet_trains_and_evaluates(tmp_path):
    root = tmp_path / "data"
    # torchreid's own evaluation needs 50+ gallery tracklets per query
    generate_vcm(str(root), num_ids=26, seed=7, height=32, width=16, num_cams=3, min_len=12, max_len=13,
                 short_fraction=0.0, test_fraction=0.7)
    code = readme_snippet("torchreid-reuse")
    # the same code, made small: our synthetic root, tiny frames, no download, one epoch
    for old, new in [('root="datasets"', f'root="{root}"'), ("height=256, width=128", "height=32, width=16"),
                     ("pretrained=True", "pretrained=False"),
                     ("max_epoch=30, eval_freq=10", "max_epoch=1, eval_freq=1"),
                     ('save_dir="log/osnet_vcm_torchreid"', f'save_dir="{tmp_path / "run"}"')]:
        assert old in code, f"README snippet no longer contains {old!r}"
        code = code.replace(old, new)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    engine = namespace["engine"]
    assert namespace["datamanager"].num_train_pids == 8
    rank1 = engine.test(ranks=[1, 5])
    assert 0.0 <= rank1 <= 1.0
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "run"))
