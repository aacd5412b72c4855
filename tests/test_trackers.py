"""``--log-to``: a real run sent to MLflow's local file store and to W&B in offline mode, read back with
MLflow's client API and by decoding the transaction log W&B writes offline; series, run configs,
missing optional packages (one line, exit 2, before any model loads) and failing trackers."""

from __future__ import annotations

import base64
import glob
import hashlib
import importlib.util
import json
import os
import struct
from pathlib import Path

import pytest

from fakeruns import make_run
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.records import read_samples
from mmgpt_eval.results import RunResults
from mmgpt_eval.trackers import Target, log_to_trackers, parse_targets

HAVE_MLFLOW = importlib.util.find_spec("mlflow") is not None
HAVE_WANDB = importlib.util.find_spec("wandb") is not None
needs_mlflow = pytest.mark.skipif(
    not HAVE_MLFLOW, reason="optional extra mmgpt-eval[mlflow] (mlflow-skinny) not installed"
)
needs_wandb = pytest.mark.skipif(not HAVE_WANDB, reason="optional extra mmgpt-eval[wandb] not installed")
TASKS = ("easyvqa", "dialog")  # one single-request task, one multi-turn task (records with outputs)


# ------------------------------------------------------------------------------------------ helpers
def _wandb_env(root: Path) -> dict[str, str]:
    return {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(root),
        "WANDB_DATA_DIR": str(root / "data"),
        "WANDB_CACHE_DIR": str(root / "cache"),
        "WANDB_CONFIG_DIR": str(root / "config"),
        "WANDB_SILENT": "true",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_ERROR_REPORTING": "false",
    }


def _wandb_records(run_dir: Path) -> list:
    """The protobuf records of an offline run's ``run-<id>.wandb`` file, decoded here independently of
    wandb's reader: a 7-byte header (``:W&B``, magic, version), then LevelDB-log records in 32 KiB
    blocks (header crc32c(4) length(2) type(1); types full=1, first=2, middle=3, last=4)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if n == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + n], pos + 7 + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending + chunk)
            out.append(rec)
            pending = b""
        else:
            pending += chunk
    return out


def _items(updates) -> dict[str, object]:
    """Summary/history/config items as {key: value}; nested keys joined with '/'... as W&B shows them."""
    out = {}
    for u in updates:
        key = u.key or "/".join(u.nested_key)
        out[key] = json.loads(u.value_json)
    return out


def _expected_metrics(res: dict) -> dict[str, float]:
    return {
        f"{t}/{m}": float(v)
        for t, tr in res["tasks"].items()
        for m, v in tr["metrics"].items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


# ------------------------------------------------------------------------------------------ a real run
@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One real run of the tiny preset on two tasks, logged to every installed tracker."""
    if not (HAVE_MLFLOW or HAVE_WANDB):
        pytest.skip("neither optional extra mmgpt-eval[mlflow] nor [wandb] is installed")
    root = tmp_path_factory.mktemp("tracked")
    mp = pytest.MonkeyPatch()
    for k, v in _wandb_env(root / "wandb-root").items():
        mp.setenv(k, v)
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    mp.setenv("MLFLOW_EXPERIMENT_NAME", "mmgpt-eval-test")
    targets = ([f"mlflow:file:{root / 'mlruns'}"] if HAVE_MLFLOW else []) + (["wandb:mmgpt-test"] if HAVE_WANDB else [])
    out = root / "out"
    try:
        rc = main(
            [
                "-q",
                "run",
                "--model",
                "tiny",
                "--device",
                "cpu",
                "--tasks",
                ",".join(TASKS),
                "--limit",
                "3",
                "--max-new-tokens",
                "4",
                "--output-dir",
                str(out),
                "--no-progress",
                "--log-to",
                ",".join(targets),
            ]
        )
        allow_left_set = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    finally:
        if HAVE_WANDB:
            import wandb

            wandb.teardown()
        mp.undo()
    assert rc == 0
    return {
        "root": root,
        "out": out,
        "results": json.loads((out / "results.json").read_text()),
        "allow_left_set": allow_left_set,
    }


