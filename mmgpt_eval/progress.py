"""Progress for long work, and quiet from the libraries underneath.

``progress_bars``: on a terminal, rich bars on stderr with rate and ETA; anywhere else (a file, a pipe,
a CI log) bars are useless, so the same calls write a log line with count, rate, elapsed time and ETA
every ``LOG_EVERY_S`` seconds and when a bar completes. ``ProgressLog`` does the same for loops that
are not counted by a bar (training steps).

``third_party_progress(False)``: transformers' "Loading weights" bars and huggingface_hub's download
bars off while a model loads (the library boundary: ``evaluate(progress=False)``, the lmms-eval
backend); they print from tqdm on stderr regardless of mmgpt-eval's own settings otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

log = logging.getLogger("mmgpt_eval")

# seconds between two progress log lines when stderr is not a terminal
LOG_EVERY_S = 30.0


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress_bars(enabled: bool):
    """A rich Progress (or, off a terminal, a :class:`LogProgress`) whose tasks take a ``rate`` field
    (a short text such as "12.3 samples/s"). Disabled: nothing is shown."""
    if enabled and not stderr_is_terminal():
        return LogProgress()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class ProgressLog:
    """Log lines for ``total`` units of work: ``update(done, detail)`` writes ``"<what> 40/200 (20%),
    <detail>, 3.10 s/<unit>, elapsed 2:04, ETA 8:16"`` when ``every_s`` seconds passed since the last
    line, and always at the first and the last unit. ``start`` units were done before (a resume): the
    rate counts only the units done here."""

    def __init__(self, what: str, total: int, unit: str = "step", start: int = 0, every_s: float | None = None) -> None:
        self.what, self.total, self.unit, self.start = what, total, unit, start
        self.every_s = LOG_EVERY_S if every_s is None else every_s
        self.t0 = time.perf_counter()
        self.last: float | None = None

    def line(self, done: int, detail: str = "", own_rate: bool = True) -> str:
        elapsed = time.perf_counter() - self.t0
        here = done - self.start
        pct = f" ({100 * done / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.what} {done}/{self.total}{pct}"] + ([detail] if detail else [])
        if here > 0 and elapsed > 0:
            per = elapsed / here
            if own_rate:
                parts.append(f"{per:.2f} s/{self.unit}" if per >= 1 else f"{1 / per:.1f} {self.unit}s/s")
            eta = per * max(0, self.total - done)
            parts.append(f"elapsed {_clock(elapsed)}, ETA {_clock(eta)}")
        else:
            parts.append(f"elapsed {_clock(elapsed)}, ETA -")
        return ", ".join(parts)

    def update(self, done: int, detail: str = "", force: bool = False, own_rate: bool = True) -> bool:
        """Log a line when due; returns whether one was written. ``own_rate=False``: ``detail`` states
        the rate already."""
        now = time.perf_counter()
        due = force or self.last is None or done >= self.total or now - self.last >= self.every_s
        if due:
            self.last = now
            log.info("%s", self.line(done, detail, own_rate))
        return due


class LogProgress:
    """The subset of rich's Progress that the runner uses (``add_task``, ``update``, a context manager),
    as :class:`ProgressLog` lines instead of bars."""

    def __init__(self) -> None:
        self._tasks: dict[int, tuple[ProgressLog, dict[str, Any]]] = {}

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        """A task counted in ``fields["unit"]`` (default "sample") for the log's own rate."""
        tid = len(self._tasks)
        self._tasks[tid] = (
            ProgressLog(description, int(total or 0), unit=str(fields.get("unit", "sample")), start=int(completed)),
            {"completed": int(completed), **fields},
        )
        return tid

    def update(
        self,
        task_id: int,
        advance: float | None = None,
        completed: float | None = None,
        total: float | None = None,
        **fields: Any,
    ):
        plog, state = self._tasks[task_id]
        if total is not None:  # work found as it goes (a judge's calls, batch by batch)
            plog.total = int(total)
            return
        if completed is not None:
            state["completed"] = int(completed)
        if advance:
            state["completed"] += int(advance)
        state.update(fields)
        rate = str(state.get("rate") or "")
        plog.update(state["completed"], rate, own_rate=not rate)


# ------------------------------------------------------------------------- third-party progress bars
def quiet_third_party_progress() -> None:
    """For the rest of the process (the command line): transformers' and huggingface_hub's progress
    bars and transformers' info messages off. The libraries read these variables when imported (only
    by commands that load a model); a library imported already is told directly."""
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    try:
        if "huggingface_hub" in sys.modules:
            from huggingface_hub import utils as hf_hub_utils

            hf_hub_utils.disable_progress_bars()
        if "transformers" in sys.modules:
            import transformers

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001 - quieting a library must never fail the command
        pass


@contextmanager
def third_party_progress(enabled: bool) -> Iterator[None]:
    """Within the block, transformers' and huggingface_hub's progress bars are off unless ``enabled``;
    their previous state is restored afterwards (a Python caller's own settings survive the call)."""
    if enabled:
        yield
        return
    try:
        from huggingface_hub.utils import tqdm as hub_tqdm
        from transformers.utils import logging as tf_logging
    except ImportError:  # neither library: nothing prints bars
        yield
        return
    tf_before = tf_logging.is_progress_bar_enabled()
    hub_before = dict(getattr(hub_tqdm, "progress_bar_states", {}))
    tf_logging.disable_progress_bar()  # also turns huggingface_hub's bars off
    try:
        yield
    finally:
        if tf_before:
            with warnings.catch_warnings():  # huggingface_hub warns when its environment variable disagrees
                warnings.simplefilter("ignore")
                tf_logging.enable_progress_bar()
        states = getattr(hub_tqdm, "progress_bar_states", None)
        if isinstance(states, dict):
            states.clear()
            states.update(hub_before)
