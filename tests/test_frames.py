"""Results as pandas DataFrames (mmgpt_eval.frames), `mmgpt-eval export`, and the README's example."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import mmgpt_eval
from fakeruns import make_run
from mmgpt_eval.api import SeriesResults
from mmgpt_eval.cli import main
from mmgpt_eval.compare import checkpoint_step, run_label
from mmgpt_eval.frames import metrics_frame, samples_frame, samples_frames
from mmgpt_eval.results import RunResults

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("csv", "parquet", "jsonl")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """One real run with a stored baseline (the README example reads it as api-out)."""
    import mmgpt_eval

    out = tmp_path_factory.mktemp("frames") / "api-out"
    mmgpt_eval.evaluate(
        model="tiny-openflamingo",
        ckpt="tiny-mmgpt",
        tasks=["easyvqa", "counting"],
        limit=20,
        baseline="tiny-openflamingo",
        output_dir=str(out),
        progress=False,
        report=False,
    )
    return out


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:] if line.strip()]


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)):
        return b is None or (isinstance(b, float) and math.isnan(b))
    return a == b


# ------------------------------------------------------------------------------------------ metrics
@pytest.mark.slow
def test_metrics_frame_equals_results_json(run_dir):
    res = json.loads((run_dir / "results.json").read_text())
    base = json.loads((run_dir / "baseline" / "results.json").read_text())
    m = metrics_frame(str(run_dir))
    comps = {(c["task"], c["metric"]): c for c in res["baseline"]["comparisons"]}
    expected = 0
    for role, d, folder in (("candidate", res, run_dir), ("baseline", base, run_dir / "baseline")):
        rows = m[m.role == role]
        assert set(rows.run_dir) == {str(folder)}
        assert set(rows.run) == {run_label(RunResults.load(folder))}
        for task, tr in d["tasks"].items():
            for metric, value in tr["metrics"].items():
                expected += 1
                row = rows[(rows.task == task) & (rows.metric == metric)]
                assert len(row) == 1, (role, task, metric)
                row = row.iloc[0]
                info = tr["metric_info"][metric]
                assert row.value == value
                assert (row.unit, bool(row.higher_is_better), row.kind) == (
                    info["unit"],
                    info["higher_is_better"],
                    info["kind"],
                )
                assert (row.n_samples, row.template, row.num_fewshot) == (
                    tr["n_samples"],
                    tr["template"]["name"],
                    tr["num_fewshot"],
                )
                assert bool(row.primary) == (metric == tr["primary_metric"])
                c = comps[(task, metric)] if role == "candidate" else {}
                for col, key in (
                    ("baseline_value", "baseline"),
                    ("delta", "delta"),
                    ("ci_low", "ci_low"),
                    ("ci_high", "ci_high"),
                    ("p_value", "p_value"),
                ):
                    assert _same(row[col], c.get(key)), (role, task, metric, col)
    assert len(m) == expected
    cand = m[m.role == "candidate"].iloc[0]
    assert cand.step == checkpoint_step(RunResults.load(run_dir)) and cand.checkpoint.endswith("tiny-mmgpt")
    assert m[m.role == "baseline"].step.isna().all()
    # the RunResults methods are the same frames; include_baseline=False keeps the run's own rows
    r = RunResults.load(run_dir)
    pd.testing.assert_frame_equal(mmgpt_eval.metrics_frame(r), m)
    assert set(mmgpt_eval.metrics_frame(r, include_baseline=False).role) == {"candidate"}


@pytest.mark.slow
def test_paired_delta_and_unpaired_values(run_dir):
    """delta is the mean per-sample difference over the samples both runs score (counting's mae: answers
    parsable in both); unpaired_delta is value - baseline_value; they differ when pairing drops samples."""
    m = metrics_frame(str(run_dir))
    cand = m[m.role == "candidate"]
    assert (cand.unpaired_delta - (cand.value - cand.baseline_value)).abs().max() < 1e-9
    assert (cand.n_paired <= cand.n_samples).all()
    s = samples_frame(str(run_dir), "counting")
    err = s.pivot(index="id", columns="role", values="metric_abs_error").dropna()
    mae = cand[(cand.task == "counting") & (cand.metric == "mae")].iloc[0]
    assert mae.n_paired == len(err) < mae.n_samples  # the tiny base leaves some counts unparsable
    assert mae.delta == pytest.approx((err["candidate"] - err["baseline"]).mean())
    assert mae.delta != pytest.approx(mae.unpaired_delta)
    acc = cand[(cand.task == "counting") & (cand.metric == "accuracy")].iloc[0]
    assert acc.n_paired == acc.n_samples and acc.delta == pytest.approx(acc.unpaired_delta)


@pytest.mark.slow
def test_samples_frame_equals_the_per_sample_logs(run_dir):
    r = RunResults.load(run_dir)
    for task in ("easyvqa", "counting"):
        s = mmgpt_eval.samples_frame(r, task)
        for role, folder in (("candidate", run_dir), ("baseline", run_dir / "baseline")):
            recs = _jsonl(folder / "samples" / f"{task}.jsonl")
            rows = s[s.role == role]
            assert len(rows) == len(recs) == 20
            for (_, row), rec in zip(rows.iterrows(), recs):
                assert row.task == task and row.run_dir == str(folder)
                assert row.id == str(rec["id"])
                assert (row.prompt, row.raw, row.prediction) == (rec["prompt"], rec["raw"], rec["prediction"])
                refs = rec["references"]
                assert row.references == (refs if isinstance(refs, str) else json.dumps(refs, sort_keys=True))
                assert row.images == ", ".join(rec["images"])
                assert row.generated_tokens == rec["generated_tokens"]
                assert bool(row.stopped_on_eos) == rec["stopped_on_eos"]
                for k, v in rec["metrics"].items():
                    assert _same(row[f"metric_{k}"], v), (task, rec["id"], k)
                others = [c for c in s.columns if c.startswith("metric_") and c[7:] not in rec["metrics"]]
                assert all(pd.isna(row[c]) for c in others)
    # accuracy of the frame = the results' accuracy
    s = samples_frame(r, "counting", include_baseline=False)
    assert set(s.role) == {"candidate"}
    assert 100 * s.metric_exact.mean() == pytest.approx(r.tasks["counting"].metrics["accuracy"])


def test_nested_per_sample_metrics_are_json_text_and_only_counted_records(tmp_path):
    run = make_run(
        tmp_path / "r",
        {"exact": [1, 0, 1]},
        task="dialog",
        record=lambda i: {"metrics": {"turns": [{"t": i}, None], "flag": None if i == 1 else True}},
    )
    # a record after the run's n_samples (an older extra the runner keeps) is not part of the run; the
    # fingerprint shared by results and log is what lets a reader accept it
    res = json.loads((run / "results.json").read_text())
    res["tasks"]["dialog"]["fingerprint"] = "x"
    (run / "results.json").write_text(json.dumps(res))
    with (run / "samples" / "dialog.jsonl").open("a") as f:
        f.write(json.dumps({"id": "extra", "metrics": {"exact": 0}}) + "\n")
    s = samples_frame(run, "dialog")
    assert list(s.id) == ["0", "1", "2"] and list(s.role) == ["candidate"] * 3
    assert list(s.metric_exact) == [1.0, 0.0, 1.0]
    assert json.loads(s.metric_turns[2]) == [{"t": 2}, None]
    assert s.metric_flag[0] == 1.0 and pd.isna(s.metric_flag[1])
    assert s.references[0] == '["r"]'


# ------------------------------------------------------------------------------------------ series
def _series(tmp_path: Path) -> Path:
    folder = tmp_path / "series"
    entries = []
    for step, vals in ((100, [0, 1, 0, 0]), (200, [1, 1, 0, 1])):
        make_run(folder / f"checkpoint_{step}", {"accuracy": vals}, step=step)
        entries.append(
            {
                "checkpoint": f"checkpoint_{step}.pt",
                "name": f"checkpoint_{step}",
                "step": float(step),
                "results": f"checkpoint_{step}/results.json",
            }
        )
    (folder / "series.json").write_text(
        json.dumps({"schema": "mmgpt-eval/series", "schema_version": 1, "checkpoints": entries})
    )
    return folder


def test_series_rows_have_roles_and_steps(tmp_path):
    folder = _series(tmp_path)
    m = metrics_frame(folder)
    assert list(m.role) == ["checkpoint", "checkpoint"] and list(m.step) == [100.0, 200.0]
    assert list(m.value) == [25.0, 75.0] and list(m.run) == ["checkpoint_100.pt", "checkpoint_200.pt"]
    assert "delta" not in m.columns  # no stored baseline comparison
    runs = [RunResults.load(folder / f"checkpoint_{s}") for s in (100, 200)]
    pd.testing.assert_frame_equal(metrics_frame(SeriesResults(runs=runs)), m)
    s = samples_frame(folder, "easyvqa")
    assert len(s) == 8 and list(s.groupby("run").metric_accuracy.sum()) == [1.0, 3.0]
    # a list of mixed inputs: a plain run is a candidate
    other = make_run(tmp_path / "plain", {"accuracy": [1, 1]}, label="mine")
    both = metrics_frame([other, str(folder)])
    assert list(both.role) == ["candidate", "checkpoint", "checkpoint"] and both.run[0] == "mine"


# ------------------------------------------------------------------------------------------ export
def _read_back(path: Path, fmt: str, like: pd.DataFrame) -> pd.DataFrame:
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=like.dtypes.to_dict())
    return pd.read_csv(path, dtype=like.dtypes.to_dict())


def _csv_view(df: pd.DataFrame) -> pd.DataFrame:
    """CSV cannot tell an empty text from a missing one: both read back as missing."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object or str(df[c].dtype) == "str":
            df[c] = df[c].replace("", None)
    return df


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_export_round_trips(run_dir, tmp_path, fmt, capsys):
    out = tmp_path / "tables"
    assert main(["export", str(run_dir), "--format", fmt, "--output", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / f"metrics.{fmt}"), str(out / f"samples.{fmt}")]
    m, s = metrics_frame(run_dir), samples_frames(run_dir)
    assert set(s.task) == {"easyvqa", "counting"} and len(s) == 80
    for name, df in (("metrics", m), ("samples", s)):
        back = _read_back(out / f"{name}.{fmt}", fmt, df)
        if fmt == "csv":
            pd.testing.assert_frame_equal(_csv_view(back), _csv_view(df))
        else:
            pd.testing.assert_frame_equal(back, df)
    assert sorted(p.name for p in out.iterdir()) == [f"metrics.{fmt}", f"samples.{fmt}"]  # no temporaries


