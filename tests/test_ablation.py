import json
import os
import shlex
import sys

import pytest

from projects.VLD import ablation
from projects.VLD.ablation import build_plan, main, run_ablation, run_streaming
from vld_plugin.errors import AblationError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
FULL = ["model.name", "vld", "vld.imlp", "True", "vld.sth", "True", "vld.sta", "True"]


def plan(tables, config_file="", **kw):
    entries, runs = build_plan(config_file, tables, root="/nonexistent/ablation", **kw)
    return [(e["table"], e["row"], e["overrides"], e["run"], e["skipped"]) for e in entries], runs


def test_plan_table_iii_components():
    rows, runs = plan(["III"])
    assert [r[:3] for r in rows] == [
        ("III", "B", ["model.name", "vld", "vld.imlp", "False", "vld.sth", "False", "vld.sta", "False"]),
        ("III", "B+IMLP", ["model.name", "vld", "vld.imlp", "True", "vld.sth", "False", "vld.sta", "False"]),
        ("III", "B+STP", ["model.name", "vld", "vld.imlp", "False", "vld.sth", "True", "vld.sta", "True"]),
        ("III", "B+IMLP+STP", FULL),
    ]
    # default config: hub at block 9, template 4
    assert [r[3] for r in rows] == ["vld_imlp0_sth0_sta0_hub9_tpl4", "vld_imlp1_sth0_sta0_hub9_tpl4",
                                    "vld_imlp0_sth1_sta1_hub9_tpl4", "vld_imlp1_sth1_sta1_hub9_tpl4"]
    assert runs["vld_imlp1_sth1_sta1_hub9_tpl4"]["save_dir"] == "/nonexistent/ablation/vld_imlp1_sth1_sta1_hub9_tpl4"
    assert [e["paper"] for e in build_plan("", ["III"])[0]][0] == [67.0, 52.6, 64.2, 49.3]


def test_plan_tables_v_vi_vii_share_runs():
    rows, runs = plan(["V"])
    assert [r[:3] for r in rows] == [
        ("V", "B+IMLP", ["model.name", "vld", "vld.imlp", "True", "vld.sth", "False", "vld.sta", "False"]),
        ("V", "B+IMLP+STH", ["model.name", "vld", "vld.imlp", "True", "vld.sth", "True", "vld.sta", "False"]),
        ("V", "B+IMLP+STH+STA", FULL),
    ]
    rows, _ = plan(["VI"])
    assert [r[:3] for r in rows] == [("VI", str(k), FULL + ["vld.hub_start_block", str(k)]) for k in range(11)]
    assert all(r[4] is None for r in rows)
    rows, _ = plan(["VII"])
    assert [r[:3] for r in rows] == [("VII", str(k), FULL + ["vld.prompt_template", str(k)]) for k in range(1, 5)]
    # the full VLD (III last row, V last row, VI row 9, VII row 4) and B+IMLP run once each
    rows, runs = plan(["III", "V", "VI", "VII"])
    assert len(rows) == 4 + 3 + 11 + 4 and len(runs) == 4 + 1 + 10 + 3
    full = {(t, r) for t, r, _, run, _ in rows if run == "vld_imlp1_sth1_sta1_hub9_tpl4"}
    assert full == {("III", "B+IMLP+STP"), ("V", "B+IMLP+STH+STA"), ("VI", "9"), ("VII", "4")}
    # extra overrides reach every run and change the plan
    rows, runs = plan(["VII"], opts=["vld.hub_start_block", "5"])
    assert rows[0][3] == "vld_imlp1_sth1_sta1_hub5_tpl1"
    assert runs[rows[0][3]]["overrides"] == ["vld.hub_start_block", "5"] + FULL + ["vld.prompt_template", "1"]