@needs_mlflow
def test_mlflow_file_store_gets_metrics_params_tables_and_report(logged_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # for reading back here
    assert logged_run["allow_left_set"] is None  # the run set it only around its own MLflow calls
    out, res = logged_run["out"], logged_run["results"]
    client = MlflowClient(tracking_uri=(logged_run["root"] / "mlruns").as_uri())
    exp = client.get_experiment_by_name("mmgpt-eval-test")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    expected = _expected_metrics(res)
    assert len(expected) > 10 and run.data.metrics == pytest.approx(expected)
    p = run.data.params
    assert p["run.limit"] == "3" and p["model.model_spec.name"] == "tiny"
    assert p["provenance.versions.torch"] == res["provenance"]["versions"]["torch"]
    assert p["tasks.easyvqa.template.name"] == res["tasks"]["easyvqa"]["template"]["name"]
    assert p["tasks.easyvqa.generation.max_new_tokens"] == str(res["tasks"]["easyvqa"]["generation"]["max_new_tokens"])
    assert run.data.tags["mmgpt_eval.output_dir"] == str(out.resolve())
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.html", "results.json", "tables"} <= names
    assert {a.path for a in client.list_artifacts(run.info.run_id, "tables")} == {f"tables/{t}.json" for t in TASKS}
    dst = Path(client.download_artifacts(run.info.run_id, "", str(logged_run["root"] / "dl")))
    assert (dst / "report.html").read_bytes() == (out / "report.html").read_bytes()
    assert (dst / "results.json").read_bytes() == (out / "results.json").read_bytes()
    for task in TASKS:
        table = json.loads((dst / "tables" / f"{task}.json").read_text())
        cols = table["columns"]
        rows = [dict(zip(cols, r)) for r in table["data"]]
        samples = read_samples(out / "samples" / f"{task}.jsonl")
        assert [r["id"] for r in rows] == [s["id"] for s in samples]
        assert [r["prediction"] for r in rows] == [s["prediction"] for s in samples]
        assert [json.loads(r["references"]) for r in rows] == [s["references"] for s in samples]
        key = next(iter(samples[0]["metrics"]))
        assert [r[f"metric.{key}"] for r in rows] == [s["metrics"][key] for s in samples]
    assert "outputs" in json.loads((dst / "tables" / "dialog.json").read_text())["columns"]


@needs_wandb
def test_wandb_offline_run_gets_config_metrics_tables_and_report(logged_run):
    out, res = logged_run["out"], logged_run["results"]
    run_dirs = glob.glob(str(logged_run["root"] / "wandb-root" / "wandb" / "offline-run-*"))
    assert len(run_dirs) == 1
    run_dir = Path(run_dirs[0])
    recs = _wandb_records(run_dir)
    kinds = [r.WhichOneof("record_type") for r in recs]
    run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
    assert run.project == "mmgpt-test" and run.display_name == "tiny"
    config = _items(run.config.update)
    assert config["run"]["limit"] == 3 and config["model"]["model_spec"]["name"] == "tiny"
    assert config["provenance"]["versions"]["torch"] == res["provenance"]["versions"]["torch"]
    assert config["tasks"]["easyvqa"]["template"] == res["tasks"]["easyvqa"]["template"]
    expected = _expected_metrics(res)
    history = [_items(r.history.item) for r in recs if r.WhichOneof("record_type") == "history"]
    assert len(history) == 1 and history[0]["_step"] == 0
    assert {k: v for k, v in history[0].items() if k in expected} == pytest.approx(expected)
    summary: dict[str, object] = {}
    for r in recs:
        if r.WhichOneof("record_type") == "summary":
            summary.update(_items(r.summary.update))
    assert {k: summary[k] for k in expected} == pytest.approx(expected)
    assert "exit" in kinds
    # per-task tables: W&B's table files, row for row the per-sample logs
    for task in TASKS:
        assert history[0][f"{task}/samples/_type"] == "table-file"
        table = json.loads((run_dir / "files" / history[0][f"{task}/samples/path"]).read_text())
        rows = [dict(zip(table["columns"], r)) for r in table["data"]]
        samples = read_samples(out / "samples" / f"{task}.jsonl")
        assert [r["id"] for r in rows] == [s["id"] for s in samples]
        assert [r["prediction"] for r in rows] == [s["prediction"] for s in samples]
    # the report and results.json as one artifact; W&B's manifest digest is the file's base64 MD5
    arts = [
        r.artifact for r in recs if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "mmgpt-eval-report"
    ]
    assert len(arts) == 1
    files = {c.path: c.digest for c in arts[0].manifest.contents}
    for name in ("report.html", "results.json"):
        assert files[name] == base64.b64encode(hashlib.md5((out / name).read_bytes()).digest()).decode()


# ------------------------------------------------------------------------------------------ series
@needs_mlflow
def test_a_checkpoint_series_is_one_mlflow_run_with_steps(tmp_path, monkeypatch):
    from mmgpt_eval.api import SeriesResults
    from mlflow.tracking import MlflowClient

    runs, entries = [], []
    for step, vals in ((800, [1, 0, 0, 0]), (200, [1, 1, 1, 0])):
        name = f"checkpoint_{step}"
        r = RunResults.load(make_run(tmp_path / "series" / name, {"exact": vals}, step=step))
        runs.append(r)
        entries.append(
            {
                "checkpoint": f"/ck/{name}.pt",
                "name": name,
                "step": float(step),
                "metrics": {t: tr.metrics for t, tr in r.tasks.items()},
            }
        )
    (tmp_path / "series" / "series.json").write_text("{}")
    series = SeriesResults(runs=runs, entries=entries, path=tmp_path / "series" / "series.json")
    uri = (tmp_path / "mlruns").as_uri()
    log_to_trackers(parse_targets(f"mlflow:{uri}"), series, tmp_path / "series")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("mmgpt-eval").experiment_id])
    acc = client.get_metric_history(run.info.run_id, "easyvqa/exact")
    assert [(m.step, m.value) for m in sorted(acc, key=lambda m: m.step)] == [(0, 25.0), (1, 75.0)]
    steps = client.get_metric_history(run.info.run_id, "checkpoint_step")
    assert [(m.step, m.value) for m in sorted(steps, key=lambda m: m.step)] == [(0, 800.0), (1, 200.0)]
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
    assert tables == {"tables/checkpoint_800", "tables/checkpoint_200"}
    assert run.data.tags["mmgpt_eval.kind"] == "series"