@pytest.mark.slow
def test_export_tasks_and_no_baseline(run_dir, tmp_path):
    out = tmp_path / "t"
    assert (
        main(
            ["export", str(run_dir), "--output", str(out), "--format", "jsonl", "--tasks", "counting", "--no-baseline"]
        )
        == 0
    )
    m = pd.read_json(out / "metrics.jsonl", lines=True)
    s = pd.read_json(out / "samples.jsonl", lines=True, dtype=False)
    assert set(m.task) == {"counting"} and set(m.role) == {"candidate"} and len(m) == 4
    assert set(s.task) == {"counting"} and set(s.role) == {"candidate"} and len(s) == 20


def test_export_series_folder(tmp_path):
    folder = _series(tmp_path)
    assert main(["export", str(folder), "--output", str(tmp_path / "o")]) == 0
    m = pd.read_csv(tmp_path / "o" / "metrics.csv")
    assert list(m.step) == [100.0, 200.0] and set(m.role) == {"checkpoint"}


def test_export_bad_inputs_exit_2(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path / "r", {"accuracy": [1, 0]})
    (tmp_path / "empty").mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = tmp_path / "out"
    cases = [
        (["export", str(tmp_path / "empty"), "--output", str(out)], "no results.json"),
        (["export", str(tmp_path / "missing"), "--output", str(out)], "no such run"),
        (["export", str(run), "--output", str(out), "--tasks", "nope"], "nope"),
        (["export", str(run), "--output", str(afile)], "not a directory"),
        (["export", str(run), "--output", str(out), "--format", "xlsx"], "invalid choice"),
    ]
    for argv, words in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("mmgpt-eval: error:") and words in err, (argv, err)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "fastparquet", None)
    assert main(["export", str(run), "--output", str(out), "--format", "parquet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pyarrow" in err
    assert not out.exists() and afile.read_text() == "x"  # nothing written


def test_importing_frames_does_not_import_pandas():
    code = "import sys, mmgpt_eval, mmgpt_eval.frames; assert 'pandas' not in sys.modules, 'pandas imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------------------------------------ README
def _readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_readme_dataframes_example_runs(run_dir, monkeypatch, capsys):
    code = _readme_block("Results as DataFrames")
    monkeypatch.chdir(run_dir.parent)  # the example reads api-out
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
    out = capsys.readouterr().out
    assert "counting answers changed vs the baseline" in out and "p_value" in out
