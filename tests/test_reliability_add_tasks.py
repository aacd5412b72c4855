"""Reusing an output folder never loses results: a run with other tasks in a folder that holds a finished
run of the same model, checkpoint and settings adds its tasks to results.json (the earlier task's result,
log and report entry kept), also when it is killed (SIGKILL) or interrupted (SIGINT) in the added task
and run again; a run with another model, checkpoint or setting is refused with what differs; a
per-sample log that results.json does not list is reported and kept."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakeruns import task_results_without_timing

import mmgpt_eval
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.lock import LOCK_NAME
from mmgpt_eval.results import RunResults, check_run

ROOT = Path(__file__).resolve().parents[1]
A, B = "easyvqa", "counting"
LIMIT = 16
SETTINGS = ["--model", "tiny", "--device", "cpu", "--limit", str(LIMIT), "--batch-size", "2", "--no-progress"]


def _argv(out: Path, tasks: str, *extra: str) -> list[str]:
    return ["-q", "run", *SETTINGS, "--tasks", tasks, "--output-dir", str(out), *extra]


def _log(out: Path, task: str) -> Path:
    return out / "samples" / f"{task}.jsonl"


def _ids(path: Path) -> list[str]:
    return [json.loads(x)["id"] for x in path.read_text().splitlines()[1:]]


def _files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Path:
    """A folder holding a finished run of task A."""
    out = tmp_path_factory.mktemp("first") / "out"
    assert main(_argv(out, A, "--no-report")) == 0
    return out


@pytest.fixture(scope="module")
def two_step_run(first, tmp_path_factory) -> tuple[Path, RunResults | object]:
    """A's folder, then an uninterrupted run of B alone there through the Python API (report on): the
    folder and what evaluate() returned."""
    out = tmp_path_factory.mktemp("two_step") / "out"
    shutil.copytree(first, out)
    res = mmgpt_eval.evaluate(
        model="tiny", device="cpu", tasks=B, limit=LIMIT, batch_size=2, progress=False, output_dir=out
    )
    return out, res


@pytest.fixture(scope="module")
def two_step(two_step_run) -> Path:
    return two_step_run[0]


def test_a_run_with_another_task_adds_it_to_the_folders_results(first, two_step_run):
    two_step, returned = two_step_run
    results = check_run(RunResults.load(two_step))  # every listed log belongs to its task's results
    assert list(results.tasks) == [A, B]
    assert isinstance(returned, RunResults)
    assert json.loads(json.dumps(returned.to_dict())) == results.to_dict()  # evaluate() returns what it wrote
    assert _log(two_step, A).read_bytes() == _log(first, A).read_bytes()
    tasks, before = (json.loads((d / "results.json").read_text())["tasks"] for d in (two_step, first))
    assert tasks[A] == before[A]  # timings included: A was not run again
    assert len(set(_ids(_log(two_step, B)))) == results.tasks[B].n_samples == LIMIT
    report = (two_step / "report.html").read_text()
    assert f">{A}<" in report and f">{B}<" in report  # the report covers every task in results.json
    assert _files(two_step) == ["report.html", "results.json", f"samples/{B}.jsonl", f"samples/{A}.jsonl"]


# ------------------------------------------------------------------------------------- kill and rerun
# the signal, and the tasks of the run it stops: other tasks only, or more tasks (A again: resumed)
STOPS = {"kill-9": (signal.SIGKILL, B), "sigint": (signal.SIGINT, f"{B},{A}")}


@pytest.fixture(scope="module")
def interrupted(first, tmp_path_factory) -> dict[str, dict]:
    """For each of STOPS: A's folder, then a subprocess run of its tasks there, sent its signal once B's log
    has its first records (both runs at once: a fresh interpreter's start is most of their time). What
    each left: its folder, exit code, stderr, results.json's tasks and B's ids at that moment."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    runs = {}
    for name, (_, tasks) in STOPS.items():
        out = tmp_path_factory.mktemp(name) / "out"
        shutil.copytree(first, out)
        p = subprocess.Popen(
            [sys.executable, "-m", "mmgpt_eval", *_argv(out, tasks, "--no-report")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        runs[name] = {"out": out, "proc": p, "sent": False}
    deadline = time.monotonic() + 240
    while any(r["proc"].poll() is None and not r["sent"] for r in runs.values()) and time.monotonic() < deadline:
        for name, r in runs.items():
            log_b = _log(r["out"], B)
            if not r["sent"] and log_b.exists() and log_b.read_bytes().count(b"\n") >= 3:  # header + 2 records
                r["proc"].send_signal(STOPS[name][0])
                r["sent"] = True
        time.sleep(0.002)
    for r in runs.values():
        p = r.pop("proc")
        try:
            _, err = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
        r["rc"], r["err"] = p.returncode, err.decode(errors="replace")
        r["tasks"] = list(json.loads((r["out"] / "results.json").read_text())["tasks"])
        r["b_ids"] = _ids(_log(r["out"], B)) if _log(r["out"], B).exists() else []
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", list(STOPS))
def test_a_run_adding_a_task_stopped_mid_task_then_rerun_loses_and_repeats_nothing(first, two_step, interrupted, name):
    r = interrupted[name]
    out, a_log = r["out"], _log(first, A).read_bytes()
    expected_rc = -signal.SIGKILL if name == "kill-9" else 130
    assert r["sent"] and r["rc"] == expected_rc, f"rc {r['rc']}: the run was not stopped mid-B: {r['err']}"
    if name == "sigint":
        assert "interrupted" in r["err"] and not (out / LOCK_NAME).exists()
    # at the stop: A's result and log as the first run left them, B partly done, no id twice
    assert r["tasks"] == [A] and task_results_without_timing(out)[A] == task_results_without_timing(first)[A]
    assert _log(out, A).read_bytes() == a_log
    assert 2 <= len(r["b_ids"]) < LIMIT and len(set(r["b_ids"])) == len(r["b_ids"])

    assert main(_argv(out, STOPS[name][1], "--no-report")) == 0  # the same command again
    assert list(json.loads((out / "results.json").read_text())["tasks"]) == [A, B]
    assert _log(out, A).read_bytes() == a_log
    assert _log(out, B).read_bytes() == _log(two_step, B).read_bytes()  # none lost, none repeated, same order
    assert task_results_without_timing(out) == task_results_without_timing(two_step)
    assert RunResults.load(out).tasks[B].timing["samples_resumed"] >= len(r["b_ids"]) - 1  # a line cut by a kill
    assert _files(out) == ["results.json", f"samples/{B}.jsonl", f"samples/{A}.jsonl"]  # no stale, temp, lock


# ------------------------------------------------------------------------------------- refused, reported
def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mmgpt-eval: error:")]


def test_a_run_with_other_settings_is_refused_naming_what_differs(first, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(first, out)
    before = {p: (out / p).read_bytes() for p in _files(out)}
    capsys.readouterr()
    # a setting: refused before the model loads
    assert main(_argv(out, B, "--seed", "1", "--do-sample", "--temperature", "0.7")) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert str(out / "results.json") in line
    assert "seed 0 vs 1" in line and "temperature (task default) vs 0.7" in line and "do_sample" in line
    assert "another --output-dir" in line and "--overwrite" in line
    # the checkpoint: refused once it is read, before anything is written
    assert main(_argv(out, B, "--model", "tiny-openflamingo", "--ckpt", "tiny-mmgpt")) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert "checkpoint (none) vs " in line and "tiny-mmgpt" in line and "model tiny vs tiny-openflamingo" in line
    assert {p: (out / p).read_bytes() for p in _files(out)} == before
    # the Python API refuses the same way
    with pytest.raises(UserError, match="seed 0 vs 1"):
        mmgpt_eval.evaluate(model="tiny", device="cpu", tasks=B, limit=LIMIT, seed=1, output_dir=out, progress=False)
    assert {p: (out / p).read_bytes() for p in _files(out)} == before
    # an earlier task's log missing: refused before anything is written (readers would refuse the folder)
    _log(out, A).rename(tmp_path / "aside")
    assert main(_argv(out, B)) == 2
    (line,) = _error_lines(capsys.readouterr().err)
    assert f"{A}.jsonl" in line and "--overwrite" in line and not _log(out, B).exists()
    (tmp_path / "aside").rename(_log(out, A))
    # --overwrite replaces the run: only B listed, A's log moved aside (kept)
    assert main(_argv(out, B, "--seed", "1", "--no-report", "--overwrite")) == 0
    assert list(RunResults.load(out).tasks) == [B]
    (stale,) = (out / "samples").glob(f"{A}.jsonl.stale-*")
    assert stale.read_bytes() == before[f"samples/{A}.jsonl"]


def test_a_log_results_json_does_not_list_is_reported_and_kept(first, two_step, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(first, out)
    (out / "results.json").unlink()  # A's log alone: a run of A that never finished, or results replaced
    capsys.readouterr()
    assert main(_argv(out, B, "--no-report")) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert f"{A}.jsonl: a per-sample log that" in err and "does not list" in err
    assert _log(out, A).read_bytes() == _log(first, A).read_bytes()
    assert main(_argv(out, A, "--no-report")) == 0  # finishing it: resumed, nothing generated again
    assert RunResults.load(out).tasks[A].timing["samples_resumed"] == LIMIT
    assert task_results_without_timing(out) == {
        B: task_results_without_timing(two_step)[B],
        A: task_results_without_timing(two_step)[A],
    }
