"""The README's plain-torchreid snippet runs as written (on a tiny synthetic copy, one epoch)."""
import os
import re

import pytest
from fakes import torchreid_engine_rank1

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_snippet(name):
    text = open(README).read()
    match = re.search(rf"<!-- snippet: {name} .*?-->\n```python\n(.*?)```", text, re.S)
    assert match, f"README lost the snippet '{name}'"
    return match.group(1)


def test_torchreid_reuse_snippet_trains_and_evaluates(tmp_path, torchreid_data):
    root = torchreid_data
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
    # torchreid evaluated the infrared-to-visible protocol of our dataset: the same Rank-1 from its features
    assert rank1 == pytest.approx(torchreid_engine_rank1(engine, namespace["datamanager"]), abs=1e-9)
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "run"))
