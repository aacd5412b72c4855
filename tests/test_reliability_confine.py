"""report / gate read only what belongs to the run: per-sample logs that match results.json
(fingerprint, ids), samples_file inside the run folder, thumbnails only of generator keys or of files
under the run's recorded data folders."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fakeruns import make_run
from mmgpt_eval.cli import main
from mmgpt_eval.records import SAMPLES_SCHEMA
from mmgpt_eval.report.images import Thumbs
from mmgpt_eval.results import RunResults, check_run

POLICY = """
[defaults]
confidence = 0.95
min_samples = 5
[[rule]]
task = "easyvqa"
metric = "accuracy"
direction = "higher"
margin = 5.0
"""


def _run(path: Path, fp: str, n: int = 20, record=None) -> Path:
    """A fake run whose results.json and per-sample log carry the fingerprint ``fp``."""
    make_run(path, {"accuracy": [float(i % 2) for i in range(n)]}, record=record)
    res = json.loads((path / "results.json").read_text())
    res["tasks"]["easyvqa"]["fingerprint"] = fp
    (path / "results.json").write_text(json.dumps(res))
    log = path / "samples" / "easyvqa.jsonl"
    lines = log.read_text().splitlines()
    lines[0] = json.dumps({SAMPLES_SCHEMA: {"version": 1, "task": "easyvqa", "fingerprint": fp}})
    log.write_text("\n".join(lines) + "\n")
    return path


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def policy(tmp_path):
    f = tmp_path / "gate.toml"
    f.write_text(POLICY)
    return f


# ------------------------------------------------------------------------------ results vs samples
def test_report_and_gate_refuse_a_samples_log_written_by_another_model(tmp_path, policy, capsys):
    a, b = _run(tmp_path / "A", "a" * 64), _run(tmp_path / "B", "b" * 64)
    assert main(["report", str(a), "-o", str(tmp_path / "ok.html")]) == 0  # consistent: fine
    assert main(["gate", "--baseline", str(b), "--candidate", str(a), "--policy", str(policy)]) in (0, 1)
    capsys.readouterr()
    shutil.copy(b / "samples" / "easyvqa.jsonl", a / "samples" / "easyvqa.jsonl")  # another model's log
    out = tmp_path / "r.html"
    assert main(["report", str(a), "-o", str(out)]) == 2
    msg = _err_line(capsys)
    assert str(a / "samples" / "easyvqa.jsonl") in msg and "fingerprint" in msg and "bbbbbbbbbbbb" in msg
    assert not out.exists()
    assert main(["report", str(b), "-o", str(out), "--baseline", str(a)]) == 2
    assert "fingerprint" in _err_line(capsys) and not out.exists()
    assert (
        main(
            [
                "gate",
                "--baseline",
                str(b),
                "--candidate",
                str(a),
                "--policy",
                str(policy),
                "--json",
                str(tmp_path / "g.json"),
            ]
        )
        == 2
    )
    assert "fingerprint" in _err_line(capsys) and not (tmp_path / "g.json").exists()
    assert main(["gate", "--baseline", str(a), "--candidate", str(b), "--policy", str(policy)]) == 2


@pytest.mark.parametrize("case", ["missing_ids", "duplicate", "extras_without_fp", "no_header"])
def test_ids_must_cover_the_run(tmp_path, case, capsys):
    fp = "" if case == "extras_without_fp" else "a" * 64
    a = _run(tmp_path / "A", fp)
    log = a / "samples" / "easyvqa.jsonl"
    lines = log.read_text().splitlines()
    if case == "missing_ids":
        lines = lines[:-1]
    elif case == "duplicate":
        lines[-1] = lines[1]
    elif case == "extras_without_fp":
        lines.append(json.dumps({"id": "older", "metrics": {"accuracy": 1.0}}))
    else:
        lines = lines[1:]
    log.write_text("\n".join(lines) + "\n")
    assert main(["report", str(a), "-o", str(tmp_path / "r.html")]) == 2
    assert str(log) in _err_line(capsys)


def test_older_extras_are_allowed_when_the_fingerprints_match(tmp_path):
    a = _run(tmp_path / "A", "a" * 64)
    with (a / "samples" / "easyvqa.jsonl").open("a") as f:
        f.write(json.dumps({"id": "from-a-larger-limit", "metrics": {"accuracy": 1.0}}) + "\n")
    check_run(RunResults.load(a))


# ------------------------------------------------------------------------------ samples_file outside
@pytest.mark.parametrize("where", ["dotdot", "absolute", "symlink"])
def test_samples_file_outside_the_run_folder_is_refused(tmp_path, where, policy, capsys):
    a = _run(tmp_path / "A", "a" * 64)
    other = _run(tmp_path / "other", "a" * 64)  # a matching log, but not this run's
    res = json.loads((a / "results.json").read_text())
    if where == "symlink":
        shutil.rmtree(a / "samples")
        os.symlink(other / "samples", a / "samples")
    else:
        res["tasks"]["easyvqa"]["samples_file"] = (
            "../other/samples/easyvqa.jsonl" if where == "dotdot" else str(other / "samples" / "easyvqa.jsonl")
        )
    (a / "results.json").write_text(json.dumps(res))
    out = tmp_path / "r.html"
    assert main(["report", str(a), "-o", str(out)]) == 2
    msg = _err_line(capsys)
    assert "outside the run folder" in msg and str(a / "results.json") in msg
    assert not out.exists()
    assert main(["gate", "--baseline", str(other), "--candidate", str(a), "--policy", str(policy)]) == 2
    assert "outside the run folder" in _err_line(capsys)


# ------------------------------------------------------------------------------ thumbnails
def _png(path: Path, color) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), color).save(path)
    return path


def _vqa_run(tmp_path: Path, data: Path) -> RunResults:
    a = _run(tmp_path / "V", "a" * 64)
    res = json.loads((a / "results.json").read_text())
    res["tasks"]["vqav2"] = {
        **res["tasks"].pop("easyvqa"),
        "task": "vqav2",
        "options": {"vqav2_questions": str(data / "q" / "questions.json"), "vqav2_images": str(data / "val2014")},
    }
    (a / "results.json").write_text(json.dumps(res))
    return RunResults.load(a)


def test_thumbnails_only_for_generator_keys_and_files_under_the_recorded_data(tmp_path, monkeypatch):
    data = tmp_path / "data"
    inside = _png(data / "val2014" / "x.png", "red")
    beside_questions = _png(data / "q" / "y.png", "green")
    secret = _png(tmp_path / "home" / "secret.png", "blue")
    os.symlink(secret, data / "val2014" / "link.png")
    th = Thumbs.for_runs([_vqa_run(tmp_path, data)])
    assert th.get(str(inside)) and th.get(f"path:{inside}") and th.get(str(beside_questions))
    assert th.get("blank:32:white")  # a generator key: recreated, no file read
    assert th.get(str(secret)) is None and th.get(f"path:{secret}") is None
    assert th.get(str(data / "val2014" / ".." / ".." / "home" / "secret.png")) is None
    assert th.get(str(data / "val2014" / "link.png")) is None  # a symlink out of the data folder
    monkeypatch.chdir(tmp_path / "home")  # a relative key is a file in the current directory: refused too
    assert th.get("secret.png") is None
    assert Thumbs().get(str(inside)) is None and Thumbs().get("blank:32:white")  # no roots: generator keys only


def test_the_report_does_not_embed_a_local_file_named_in_a_samples_log(tmp_path, monkeypatch):
    secret = _png(tmp_path / "home" / "secret.png", (1, 2, 3))
    expected = Thumbs([tmp_path / "home"]).get(str(secret))
    assert expected  # what the page would contain if the file were read
    monkeypatch.chdir(tmp_path)
    a = _run(
        tmp_path / "A", "a" * 64, record=lambda i: {"images": [str(secret)] if i % 2 else ["path:home/secret.png"]}
    )
    out = tmp_path / "r.html"
    assert main(["report", str(a), "-o", str(out), "--max-gallery", "20"]) == 0
    html = out.read_text()
    assert "secret.png" in html  # the key is shown...
    assert expected not in html  # ...but the file is not read into the page
