"""One pass over a per-sample log into id/value columns (mmgpt_eval.runfolder), shared by check_run,
compare and gate; the one number rule; gate init's --limit all."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fakeruns import make_run

from mmgpt_eval.compare import compare_runs, metric_samples
from mmgpt_eval.errors import UserError
from mmgpt_eval.numbers import number
from mmgpt_eval.records import SAMPLES_SCHEMA
from mmgpt_eval.results import RunResults, check_run
from mmgpt_eval.runfolder import read_log


def _log(tmp_path, lines):
    p = tmp_path / "s.jsonl"
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return p


def test_read_log_columns(tmp_path):
    p = _log(
        tmp_path,
        [
            {SAMPLES_SCHEMA: {"version": 1, "task": "t", "fingerprint": "f"}},
            {"id": 1, "metrics": {"a": 1, "b": None}, "prompt": "x"},
            {"id": "2", "metrics": {"a": True, "b": 0.5}},
            {"id": "3", "metrics": {}},
        ],
    )
    log = read_log(p, ["a", "b", "a"])
    assert log.header == {"version": 1, "task": "t", "fingerprint": "f"}
    assert log.ids == ["1", "2", "3"] and log.values == {"a": [1.0, 1.0, None], "b": [None, 0.5, None]}
    assert log.metric("b") == (["2"], [0.5]) and log.metric("a", first=1) == (["1"], [1.0])
    assert [r.id for r in log.records()] == ["1", "2", "3"]


@pytest.mark.parametrize(
    "bad,msg",
    [
        ([{"metrics": {}}], "must be a JSON object with an id"),
        ([{"id": 1, "metrics": [1]}], "metrics must be an object"),
        ([{"id": 1, "metrics": {"a": "high"}}], "not a number"),
        ([{"id": 1, "metrics": {}}, {SAMPLES_SCHEMA: {}}], "a second header line"),
    ],
)
def test_read_log_refuses_malformed_records(tmp_path, bad, msg):
    p = _log(tmp_path, [{SAMPLES_SCHEMA: {"version": 1}}] + bad)
    with pytest.raises(UserError, match=msg):
        read_log(p, ["a"])


def test_one_read_serves_check_compare_and_gate(tmp_path, monkeypatch):
    """check_run reads each log once; compare and the gate's fetch reuse those columns."""
    import mmgpt_eval.results as results_mod

    rng = np.random.default_rng(0)
    a = make_run(tmp_path / "a", {"accuracy": (rng.random(50) < 0.5).astype(int).tolist()})
    b = make_run(tmp_path / "b", {"accuracy": (rng.random(50) < 0.6).astype(int).tolist()})
    calls = []
    real = results_mod.read_log
    monkeypatch.setattr(results_mod, "read_log", lambda *x, **k: calls.append(x[0]) or real(*x, **k))
    ra, rb = check_run(RunResults.load(a)), check_run(RunResults.load(b))
    comps = compare_runs(ra, rb)
    s = metric_samples(rb, "easyvqa", "accuracy")
    assert len(calls) == 2 and comps[0].n == 50 and len(s.ids) == 50


def test_compare_matches_record_by_record_reading(tmp_path):
    """metric_samples from the columns equals metric_samples from whole records (None dropped)."""
    vals = [0.5, None, 1.0, 0.25, None, 0.0]
    run = make_run(
        tmp_path / "r", {"accuracy": [0.0] * 6}, kind="continuous", record=lambda i: {"metrics": {"accuracy": vals[i]}}
    )
    res = RunResults.load(run)
    cols = metric_samples(res, "easyvqa", "accuracy")
    recs = metric_samples(res, "easyvqa", "accuracy", records=res.samples("easyvqa"))
    assert cols == recs and list(cols.ids) == ["0", "2", "3", "5"]


@pytest.mark.parametrize(
    "value,expected",
    [
        (1, 1.0),
        (2.5, 2.5),
        (True, 1.0),
        (False, 0.0),
        (np.float32(1.5), 1.5),
        (np.int64(3), 3.0),
        (np.bool_(True), 1.0),
        ("3", None),
        (None, None),
        (float("nan"), None),
        (math.inf, None),
        ([1], None),
    ],
)
def test_number(value, expected):
    assert number(value) == expected


def test_gate_init_limit_all():
    from mmgpt_eval.cli.gate import _limit_arg, run_config

    assert _limit_arg("all") is None and _limit_arg("ALL") is None and _limit_arg("12") == 12
    import argparse

    args = argparse.Namespace(model=None, limit=None, seed=0, batch_size=8)
    text = run_config(args, ["easyvqa"])
    assert "limit = None" not in text and "limit" in text
    args.limit = 12
    assert "limit = 12" in run_config(args, ["easyvqa"])