# ------------------------------------------------------------------------------------------ parsing, errors
def test_targets_parse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_targets(None) == [] and parse_targets([]) == []
    assert parse_targets(["wandb", "mlflow,wandb:proj"]) == [Target("wandb"), Target("mlflow"), Target("wandb", "proj")]
    assert parse_targets("mlflow:http://host:5000,wandb") == [Target("mlflow", "http://host:5000"), Target("wandb")]
    # relative folders and file: URIs become absolute file: URIs; a comma inside a URI stays in it
    assert parse_targets("mlflow:runs") == [Target("mlflow", (tmp_path / "runs").as_uri())]
    assert parse_targets("mlflow:file:./a") == [Target("mlflow", (tmp_path / "a").as_uri())]
    assert parse_targets("mlflow:https://h/x?a=1,b=2") == [Target("mlflow", "https://h/x?a=1,b=2")]
    assert parse_targets("wandb,wandb,") == [Target("wandb")]
    with pytest.raises(UserError, match="unknown tracker 'tensorboard'"):
        parse_targets("tensorboard")


@pytest.mark.parametrize("kind", ["mlflow", "wandb"])
def test_a_missing_extra_is_one_line_before_the_model_loads(kind, tmp_path, capsys, monkeypatch):
    import mmgpt_eval.api as api

    monkeypatch.setitem(__import__("sys").modules, kind, None)  # as if not installed
    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("model loaded before the tracker check"))
    rc = main(
        [
            "run",
            "--model",
            "tiny",
            "--tasks",
            "easyvqa",
            "--limit",
            "2",
            "--output-dir",
            str(tmp_path / "o"),
            "--log-to",
            kind,
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and f"pip install 'mmgpt-eval[{kind}]'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "results.json").exists()


@needs_mlflow
def test_an_unusable_mlflow_store_fails_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import mmgpt_eval.api as api

    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("model loaded before the tracker check"))
    rc = main(
        [
            "run",
            "--model",
            "tiny",
            "--tasks",
            "easyvqa",
            "--limit",
            "2",
            "--output-dir",
            str(tmp_path / "o"),
            "--log-to",
            "mlflow:nosuchscheme://x",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "cannot open the tracking store nosuchscheme://x" in err and "Traceback" not in err


def test_log_to_in_a_run_config_and_flags(tmp_path, monkeypatch):
    import mmgpt_eval.cli.run as run_cli

    seen = {}

    def fake_evaluate(config, judge=None, judge_repeats=1):  # run passes one EvalConfig (and its judge)
        seen["log_to"] = list(config.log_to)
        return None

    monkeypatch.setattr(run_cli, "evaluate_config", fake_evaluate)
    cfg = tmp_path / "run.toml"
    cfg.write_text('tasks = "easyvqa"\nlog_to = ["mlflow:file:./mlruns", "wandb"]\n')
    assert main(["run", "--config", str(cfg)]) == 0
    assert seen["log_to"] == ["mlflow:file:./mlruns", "wandb"]
    assert main(["run", "--config", str(cfg), "--log-to", "wandb:p"]) == 0  # flags win
    assert seen["log_to"] == ["wandb:p"]
    assert main(["run", "--tasks", "easyvqa", "--log-to", "mlflow", "--log-to", "wandb"]) == 0
    assert seen["log_to"] == ["mlflow", "wandb"]


def test_a_failing_tracker_is_one_error_after_the_results_are_written(tmp_path, monkeypatch):
    import mmgpt_eval.trackers as trackers

    run = make_run(tmp_path / "r", {"exact": [1, 0]})
    calls = []
    monkeypatch.setattr(trackers, "_mlflow_log", lambda t, p: (_ for _ in ()).throw(RuntimeError("server down\nmore")))
    monkeypatch.setattr(trackers, "_wandb_log", lambda t, p: calls.append(p) or "ok")
    with pytest.raises(UserError) as e:
        log_to_trackers([Target("mlflow", "http://x"), Target("wandb")], RunResults.load(run), run)
    assert "(mlflow:http://x: RuntimeError: server down)" in str(e.value) and str(run) in str(e.value)
    assert "\n" not in str(e.value)
    assert len(calls) == 1 and calls[0].steps[0].metrics == {"easyvqa/exact": 50.0}  # the other tracker still ran
