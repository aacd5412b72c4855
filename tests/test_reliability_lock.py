"""One run per output folder (mmgpt_eval/lock.py): a second run on a locked folder fails at once with
exit 2 naming the holder; a lock left by a killed process is taken over; a clean run leaves no lock."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmgpt_eval.errors import UserError
from mmgpt_eval.lock import LOCK_NAME, OutputLock, output_lock
from mmgpt_eval.results import RunResults

ROOT = Path(__file__).resolve().parents[1]


def _cli(out: Path, limit: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mmgpt_eval",
        "-q",
        "run",
        "--model",
        "tiny-openflamingo",
        "--tasks",
        "easyvqa",
        "--limit",
        str(limit),
        "--batch-size",
        "4",
        "--output-dir",
        str(out),
        "--no-report",
        "--no-progress",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def mmgpt_log():
    h = _Records()
    lg = logging.getLogger("mmgpt_eval")
    lg.addHandler(h)
    old = lg.level
    lg.setLevel(logging.DEBUG)
    yield h
    lg.removeHandler(h)
    lg.setLevel(old)


def test_a_second_run_on_a_locked_folder_fails_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(
        _cli(out, 40), cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lock = out / LOCK_NAME
        deadline = time.monotonic() + 120
        info = {}
        while time.monotonic() < deadline and first.poll() is None:
            if lock.exists() and lock.stat().st_size:
                info = json.loads(lock.read_text())
                break
            time.sleep(0.02)
        assert info, f"the lock file never appeared (first run rc={first.poll()})"
        assert info["pid"] == first.pid and info["host"] == socket.gethostname()
        assert "--output-dir" in info["command"] and info["started"]
        # pause the holder (it keeps its lock) so the second run surely meets it, however slow its start
        os.kill(first.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            second = subprocess.run(
                _cli(out, 40), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
            )
        finally:
            os.kill(first.pid, signal.SIGCONT)
        took = time.monotonic() - t0
        assert first.poll() is None
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr
        msg = lines[0]
        assert msg.startswith("mmgpt-eval: error: ") and str(out) in msg
        assert "in use by another mmgpt-eval run" in msg
        assert f"pid {first.pid}" in msg and f"host {socket.gethostname()}" in msg
        assert f"since {info['started']}" in msg and "run --model tiny-openflamingo" in msg
        assert took < 60
    finally:
        try:
            stdout, stderr = first.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            first.kill()
            raise
    assert first.returncode == 0, stderr
    res = RunResults.load(out)
    assert res.tasks["easyvqa"].n_samples == 40
    assert len(res.records("easyvqa")) == 40
    assert not (out / LOCK_NAME).exists()  # released cleanly
    assert "taken over" not in stderr


def test_lock_conflict_in_process_and_clean_release(tmp_path):
    out = tmp_path / "o"
    with output_lock(out, ["mmgpt-eval", "run", "x"]) as held:
        assert held is not None and (out / LOCK_NAME).is_file()
        with pytest.raises(UserError) as e:
            OutputLock(out, "another").acquire()
        assert f"pid {os.getpid()}" in str(e.value) and "mmgpt-eval run x" in str(e.value)
        assert "\n" not in str(e.value)
    assert not (out / LOCK_NAME).exists()
    assert not out.exists()  # the lock created the folder and nothing was written: no empty folder left
    out.mkdir()
    (out / "results.json").write_text("{}")
    with output_lock(out, "again"):
        pass
    assert (out / "results.json").exists() and not (out / LOCK_NAME).exists()


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    out = tmp_path / "o"
    with output_lock(out, "rank 0"):
        monkeypatch.setenv("RANK", "1")
        monkeypatch.setenv("WORLD_SIZE", "2")
        with output_lock(out, "rank 1") as held:  # would conflict if it tried
            assert held is None


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path, mmgpt_log):
    out = tmp_path / "o"
    out.mkdir()
    pid = _dead_pid()
    (out / LOCK_NAME).write_text(
        json.dumps(
            {"pid": pid, "host": socket.gethostname(), "started": "2020-01-01", "command": "mmgpt-eval run killed"}
        )
        + "\n"
    )
    with output_lock(out, ["mmgpt-eval", "run", "new"]):
        info = json.loads((out / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "mmgpt-eval run new"
    warn = [m for m in mmgpt_log.messages if "taken over a stale lock" in m]
    assert warn and f"pid {pid}" in warn[0] and "that process is gone" in warn[0], mmgpt_log.messages
    assert not (out / LOCK_NAME).exists()


def test_a_lock_held_by_a_killed_run_is_free_again(tmp_path, mmgpt_log):
    """flock dies with its process: SIGKILL the holder, the next run takes the lock over."""
    out = tmp_path / "o"
    code = (
        "import os, signal, sys; from mmgpt_eval.lock import OutputLock; "
        f"OutputLock({str(out)!r}, 'mmgpt-eval run doomed').acquire(); print('held', flush=True); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == -9 and "held" in r.stdout
    assert json.loads((out / LOCK_NAME).read_text())["command"] == "mmgpt-eval run doomed"
    with output_lock(out, "next"):
        pass
    assert any("taken over a stale lock" in m and "doomed" in m for m in mmgpt_log.messages)
