"""Ranked-retrieval and distance-histogram figures written as PNG from synthetic JPEG tracklets."""

import numpy as np
import pytest
from PIL import Image

from vld_plugin.errors import EvaluationError, ImageReadError
from vld_plugin.evaluation.visualize import plot_distance_histogram, plot_ranked_retrieval, visualize_protocols
from vld_plugin.modality import INFRARED, VISIBLE, Protocol


def tracklets(root, prefix, count, frames=4):
    out = []
    for t in range(count):
        paths = []
        for f in range(frames + t % 3):
            path = root / f"{prefix}{t}_{f}.jpg"
            Image.new("RGB", (32, 64), (40 * t % 255, 30 * f, 200)).save(path)
            paths.append(str(path))
        out.append(paths)
    return out


def colour_pixels(png, rgb, tol=40):
    a = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return int((np.abs(a - rgb).max(-1) < tol).sum())


def test_ranked_retrieval_png(tmp_path):
    q_paths, g_paths = tracklets(tmp_path, "q", 2), tracklets(tmp_path, "g", 5)
    q_pids, g_pids = [1, 2], [1, 3, 2, 1, 4]
    # query 0 ranks g3 (pid 1), g1, g0 (pid 1 but same camera: left out), g2; query 1: g2 (pid 2) first
    d = np.array([[0.3, 0.2, 0.4, 0.1, 0.9], [0.5, 0.4, 0.1, 0.6, 0.2]])
    out = plot_ranked_retrieval(d, q_paths, g_paths, q_pids, g_pids, str(tmp_path / "figs" / "ranked.png"),
                                q_camids=[0, 0], g_camids=[0, 1, 1, 1, 1], topk=3, frame_size=(64, 32))
    img = Image.open(out)
    assert img.format == "PNG"
    # a row: query (6 frames of 32 px, capped at the tracklet's 4-5) + 3 cells of 32 px, borders and gaps
    assert 300 <= img.width <= 420 and 150 <= img.height <= 220
    # query 0: green, red, red (g3, g1, g2); query 1: green, red, red (g2, g4, g1)
    green, red = colour_pixels(out, (0, 170, 0)), colour_pixels(out, (220, 0, 0))
    assert green > 0 and red == pytest.approx(2 * green, rel=0.1)


def test_ranked_retrieval_bad_images(tmp_path):
    q_paths, g_paths = tracklets(tmp_path, "q", 1), tracklets(tmp_path, "g", 2)
    g_paths[1][0] = str(tmp_path / "missing.jpg")
    args = (np.array([[0.2, 0.1]]), q_paths, g_paths, [1], [1, 2], str(tmp_path / "r.png"))
    with pytest.raises(ImageReadError, match="image file not found: .*missing.jpg"):
        plot_ranked_retrieval(*args, gallery_frames=4)
    g_paths[1][0] = str(tmp_path / "corrupt.jpg")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageReadError, match="cannot decode image .*corrupt.jpg: the file is .*corrupt or not an im"):
        plot_ranked_retrieval(*args, gallery_frames=4)
    with pytest.raises(EvaluationError, match="1 query / 1 gallery tracklets given for a 1x2 distmat"):
        plot_ranked_retrieval(args[0], q_paths, g_paths[:1], *args[3:])


def test_distance_histogram_stats_and_png(tmp_path):
    d = np.array([[1.0, 3.0], [4.0, 2.0]])
    stats = plot_distance_histogram(d, [1, 2], [1, 2], str(tmp_path / "h.png"), bins=10)
    assert stats == pytest.approx({"intra_mean": 1.5, "inter_mean": 3.5, "gap": 2.0})
    assert Image.open(tmp_path / "h.png").size == (600, 400)
    with pytest.raises(EvaluationError, match="both same- and different-identity pairs"):
        plot_distance_histogram(d, [1, 1], [1, 1], str(tmp_path / "x.png"))


def test_visualize_protocols_writes_each_figure(tmp_path):
    rng = np.random.default_rng(0)
    q_meta = {"pids": [1, 2, 3], "camids": [0, 0, 0], "modalities": [INFRARED] * 3,
              "img_paths": tracklets(tmp_path, "q", 3)}
    g_meta = {"pids": [1, 2, 3, 1], "camids": [1, 1, 1, 1], "modalities": [VISIBLE] * 4,
              "img_paths": tracklets(tmp_path, "g", 4)}
    protocols = [Protocol("infrared-to-visible", "query", INFRARED, "gallery", VISIBLE),
                 Protocol("visible-to-infrared", "gallery", VISIBLE, "query", INFRARED)]
    written = visualize_protocols(rng.standard_normal((3, 8)), q_meta, rng.standard_normal((4, 8)), g_meta,
                                  protocols, str(tmp_path / "vis"), remove_same_camera=True, topk=2)
    names = sorted(p.rsplit("/", 1)[1] for p in written)
    assert names == ["infrared-to-visible_distances.png", "infrared-to-visible_ranked.png",
                     "visible-to-infrared_distances.png", "visible-to-infrared_ranked.png"]
    assert all(Image.open(p).width > 100 for p in written)
