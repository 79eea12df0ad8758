import hashlib
import os

import cv2
import numpy as np
import pytest

from vld_plugin.data.synthetic import generate_vcm, main

SMALL = dict(num_ids=6, height=32, width=16, num_cams=2, min_len=12, max_len=13)


def digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            h.update(os.path.relpath(os.path.join(dirpath, f), root).encode())
            h.update(open(os.path.join(dirpath, f), "rb").read())
    return h.hexdigest()


def test_deterministic_by_seed(tmp_path):
    a, b, c = (str(tmp_path / x) for x in "abc")
    generate_vcm(a, seed=1, **SMALL)
    generate_vcm(b, seed=1, **SMALL)
    generate_vcm(c, seed=2, **SMALL)
    assert digest(a) == digest(b) != digest(c)


@pytest.mark.slow
def test_cli_writes_real_layout_and_infrared_is_gray(tmp_path, capsys):
    root = str(tmp_path / "v")
    main(["--format", "vcm", "--root", root, "--num-ids", "5", "--height", "32", "--width", "16", "--layout", "flat"])
    assert "wrote HITSZ-VCM copy" in capsys.readouterr().out
    names = open(os.path.join(root, "info", "train_name.txt")).read().split()
    first = names[0]
    path = os.path.join(root, first[:4], "ir" if first[5] == "1" else "rgb", "D" + first.split("D")[1].split("T")[0],
                        first.split("F", 1)[1])
    assert os.path.isfile(path)
    ir = [os.path.join(d, f) for d, _, fs in os.walk(root) if os.sep + "ir" + os.sep in d + os.sep for f in fs]
    img = cv2.imread(ir[0]).astype(int)
    assert img.shape == (32, 16, 3) and np.abs(img[..., 0] - img[..., 2]).max() <= 8  # grayscale (JPEG noise)
    rgb = [os.path.join(d, f) for d, _, fs in os.walk(root) if os.sep + "rgb" + os.sep in d + os.sep for f in fs]
    spread = [np.abs(cv2.imread(p).astype(int)[..., 0] - cv2.imread(p).astype(int)[..., 2]).max() for p in rgb[:20]]
    assert max(spread) > 40
    main(["--format", "bupt", "--root", str(tmp_path / "b"), "--num-ids", "6", "--height", "16", "--width", "8"])
    assert "wrote BUPTCampus copy" in capsys.readouterr().out
    for line in open(os.path.join(tmp_path, "b", "train.txt")).read().splitlines():
        pid, mod, cam, tid = line.split(" ")
        assert pid.isdigit() and mod == "RGB/IR" and tid.isdigit()
        assert cam in ("LS3", "G25", "CQ1", "W4", "TSG1", "TSG2")
