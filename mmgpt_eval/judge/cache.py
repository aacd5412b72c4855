"""The judgment cache: every judge reply, keyed by the sha256 of what determines it -- the judge's
identity, the prompt template's hash, the rendered judge input (messages, plus the image identity the
caption stands for) and the repeat index. One append-only JSONL file, each line ``{"key", "reply",
"usage"}``, flushed and fsynced per reply (the sample logs' rule): a process killed at any point
loses at most the reply being written, whose torn last line is dropped (and cut off) on the next
open, and a reply is never asked for twice."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError

log = logging.getLogger("mmgpt_eval")


def judgment_key(identity: dict[str, Any], template_sha256: str, judge_input: Any, repeat: int) -> str:
    payload = {"judge": identity, "template": template_sha256, "input": judge_input, "repeat": repeat}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class CacheStats:
    calls: int = 0  # judge calls answered in this session
    hits: int = 0  # judgments read from the cache
    failed_calls: int = 0  # calls that failed after every retry (not cached: asked again next time)
    retries: int = 0  # failed attempts that were retried
    prompt_tokens: int = 0
    completion_tokens: int = 0


class JudgmentCache:
    """Thread-safe; ``path=None`` keeps the cache in memory only."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path is not None else None
        self._replies: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()
        if self.path is not None:
            self._load()

    def _load(self) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good = 0
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            if last and line:  # no newline after it: cut short by a kill
                log.warning("%s: dropping an incomplete last line (interrupted judging)", self.path)
                break
            if line.strip():
                try:
                    obj = json.loads(line)
                    key, reply = obj["key"], obj["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    if i >= len(lines) - 2:
                        log.warning("%s: dropping an incomplete last line (interrupted judging)", self.path)
                        break
                    raise UserError(
                        f"corrupt line {i + 1} in the judgment cache; delete the file to start over", self.path
                    ) from None
                self._replies[key] = {"reply": reply, "usage": obj.get("usage", {})}
            good += len(line) + (0 if last else 1)
        if good < len(raw):
            with self.path.open("r+b") as f:
                f.truncate(good)

    def __len__(self) -> int:
        return len(self._replies)

    def __contains__(self, key: str) -> bool:
        return key in self._replies

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._replies.get(key)
            if hit is not None:
                self.stats.hits += 1
            return hit

    def put(self, key: str, reply: str, usage: dict[str, int], retries: int = 0) -> None:
        entry = {"reply": reply, "usage": dict(usage)}
        with self._lock:
            self.stats.calls += 1
            self.stats.retries += retries
            self.stats.prompt_tokens += int(usage.get("prompt_tokens", 0))
            self.stats.completion_tokens += int(usage.get("completion_tokens", 0))
            if key in self._replies:
                return
            self._replies[key] = entry
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": key, **entry}, ensure_ascii=False) + "\n")
                    f.flush()
                    os.fsync(f.fileno())

    def failed(self, retries: int = 0) -> None:
        with self._lock:
            self.stats.failed_calls += 1
            self.stats.retries += retries
