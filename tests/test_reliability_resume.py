"""Resume after a kill: per-sample logs cut short anywhere (zero bytes, half a header, half a record),
temporaries of interrupted atomic writes, and a real run SIGKILLed at several moments and resumed to
the same bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakeruns import task_results_without_timing

from mmgpt_eval.lock import LOCK_NAME, output_lock, remove_orphan_temps
from mmgpt_eval.records import SAMPLES_SCHEMA
from mmgpt_eval.sample_store import SampleStore

ROOT = Path(__file__).resolve().parents[1]
FP = "f" * 64


def _records(ids):
    return [{"id": i, "prediction": f"p{i}", "metrics": {"accuracy": 1.0}} for i in ids]


def _resume(path: Path) -> tuple[dict, SampleStore]:
    store = SampleStore(path, "easyvqa", FP)
    done = store.load_done()
    store.start()
    return done, store


def _check_header_then(path: Path, ids: list[str]) -> None:
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {SAMPLES_SCHEMA: {"version": 1, "task": "easyvqa", "fingerprint": FP}}
    assert [json.loads(x)["id"] for x in lines[1:]] == ids
    assert not list(path.parent.glob("*.stale-*")), "finished samples were moved aside"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"mmgpt-eval/samp',
        b'{"mmgpt-eval/samples": {"version": 1, "task"',
        b"\n",
        b'{"mmgpt-eval/samples": {"version": 1, "task": "easyvqa", "fingerprint": "' + FP.encode() + b'"}}',
    ],
    ids=["zero-bytes", "header-cut", "header-cut-later", "blank", "header-without-newline"],
)
def test_a_log_without_a_complete_header_restarts_with_a_header(tmp_path, content):
    path = tmp_path / "samples" / "easyvqa.jsonl"
    path.parent.mkdir()
    path.write_bytes(content)
    done, store = _resume(path)
    assert done == {}
    store.append(_records(["a", "b"]))
    _check_header_then(path, ["a", "b"])
    # the next run resumes both records: no "model changed" warning, nothing moved aside
    done, store = _resume(path)
    assert sorted(done) == ["a", "b"]
    store.append(_records(["c"]))
    _check_header_then(path, ["a", "b", "c"])


def test_a_record_cut_short_is_dropped_even_when_it_parses(tmp_path):
    path = tmp_path / "easyvqa.jsonl"
    _, store = _resume(path)
    store.append(_records(["a"]))
    with path.open("a") as f:  # a whole record whose newline never made it to disk
        f.write(json.dumps(_records(["b"])[0]))
    done, store = _resume(path)
    assert sorted(done) == ["a"]
    store.append(_records(["b", "c"]))
    _check_header_then(path, ["a", "b", "c"])


def _killed_atomic_write(target: Path) -> None:
    code = (
        "import os, signal, sys; from mmgpt_eval.io import atomic_writer\n"
        "with atomic_writer(sys.argv[1]) as f:\n"
        "    f.write('half'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(target)], cwd=ROOT, capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL


def test_orphan_temporaries_of_a_killed_atomic_write_are_removed_when_the_lock_is_taken(tmp_path):
    out = tmp_path / "out"
    for target in (out / "results.json", out / "samples" / "easyvqa.jsonl", out / "baseline" / "samples" / "x.jsonl"):
        target.parent.mkdir(parents=True, exist_ok=True)
        _killed_atomic_write(target)
    orphans = sorted(out.rglob(".*.tmp"))
    assert len(orphans) == 3  # what io.atomic_writer leaves behind: the pattern lock.py matches
    keep = [out / "notes.tmp", out / ".keep", out / "samples" / "easyvqa.jsonl.stale-1", out / "results.json.tmp"]
    for k in keep:
        k.write_text("mine")
    with output_lock(out, "test"):
        assert not list(out.rglob(".*.tmp"))
    assert all(k.read_text() == "mine" for k in keep)
    assert remove_orphan_temps(out) == []


# ------------------------------------------------------------------------------------- kill and resume
CMD = [
    "-q",
    "run",
    "--model",
    "tiny-openflamingo",
    "--ckpt",
    "tiny-mmgpt",
    "--tasks",
    "easyvqa,dialog",
    "--limit",
    "16",
    "--batch-size",
    "4",
    "--no-report",
    "--no-progress",
]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except FileNotFoundError:
        return -1


def _run_until(out: Path, trigger) -> int:
    """Start the run; SIGKILL it the moment ``trigger(out, start_state)`` is true. Returns its exit code."""
    state = {"easyvqa": _size(out / "samples" / "easyvqa.jsonl"), "dialog": _size(out / "samples" / "dialog.jsonl")}
    p = subprocess.Popen(
        [sys.executable, "-m", "mmgpt_eval", *CMD, "--output-dir", str(out)],
        cwd=out.parent,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 150
    while p.poll() is None and time.monotonic() < deadline:
        if trigger is not None and trigger(out, state):
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    try:
        _, err = p.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    if trigger is None:
        assert p.returncode == 0, err.decode(errors="replace")
    return p.returncode


def _grew(task):
    return lambda out, st: _size(out / "samples" / f"{task}.jsonl") > max(st[task], 0)


KILLS = [
    ("lock taken, nothing written yet", lambda out, st: (out / LOCK_NAME).exists()),
    ("easyvqa log created (header only)", lambda out, st: (out / "samples" / "easyvqa.jsonl").exists()),
    ("easyvqa log being appended", _grew("easyvqa")),
    ("dialog log created (easyvqa finished)", lambda out, st: (out / "samples" / "dialog.jsonl").exists()),
    ("dialog log being appended", _grew("dialog")),
]


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_bytes_as_an_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    _run_until(ref, None)
    out = tmp_path / "out"
    for what, trigger in KILLS:
        rc = _run_until(out, trigger)
        assert rc == -signal.SIGKILL, f"the run finished before the kill ({what}): rc {rc}"
    _run_until(out, None)
    for task in ("easyvqa", "dialog"):
        got = (out / "samples" / f"{task}.jsonl").read_bytes()
        assert got == (ref / "samples" / f"{task}.jsonl").read_bytes(), task
        ids = [json.loads(x)["id"] for x in got.decode().splitlines()[1:]]
        assert len(ids) == len(set(ids)) == 16  # no sample lost or duplicated
    assert task_results_without_timing(out) == task_results_without_timing(ref)
    left = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert left == ["dialog.jsonl", "easyvqa.jsonl", "results.json"], left  # no stale/shard/temp/lock files