def test_plan_skips_rows_the_model_cannot_build():
    rows, runs = plan(["IV"])
    assert [(r[1], r[4]) for r in rows] == [("TAP", None), ("Conv1D", None), ("Transf", None),
                                             ("Transf_cls", None), ("STP", None)]
    assert rows[1][2] == ["model.name", "vld", "vld.imlp", "True", "vld.sth", "False", "vld.sta", "False",
                          "vld.temporal_fusion", "conv1d"]
    assert rows[1][3] == "vld_imlp1_sth0_sta0_hub9_tpl4_conv1d" and len(runs) == 5
    rows, _ = plan(["VI"], config_file=DEMO)  # the demo model has 4 blocks
    assert [r[1] for r in rows if r[4] is None] == ["0", "1", "2", "3"]
    assert rows[4][4] == "vld.hub_start_block 4 needs more than vld.layers 4 blocks"


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(AblationError, match="unknown table"):
        build_plan("", ["VIII"])
    with pytest.raises(AblationError, match=r"row\(s\) \['III:C'\]"):
        build_plan("", ["III"], rows=["III:C"])
    assert main(["--config-file", DEMO, "--tables", "IX", "--dry-run"]) == 2
    assert main(["--config-file", DEMO, "--dry-run", "vld.nope", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown table(s) ['IX']" in err and "unknown config key 'vld.nope'" in err


def test_dry_run_prints_plan_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "abl"
    assert main(["--config-file", DEMO, "--tables", "V", "--root", str(root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "3 distinct run(s)" in out and "vld_imlp1_sth1_sta0_hub1_tpl4" in out
    assert f"data.save_dir {root}/vld_imlp1_sth0_sta0_hub1_tpl4" in out
    assert not root.exists()


@pytest.mark.slow
def test_run_streaming_keeps_the_last_error_line():
    code = ("import sys; print('progress\\r50%\\rdone', file=sys.stderr); "
            "print('error: bad thing', file=sys.stderr); sys.exit(3)")
    assert run_streaming([sys.executable, "-c", code]) == (3, "error: bad thing")


@pytest.mark.slow
def test_mini_run_of_two_variants_writes_the_combined_table(tmp_path, monkeypatch, capsys, mini_data):
    opts = ["model.pretrained", "none", "data.root", mini_data, "data.synthetic", "False", "data.height", "32",
            "data.width", "16", "data.workers", "0", "video.seq_len", "4", "vld.layers", "2", "vld.text_layers", "1",
            "train.max_epoch", "1", "train.iters_per_epoch", "2", "train.batch_size", "8",
            "sampler.num_instances", "2", "test.batch_size", "64"]
    root = tmp_path / "abl"
    argv = ["--config-file", DEMO, "--tables", "III", "--rows", "III:B", "III:B+IMLP+STP", "--root", str(root)] + opts
    executed, streaming = [], ablation.run_streaming
    monkeypatch.setattr(ablation, "run_streaming", lambda args, env=None: executed.append(args) or streaming(args, env))
    assert main(argv) == 0
    # the commands printed are exactly the ones run
    printed = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines()
               if line.startswith("=> ablation run ")]
    assert printed == [shlex.join(args) for args in executed] and len(executed) == 2
    assert executed[0][:2] == [sys.executable, os.path.relpath(os.path.join(REPO, "projects", "VLD", "main.py"))]
    table = (root / "ablation.md").read_text()
    combined = json.loads((root / "ablation.json").read_text())
    assert [(r["table"], r["row"]) for r in combined["rows"]] == [("III", "B"), ("III", "B+IMLP+STP")]
    for row, run in zip(combined["rows"], ["vld_imlp0_sth0_sta0_hub1_tpl4", "vld_imlp1_sth1_sta1_hub1_tpl4"]):
        assert row["run"] == run
        results = json.loads((root / run / "results.json").read_text())["hitsz_vcm"]
        assert row["ours"] == results
        i2v, v2i = results["infrared-to-visible"], results["visible-to-infrared"]
        cells = [f"{100 * v:.1f}" for v in (i2v["rank1"], i2v["mAP"], v2i["rank1"], v2i["mAP"])]
        paper = row["paper"]
        line = next(s for s in table.splitlines() if s.startswith(f"| III     | {row['row']} "))
        values = [c.strip() for c in line.strip("|").split("|")]
        assert values[2:10] == [f"{paper[0]:.1f}", cells[0], f"{paper[1]:.1f}", cells[1],
                                f"{paper[2]:.1f}", cells[2], f"{paper[3]:.1f}", cells[3]]
        assert values[10] == run
    assert "--config-file" in table and "vld.sth False" in table  # the commands that produced the rows
    # the baseline has no STA, the full model has: different models were trained
    assert (root / "vld_imlp0_sth0_sta0_hub1_tpl4" / "checkpoint.pth").stat().st_size < \
        (root / "vld_imlp1_sth1_sta1_hub1_tpl4" / "checkpoint.pth").stat().st_size

    # finished runs are reused; a failing run is reported in its row and the exit code
    calls = []
    monkeypatch.undo()
    monkeypatch.setattr(ablation, "execute", lambda cfg_file, run: calls.append(run["save_dir"]) or "exit code 1: boom")
    entries, markdown, _, _ = run_ablation(DEMO, ["III"], opts, str(root), rows=["III:B", "III:B+STP"])
    assert calls == [str(root / "vld_imlp0_sth1_sta1_hub1_tpl4")]
    assert entries[0]["ours"] and entries[1]["failed"] == "exit code 1: boom"
    assert "vld_imlp0_sth1_sta1_hub1_tpl4 failed: exit code 1: boom" in markdown
    assert main(argv[:6] + ["III:B+STP"] + argv[7:]) == 1


def test_unusable_results_json_is_a_one_line_error(tmp_path):
    run = {"save_dir": str(tmp_path), "target": "hitsz_vcm"}
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(AblationError, match="cannot read .*results.json"):
        ablation.read_results(run)
    (tmp_path / "results.json").write_text('{"bupt_campus": {}}')
    with pytest.raises(AblationError, match="no results for target hitsz_vcm"):
        ablation.read_results(run)


def test_overrides_may_follow_the_table_names():
    args = ablation.parse_args(["--config-file", DEMO, "--tables", "III", "V", "train.max_epoch", "2", "--dry-run"])
    assert args.tables == ["III", "V"] and args.opts == ["train.max_epoch", "2"] and args.dry_run
    args = ablation.parse_args(["--config-file", DEMO, "--rows", "III:B", "vld.num_ctx", "2"])
    assert args.rows == ["III:B"] and args.tables == ["III", "V", "VI", "VII"] and args.opts == ["vld.num_ctx", "2"]
