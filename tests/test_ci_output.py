"""Output that survives CI logs (issue 25, points 3 and 4): stdout captured (not a terminal) keeps every
table cell whole and every path on one line; `--json` documents for compare, inspect, tasks and
data check; `run` names every missing data file of every task in one error before a model loads; the
Python API with progress=False prints no third-party bars; train and gate init log progress with ETA."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
from fakeruns import make_run

import mmgpt_eval.api
import mmgpt_eval.progress
from mmgpt_eval.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_ADAPTER = ROOT / "mmgpt_eval" / "weights" / "tiny-mmgpt"
# a folder name long enough that any 80-column layout would cut or fold a path holding it
LONG = "a-folder-name-long-enough-that-an-80-column-table-would-cut-it-" + "x" * 60


def _one_line(text: str, needle: str) -> bool:
    """``needle`` occurs whole within a single line of ``text``."""
    return any(needle in line for line in text.splitlines())


def _json_only(out: str) -> dict:
    """stdout is exactly one JSON document (nothing before or after it)."""
    doc = json.loads(out)
    assert isinstance(doc, dict) and doc["schema"].startswith("mmgpt-eval/") and doc["schema_version"] == 1
    return doc


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("cmp") / LONG
    a = make_run(base / "run-a", {"accuracy": [1, 0, 1, 1, 0, 1, 1, 0] * 5})
    b = make_run(base / "run-b", {"accuracy": [1, 1, 1, 1, 0, 1, 1, 1] * 5})
    return a, b


# ------------------------------------------------------------------------------------ tables and logs
def test_data_check_and_run_keep_paths_whole(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mmgpt_eval.api, "load", lambda *a, **k: pytest.fail("model loaded with data missing"))
    root = tmp_path / LONG / "data"
    assert main(["data", "check", "--tasks", "coco,vqav2", "--data-root", str(root)]) == 2
    cap = capsys.readouterr()
    expected = [
        root / "coco" / "dataset_coco.json",
        root / "coco",
        root / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json",
        root / "vqav2" / "v2_mscoco_val2014_annotations.json",
        root / "vqav2" / "val2014",
    ]
    assert "…" not in cap.out and all(_one_line(cap.out, str(p)) for p in expected)
    assert "5 required file(s) missing" in cap.out and "cocodataset.org/#download (2014 Val and Train" in cap.out
    assert cap.err.count("\n") == 1 and "5 required data file(s) missing" in cap.err

    # `run` refuses the same files in ONE line, before any model loads, and says how to see the sources
    out = tmp_path / "out"
    rc = main(["run", "--tasks", "coco,vqa,dialog", "--data-root", str(root), "--output-dir", str(out)])
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("mmgpt-eval: error:")]
    assert rc == 2 and len(errors) == 1 and not (out / "results.json").exists()
    line = errors[0]
    assert all(str(p) in line for p in expected) and "coco: " in line and "; vqav2: " in line
    assert "dialog" not in line.split("(")[0]  # ships with the package: nothing missing
    assert f"mmgpt-eval data check --tasks coco,vqav2 --data-root {root}" in line
    # the log line naming the data root is one plain line, not wrapped at 80 columns mid-path
    assert any(ln.startswith("INFO ") and f"data from the data root {root} (" in ln for ln in err)


def test_inspect_shows_everything(tmp_path, capsys):
    ckpt = tmp_path / LONG / "adapter"
    shutil.copytree(TINY_ADAPTER, ckpt)
    assert main(["inspect", str(ckpt), "--json"]) == 0
    d = _json_only(capsys.readouterr().out)
    assert d["schema"] == "mmgpt-eval/checkpoint" and len(d["sha256"]) == 64 and d["lora"]["target_modules"]
    assert main(["inspect", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and _one_line(out, d["sha256"]) and _one_line(out, f"checkpoint {ckpt}")
    assert _one_line(out, str(d["lora"]["target_modules"]))  # every LoRA target, on the targets line
    for k, v in d["key_mapping_examples"]:
        assert _one_line(out, f"{k} -> {v}")


def test_compare_tables_and_json(runs, tmp_path, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b), "--resamples", "200"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "easyvqa" in out and "accuracy" in out and "CI" in out
    row = next(line for line in out.splitlines() if "easyvqa" in line and "accuracy" in line)
    assert "better" in row and "mcnemar" in row and "[" in row  # the whole row: delta, interval, test

    assert main(["compare", str(a), str(b), "--resamples", "200", "--json"]) == 0
    doc = _json_only(capsys.readouterr().out)
    assert doc["schema"] == "mmgpt-eval/compare"
    (entry,) = doc["runs"]
    assert entry["baseline"] == str(a / "results.json") and entry["candidate"] == str(b / "results.json")
    (c,) = entry["comparisons"]
    assert c["task"] == "easyvqa" and c["metric"] == "accuracy" and c["delta"] == pytest.approx(25.0)
    assert set(entry["published"]) == {"baseline", "candidate"}

    # --json FILE: the tables, and the same document in the file
    assert main(["compare", str(a), str(b), "--resamples", "200", "--json", str(tmp_path / "c.json")]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["runs"] == doc["runs"]
    # --json in front of the runs would read a run as the file to write: refused, the run untouched
    before = (a / "results.json").read_bytes()
    assert main(["compare", "--json", str(a), str(b), str(b)]) == 2
    assert "is a run" in capsys.readouterr().err and (a / "results.json").read_bytes() == before


def test_tasks_and_data_check_json(tmp_path, capsys):
    assert main(["tasks", "--json"]) == 0
    doc = _json_only(capsys.readouterr().out)
    by_name = {t["name"]: t for t in doc["tasks"]}
    assert {"coco", "vqav2", "easyvqa", "dialog"} <= set(by_name) and "vqa" in by_name["vqav2"]["aliases"]
    assert all(set(t) == {"name", "aliases", "templates", "description"} for t in doc["tasks"])
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and all(_one_line(out, t["description"]) for t in doc["tasks"])

    assert main(["data", "check", "--tasks", "flickr30k,easyvqa", "--data-root", str(tmp_path), "--json"]) == 2
    cap = capsys.readouterr()
    doc = _json_only(cap.out)
    assert doc["schema"] == "mmgpt-eval/data-check" and doc["data_root"] == str(tmp_path) and doc["ok"] is False
    assert doc["missing"] == {
        "flickr30k": [
            str(tmp_path / "flickr30k" / "dataset_flickr30k.json"),
            str(tmp_path / "flickr30k" / "flickr30k-images"),
        ]
    }
    assert {r["task"] for r in doc["files"]} == {"flickr30k", "easyvqa"} and "JSON document" in cap.err


# -------------------------------------------------------------------------------------------- progress
def test_api_progress_false_prints_no_third_party_bars(tmp_path, capfd):
    from transformers.utils import logging as tf_logging

    was = tf_logging.is_progress_bar_enabled()
    with warnings.catch_warnings():  # huggingface_hub's bars stay off (the session's variable); transformers' on
        warnings.simplefilter("ignore")
        tf_logging.enable_progress_bar()  # as in a user's process (the test session turns bars off)
    try:
        mmgpt_eval.api.load("tiny-openflamingo", str(TINY_ADAPTER))
        assert "Loading weights" in capfd.readouterr().err  # the bar this is about, when nothing silences it
        res = mmgpt_eval.evaluate(
            model="tiny-openflamingo",
            ckpt=str(TINY_ADAPTER),
            tasks="easyvqa",
            limit=2,
            output_dir=tmp_path / "out",
            progress=False,
            report=False,
        )
        err = capfd.readouterr().err
        assert res is not None and "Loading weights" not in err and "it/s" not in err and "%|" not in err, err
        assert tf_logging.is_progress_bar_enabled()  # the caller's setting is restored
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (tf_logging.enable_progress_bar if was else tf_logging.disable_progress_bar)()


def test_gate_init_logs_progress_with_eta(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mmgpt_eval.progress, "LOG_EVERY_S", 0.0)  # a line per batch
    argv = ["gate", "init", "--model", "tiny-openflamingo", "--ckpt", str(TINY_ADAPTER), "--tasks", "easyvqa"]
    assert main(argv + ["--limit", "4", "--batch-size", "2", "--output", str(tmp_path / "baseline")]) == 0
    err = capsys.readouterr().err.splitlines()
    lines = [ln for ln in err if ln.startswith("INFO") and " easyvqa " in ln and "ETA" in ln]
    assert [ln.split("easyvqa ")[1].split(" ")[0] for ln in lines] == ["2/4", "4/4"], err
    assert "samples/s" in lines[0] and "ETA 0:00" in lines[-1]


def test_train_logs_steps_with_eta(tmp_path, capsys):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f'model = "tiny"\nmode = "lora"\noutput_dir = "{tmp_path / "r"}"\n[lora]\nr = 2\nalpha = 4\n'
        "[train]\nsteps = 3\nbatch_size = 2\nper_image = 1\nlog_every = 2\n"
        '[[data.vision]]\ntype = "easyvqa"\nsample = 4\nbalance = false\n'
    )
    assert main(["train", "--config", str(recipe), "--threads", "1"]) == 0
    err = capsys.readouterr().err.splitlines()
    steps = [ln for ln in err if ln.startswith("INFO") and " step " in ln and "ETA" in ln]
    # step 1, every log_every steps, and the last
    assert [ln.split("step ")[1].split(" ")[0] for ln in steps] == ["1/3", "2/3", "3/3"], err
    assert all("loss_vl" in ln and "elapsed" in ln for ln in steps) and "ETA 0:00" in steps[-1]
