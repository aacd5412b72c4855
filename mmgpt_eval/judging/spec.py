"""A judge from a spec string: ``openai:MODEL@BASE_URL`` (an OpenAI-compatible endpoint; the key from
an environment variable, never from a file), ``local:PATH`` (a local causal LM folder or model spec)
or ``python:MODULE:FUNCTION`` / ``python:FILE.py:FUNCTION`` (a function ``fn(messages, repeat) -> str``)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import UserError
from ..judge.backends import CallableJudge, Judge, LocalLMJudge, OpenAIJudge

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
SPEC_HELP = "openai:MODEL@BASE_URL, local:PATH or python:MODULE:FUNCTION (or python:FILE.py:FUNCTION)"


@dataclass(frozen=True)
class JudgeSettings:
    """How to reach the judge and how hard to try: the spec, the environment variable holding the API
    key (its value is never recorded), repeats per judgment, calls in flight, timeout and retries."""

    spec: str
    api_key_env: str = DEFAULT_KEY_ENV
    repeats: int = 1
    concurrency: int = 4
    timeout: float = 60.0
    retries: int = 4

    def validate(self) -> "JudgeSettings":
        if self.repeats < 1:
            raise UserError(f"--judge-repeats must be >= 1, got {self.repeats}")
        if self.concurrency < 1:
            raise UserError(f"--judge-concurrency must be >= 1, got {self.concurrency}")
        if not self.timeout > 0:
            raise UserError(f"--judge-timeout must be > 0 seconds, got {self.timeout}")
        if self.retries < 0:
            raise UserError(f"--judge-retries must be >= 0, got {self.retries}")
        kind = self.spec.split(":", 1)[0]
        if kind not in ("openai", "local", "python") or ":" not in self.spec:
            raise UserError(f"--judge {self.spec!r}: expected {SPEC_HELP}")
        return self


def _function(target: str) -> tuple[Callable[..., str], str]:
    """The function named by ``MODULE:FUNCTION`` or ``FILE.py:FUNCTION``, and a version string (the
    file's sha256, so that editing the judge's code judges again)."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise UserError(f"--judge python:{target}: expected python:MODULE:FUNCTION or python:FILE.py:FUNCTION")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise UserError("--judge: no such Python file", path)
        mod_name = "mmgpt_eval_judge_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as e:
            raise UserError(f"--judge python:{target}: cannot import {where} ({e})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"--judge python:{target}: {where} has no function {name}")
    source = getattr(module, "__file__", None)
    version = hashlib.sha256(Path(source).read_bytes()).hexdigest() if source and os.path.isfile(source) else ""
    return fn, version


def build_judge(settings: JudgeSettings) -> Judge:
    """The judge ``settings.spec`` names, checked (:meth:`Judge.check`: an unreachable endpoint, a
    refused key or an unknown model is a one-line UserError here, before anything else is done)."""
    settings.validate()
    kind, rest = settings.spec.split(":", 1)
    judge: Any
    if kind == "openai":
        model, at, url = rest.partition("@")
        if not model or (at and not url):
            raise UserError(f"--judge {settings.spec!r}: expected openai:MODEL@BASE_URL (or openai:MODEL)")
        key = os.environ.get(settings.api_key_env)
        if key is None and settings.api_key_env != DEFAULT_KEY_ENV:
            raise UserError(f"--judge-api-key-env {settings.api_key_env}: that environment variable is not set")
        judge = OpenAIJudge(
            model,
            base_url=url or None,
            api_key=key,
            timeout=settings.timeout,
            max_retries=settings.retries,
            concurrency=settings.concurrency,
        )
    elif kind == "local":
        if not rest:
            raise UserError("--judge local:PATH: the model folder or spec is missing")
        judge = LocalLMJudge(rest)
    else:
        fn, version = _function(rest)
        judge = CallableJudge(fn, name=rest, version=version, takes_repeat=True, concurrency=settings.concurrency)
    judge.check()
    return judge
