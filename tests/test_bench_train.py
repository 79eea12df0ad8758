"""The training benchmark's core on the tiny model (CPU, 2 timed steps): figures positive and consistent;
results go outside the checkout unless ``--out`` says otherwise."""
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def load_bench(monkeypatch):
    """Loads benchmarks/bench_train.py as ``python benchmarks/bench_train.py`` runs it (its folder first on
    the import path, for ``_common``)."""
    monkeypatch.syspath_prepend(os.path.join(REPO, "benchmarks"))

    def load():
        spec = importlib.util.spec_from_file_location("bench_train", os.path.join(REPO, "benchmarks", "bench_train.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("vcm"))  # the first benchmark call writes the synthetic copy


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_benchmark_reports_consistent_throughput_and_memory(data_root, load_bench):
    bench = load_bench()
    report = bench.benchmark("cpu", batch_size=8, num_instances=2, iters=2, warmup=1, tiny=True, workers=0,
                             num_classes=16, data_root=data_root)
    assert set(report["modes"]) == {"loader", "tensors"}
    assert report["input"] == "64x32" and report["identities_per_batch"] == 2
    for r in report["modes"].values():
        assert r["iters"] == 2 and r["tracklets_per_iter"] == 8
        assert r["s_per_iter"] > 0 and r["tracklets_per_s"] > 0 and r["peak_memory_gb"] > 0.05
        assert r["tracklets_per_s"] * r["s_per_iter"] == pytest.approx(8, rel=1e-6)
        assert r["s_per_epoch"] == pytest.approx(200 * r["s_per_iter"], rel=1e-9)
    goals = report["goals"]
    assert goals["epoch_s"]["met"] is None and goals["note"]  # the tiny CPU run is not judged
    assert goals["epoch_s"]["measured"] == pytest.approx(report["modes"]["loader"]["s_per_epoch"], abs=0.01)
    text = bench.markdown(report, "smoke")
    assert "| loader |" in text and "not applicable" in text


def test_goals_are_judged_on_the_full_gpu_setting(load_bench):
    bench = load_bench()
    base = {"tiny": False, "device": "cuda:0", "amp": "bf16", "input": "288x144", "seq_len": 6, "batch_tracklets": 32}
    fast = dict(base, modes={"loader": {"s_per_epoch": 30.0, "peak_memory_gb": 25.0}})
    goals = bench.judge_goals(fast)
    assert goals["epoch_s"]["met"] is True and goals["peak_memory_gb"]["met"] is False
    slow = dict(base, amp="off", modes={"tensors": {"s_per_epoch": 50.0, "peak_memory_gb": 5.0}})
    goals = bench.judge_goals(slow)
    assert goals["measured_on"] == "tensors" and goals["epoch_s"]["met"] is None


def test_benchmark_rejects_too_few_classes_for_the_data(data_root, load_bench):
    with pytest.raises(ValueError, match="below the 12 training identities"):
        load_bench().benchmark("cpu", batch_size=8, num_instances=2, iters=1, warmup=0, tiny=True, workers=0,
                               num_classes=4, data_root=data_root)


def test_benchmark_rejects_unknown_modes(load_bench):
    with pytest.raises(ValueError, match="unknown mode"):
        load_bench().benchmark("cpu", modes=["bogus"], tiny=True)


def snapshot(folder):
    """{path: mtime} of the files under ``folder``, bytecode caches left out."""
    return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
            for d, dirs, files in os.walk(folder) if "__pycache__" not in d for f in files}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_results_go_outside_the_checkout_by_default(data_root, tmp_path, monkeypatch, capsys, load_bench):
    monkeypatch.delenv("VLD_BENCH_OUT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    before = snapshot(os.path.join(REPO, "benchmarks"))
    load_bench().main(["--tiny", "--device", "cpu", "--iters", "1", "--warmup", "0", "--workers", "0",
                       "--modes", "tensors", "--batch-size", "8", "--num-instances", "2", "--num-classes", "16",
                       "--data-root", data_root])
    out = tmp_path / ".cache" / "vld_plugin" / "benchmarks"
    assert sorted(p.name for p in out.iterdir()) == ["bench_train_cpu_tiny.json", "bench_train_cpu_tiny.md"]
    assert f"written {out / 'bench_train_cpu_tiny'}.json/.md" in capsys.readouterr().out
    assert snapshot(os.path.join(REPO, "benchmarks")) == before