def test_v1_renames_are_the_dialog_tasks_and_need_no_task_discovery(monkeypatch):
    """Reading a version-1 file renames metrics from the schema's table; no task plugin is imported."""
    import mmgpt_eval.taskregistry as registry
    from mmgpt_eval.results import RENAMED_IN_VERSION_2
    from mmgpt_eval.taskregistry import discover

    assert RENAMED_IN_VERSION_2["dialog"] == discover()["dialog"].RENAMED_METRICS
    monkeypatch.setattr(registry, "discover", lambda *a, **k: pytest.fail("discover called"))
    tr = {
        "task": "dialog",
        "version": "1",
        "metrics": {"collapse_rate": 1.0, "x": 2.0},
        "metric_info": {"collapse_rate": {"kind": "binary"}, "x": {"kind": "continuous"}},
        "primary_metric": "collapse_rate",
        "n_samples": 1,
        "n_available": 1,
        "limit": None,
        "subset": "",
        "template": {},
        "generation": {},
    }
    d = {
        "schema": "mmgpt-eval/results",
        "schema_version": 1,
        "run": {},
        "model": {},
        "provenance": {},
        "tasks": {"dialog": tr},
    }
    r = RunResults.from_dict(d)
    assert r.tasks["dialog"].metrics == {"conv_collapse_rate": 1.0, "x": 2.0}
    assert r.tasks["dialog"].primary_metric == "conv_collapse_rate"


def test_read_log_positions_read_back_each_record(tmp_path):
    """Each record's position reads it back alone, with Windows and old-Mac line ends and blank lines;
    ``visit`` sees every record of the same read."""
    recs = [{"id": i, "metrics": {"a": i % 2}, "prediction": f"é{i}"} for i in range(6)]
    head = json.dumps({SAMPLES_SCHEMA: {"version": 1}})
    body = [json.dumps(r, ensure_ascii=False) for r in recs]
    p = tmp_path / "s.jsonl"
    ends = ["\n", "\r\n", "\n\n", "\r", "\r\n", "\n"]
    p.write_bytes((head + "\n" + "".join(b + e for b, e in zip(body, ends))).encode("utf-8"))
    seen = []
    log = read_log(p, ["a"], visit=seen.append)
    assert seen == recs and log.ids == [str(i) for i in range(6)] and log.values["a"] == [0, 1, 0, 1, 0, 1]
    assert [log.record(i) for i in range(6)] == recs
    assert [r.id for r in log.records()] == log.ids


def test_report_views_match_reading_every_record(tmp_path):
    """The report's per-task view from the log's columns gives what typed records give: ids, values,
    prediction texts and the records shown."""
    from mmgpt_eval.report.columns import RunColumn, TaskView, read_checked

    vals = [1.0, 0.0, 1.0, 0.0, 1.0]
    run = make_run(tmp_path / "r", {"accuracy": vals}, record=lambda i: {"prediction": [None, "x", 3, "", "é"][i]})
    col = RunColumn("r", read_checked(run))
    fast = col.view("easyvqa")
    typed = col.by_id("easyvqa")
    slow = TaskView(list(typed), typed=typed)
    assert fast._log is not None and fast.ids == slow.ids
    for i in slow.ids:
        assert fast.value(i, "accuracy") == slow.value(i, "accuracy")
        assert fast.prediction_text(i) == slow.prediction_text(i)
        assert fast.record(i) == slow.record(i)


def test_export_rows_from_the_check_match_a_fresh_read(tmp_path):
    """The samples table made from the rows the check's read gathered equals the one read afresh,
    records beyond n_samples left out and metric columns in order of first appearance."""
    from mmgpt_eval.frames import collect_runs, samples_frames

    import pandas as pd

    a = make_run(tmp_path / "a", {"accuracy": [1.0, 0.0, 1.0]}, record=lambda i: {"metrics": {f"m{2 - i}": i}})
    b = make_run(tmp_path / "b", {"accuracy": [0.0, 1.0, 1.0]}, record=lambda i: {"generated_tokens": None})
    extra = {"id": "late", "metrics": {"accuracy": 1.0, "zz": 1}, "prediction": "p"}
    with (b / "samples" / "easyvqa.jsonl").open("a") as f:  # an older extra after the run's samples
        f.write(json.dumps(extra) + "\n")
    res = json.loads((b / "results.json").read_text())
    res["tasks"]["easyvqa"]["fingerprint"] = "x"  # the log's: the extra is the runner's, kept after the samples
    (b / "results.json").write_text(json.dumps(res))
    fresh = samples_frames(collect_runs([a, b]))
    frs = collect_runs([a, b])
    for fr in frs:
        check_run(fr.results, {t: fr.sample_rows(t).add for t in fr.results.tasks})
    gathered = samples_frames(frs)
    pd.testing.assert_frame_equal(gathered, fresh)
    assert "late" not in set(fresh["id"]) and list(fresh.columns)[-3:] == ["metric_m2", "metric_m1", "metric_m0"]
