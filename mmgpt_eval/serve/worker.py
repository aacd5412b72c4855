"""The one thread that owns the model: requests wait in a bounded queue, and each round the worker takes
every request waiting (up to ``max_batch``) and answers them in one :meth:`mmgpt_eval.engine.Engine.answer`
call -- the engine groups them by decoding settings and batches them by image count and prompt length,
exactly as for ``mmgpt-eval predict``. The model is never touched by two threads at once.

Before a round starts, the worker waits (at most ``gather_s``) for requests the HTTP side has received
but not yet queued (bodies being read, images decoded: :meth:`ModelWorker.arriving`), and for as many
requests as the previous round answered: clients that keep several requests in flight send them again
at about the same time, and are answered in one batch rather than one request and then the rest. A lone
client never waits."""

from __future__ import annotations

import logging
import contextlib
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..engine import Engine, GenerationRequest

log = logging.getLogger("mmgpt_eval")


class QueueFull(Exception):
    """More requests are waiting than the server accepts (``--max-queue``)."""


@dataclass
class WorkerStats:
    requests: int = 0
    engine_calls: int = 0
    largest_call: int = 0
    failed: int = 0
    call_sizes: list[int] = field(default_factory=list)  # the last calls' sizes (bounded)


_STOP = object()


class ModelWorker:
    def __init__(self, engine: Engine, max_batch: int = 64, max_queue: int = 256, gather_s: float = 0.05):
        self.engine = engine
        self.gather_s = gather_s
        self._arriving = 0
        self._last_round = 1  # requests answered in the previous round
        self._lock = threading.Lock()
        self.max_batch = max(1, max_batch)
        self.max_queue = max(1, max_queue)
        self.stats = WorkerStats()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="mmgpt-eval-model", daemon=True)
        self._started = False

    def start(self) -> "ModelWorker":
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def stop(self, timeout: float | None = 30) -> None:
        if self._started:
            self._queue.put(_STOP)
            self._thread.join(timeout)

    @contextlib.contextmanager
    def arriving(self):
        """Around the preparation of a request that will be submitted: rounds wait for it (briefly)."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._lock:
                self._arriving -= 1

    def submit(self, request: GenerationRequest) -> Future:
        """A future of the request's :class:`~mmgpt_eval.model.seam.Generation` (or of the exception the
        engine raised for it). :class:`QueueFull` when too many requests are waiting."""
        if self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} requests are waiting (the server's limit, --max-queue)")
        fut: Future = Future()
        self._queue.put((request, fut))
        return fut

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stop_after = False
            deadline = time.monotonic() + self.gather_s
            expect = min(self.max_batch, self._last_round)
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    if (self._arriving or len(batch) < expect) and time.monotonic() < deadline:
                        time.sleep(0.001)  # more requests are on their way: let them join this round
                        continue
                    break
                if nxt is _STOP:
                    stop_after = True
                    break
                batch.append(nxt)
            self._last_round = len(batch)
            self._answer(batch)
            if stop_after:
                return

    def _answer(self, batch: list[tuple[GenerationRequest, Future]]) -> None:
        live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.stats.engine_calls += 1
        self.stats.largest_call = max(self.stats.largest_call, len(live))
        self.stats.call_sizes = (self.stats.call_sizes + [len(live)])[-1000:]
        try:
            gens = self.engine.answer([r for r, _ in live])
        except Exception as e:  # noqa: BLE001 - handed to the waiting request(s), the worker goes on
            if len(live) > 1:  # one request's failure must not fail the others: answer each alone
                self.stats.engine_calls -= 1
                for one in live:
                    self._answer_one(*one)
                return
            self.stats.failed += 1
            live[0][1].set_exception(e)
            return
        for (_, f), g in zip(live, gens):
            f.set_result(g)
        self.stats.requests += len(live)

    def _answer_one(self, request: GenerationRequest, fut: Future) -> None:
        self.stats.engine_calls += 1
        try:
            g = self.engine.answer([request])[0]
        except Exception as e:  # noqa: BLE001 - handed to the waiting request
            self.stats.failed += 1
            fut.set_exception(e)
            return
        self.stats.requests += 1
        fut.set_result(g)
