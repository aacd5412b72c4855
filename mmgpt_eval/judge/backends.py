"""Judge backends: anything that answers a list of chat messages with text.

A :class:`Judge` answers ``complete(messages, repeat=i)`` (``repeat``: the judge-repeat index, passed
as the sampling seed where the backend takes one) and describes itself with ``identity()``: backend
kind, model id and whatever version the backend reports, sampling parameters. The identity is part of
every judgment's cache key, so a judge that reports another model id is a different judge.

Backends: :class:`OpenAIJudge` (any OpenAI-compatible chat-completions endpoint: vLLM, SGLang,
llama.cpp, Ollama, hosted APIs), :class:`LocalLMJudge` (a local Hugging Face causal LM through the
model seam's text-only family, greedy) and :class:`CallableJudge` (a Python function; custom judges).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from ..errors import UserError

Messages = list[dict[str, str]]

ENV_BASE_URL = "MMGPT_EVAL_JUDGE_BASE_URL"
ENV_API_KEY = "MMGPT_EVAL_JUDGE_API_KEY"


@dataclass(frozen=True)
class JudgeReply:
    text: str
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens / completion_tokens when known
    retries: int = 0  # failed attempts before this reply


class JudgeCallError(Exception):
    """A judge call that failed after every retry (rate limit, server error, timeout): counted, never a score."""

    def __init__(self, message: str, retries: int = 0):
        super().__init__(message)
        self.retries = retries


@runtime_checkable
class Judge(Protocol):
    concurrency: int  # calls in flight at once

    def complete(self, messages: Messages, *, repeat: int = 0) -> JudgeReply: ...

    def identity(self) -> dict[str, Any]: ...

    def check(self) -> None:
        """Fail early, with a one-line UserError, when the judge cannot answer (before any generation)."""
        ...


def _usage(u: Any) -> dict[str, int]:
    if u is None:
        return {}
    out = {}
    for k in ("prompt_tokens", "completion_tokens"):
        v = getattr(u, k, None)
        if isinstance(v, int):
            out[k] = v
    return out


class OpenAIJudge:
    """An OpenAI-compatible chat-completions endpoint through the ``openai`` client.

    Our own retries (the client's are off, so every attempt is counted): on 429, 5xx, timeouts and
    dropped connections, up to ``max_retries`` more attempts with exponential backoff
    ``backoff * 2**attempt`` seconds. Wrong key, unknown model, unreachable endpoint: one-line
    :class:`UserError` from :meth:`check`, which makes one cheap request (the model list and a one-token
    reply, whose ``model`` field says what the server actually serves)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        concurrency: int = 4,
        sleep: Callable[[float], None] = time.sleep,
    ):
        import openai

        if concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff < 0:
            raise UserError(
                "judge settings: concurrency must be >= 1, retries >= 0, timeout > 0, backoff >= 0 "
                f"(got {concurrency}, {max_retries}, {timeout}, {backoff})"
            )
        self.model = model
        self.base_url = base_url or os.environ.get(ENV_BASE_URL) or "https://api.openai.com/v1"
        key = api_key or os.environ.get(ENV_API_KEY) or os.environ.get("OPENAI_API_KEY") or "none"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        self._sleep = sleep
        self._openai = openai
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=timeout)
        self._served: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.reply_models: Counter[str] = Counter()  # the `model` field of every judging reply

    def _retryable(self, e: Exception) -> bool:
        o = self._openai
        if isinstance(e, (o.RateLimitError, o.APITimeoutError, o.APIConnectionError)):
            return True
        return isinstance(e, o.APIStatusError) and e.status_code >= 500

    def _user_error(self, e: Exception) -> UserError | None:
        o = self._openai
        where = f"judge endpoint {self.base_url}"
        if isinstance(e, (o.AuthenticationError, o.PermissionDeniedError)):
            return UserError(
                f"{where}: the API key was refused ({e.status_code}); put the key in the environment variable "
                f"--judge-api-key-env names (default OPENAI_API_KEY) or in {ENV_API_KEY}"
            )
        if isinstance(e, o.NotFoundError):
            return UserError(f"{where}: unknown model {self.model!r} (404)")
        if isinstance(e, o.APIConnectionError):
            return UserError(f"{where}: unreachable ({type(e).__name__}: {e})")
        if isinstance(e, o.APIStatusError) and 400 <= e.status_code < 500 and e.status_code != 429:
            return UserError(f"{where}: request refused ({e.status_code}: {str(e)[:200]})")
        return None

    def _create(self, messages: Messages, **extra: Any) -> tuple[Any, int]:
        """One chat completion with our retries: (response, failed attempts)."""
        attempt = 0
        while True:
            try:
                resp = self.client.chat.completions.create(model=self.model, messages=messages, **extra)  # type: ignore[arg-type]
                return resp, attempt
            except Exception as e:
                if not self._retryable(e):
                    err = self._user_error(e)
                    if err is not None:
                        raise err from None
                    raise
                if attempt >= self.max_retries:
                    raise JudgeCallError(
                        f"{type(e).__name__} after {attempt + 1} attempts: {str(e)[:200]}", attempt
                    ) from None
                self._sleep(self.backoff * 2**attempt)
                attempt += 1

    def check(self) -> None:
        with self._lock:
            if self._served is not None:
                return
            listed: dict[str, Any] | None
            try:
                listed = {m.id: m for m in self.client.models.list()}
            except self._openai.NotFoundError:
                listed = None  # a server without a model list: the test request below tells
            except self._openai.OpenAIError as e:
                err = self._user_error(e)
                if err is None:
                    err = UserError(f"judge endpoint {self.base_url}: cannot list models ({type(e).__name__}: {e})")
                raise err from None
            if listed is not None and self.model not in listed:
                known = ", ".join(sorted(listed)[:10]) or "none"
                raise UserError(f"judge endpoint {self.base_url}: unknown model {self.model!r}; it serves: {known}")
            entry = listed.get(self.model) if listed is not None else None
            extra = getattr(entry, "model_extra", None) or {}
            try:
                resp, _ = self._create([{"role": "user", "content": "Reply with OK."}], max_tokens=1, temperature=0.0)
            except JudgeCallError as e:
                raise UserError(f"judge endpoint {self.base_url}: no reply to a test request ({e})") from None
            self._served = {
                "listed_id": getattr(entry, "id", None),
                "owned_by": getattr(entry, "owned_by", None),
                "root": extra.get("root"),
                "reply_model": getattr(resp, "model", None),
                "system_fingerprint": getattr(resp, "system_fingerprint", None),
            }

    def identity(self) -> dict[str, Any]:
        self.check()
        return {
            "kind": "openai",
            "base_url": self.base_url,
            "model": self.model,
            "served": dict(self._served or {}),
            "sampling": {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": "repeat index"},
        }

    def complete(self, messages: Messages, *, repeat: int = 0) -> JudgeReply:
        resp, retries = self._create(messages, temperature=self.temperature, max_tokens=self.max_tokens, seed=repeat)
        text = resp.choices[0].message.content if resp.choices else None
        with self._lock:
            self.reply_models[str(getattr(resp, "model", None))] += 1
        return JudgeReply(text or "", _usage(getattr(resp, "usage", None)), retries)


def messages_as_text(messages: Messages, tokenizer: Any = None) -> str:
    """A chat as one prompt: the tokenizer's chat template when it has one, else ``Role: text`` blocks."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(parts) + "\n\nAssistant:"


class LocalLMJudge:
    """A local Hugging Face causal LM (a model folder, or a model spec: preset name or TOML) through the
    model seam's text-only family; greedy decoding, so every repeat gives the same reply."""

    concurrency = 1

    def __init__(self, spec: str, *, device: str | None = "cpu", max_new_tokens: int = 256):
        from ..generation_settings import GenerationSettings
        from ..model.build import load_model
        from ..model.families import eval_model
        from ..model.spec import ModelSpec, load_spec

        overrides: dict[str, Any] = {"device": device} if device else {}
        folder = Path(spec)
        if folder.is_dir():  # a Hugging Face model folder (weights, config and tokenizer)
            self.spec = ModelSpec(family="causal-lm", lm=str(folder), tokenizer=str(folder), name=spec, source=spec)
            if device:
                self.spec.device = device
            self.spec.validate(spec)
        else:
            self.spec = load_spec(spec, overrides)
        if self.spec.family != "causal-lm":
            raise UserError(f"a local judge must be a text-only causal LM (family causal-lm), not {self.spec.family}")
        self.loaded = load_model(self.spec)
        self.model = eval_model(self.loaded)
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens).validate("judge generation settings")
        self._lock = threading.Lock()

    def check(self) -> None:
        return None

    def identity(self) -> dict[str, Any]:
        prov = self.loaded.provenance()
        return {
            "kind": "local-lm",
            "model": prov["model_spec"],
            "parameters": prov["parameters"],
            "sampling": self.settings.to_dict(),
        }

    def complete(self, messages: Messages, *, repeat: int = 0) -> JudgeReply:
        from ..model.seam import STOP_END_OF_TURN, PromptInput

        prompt = messages_as_text(messages, self.loaded.tokenizer)
        with self._lock:
            gen = self.model.generate_batch([PromptInput(prompt)], self.settings, STOP_END_OF_TURN)[0]
        return JudgeReply(gen.text, {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.num_new_tokens})


class CallableJudge:
    """A Python function ``fn(messages) -> str`` (or ``fn(messages, repeat) -> str`` with
    ``takes_repeat``) as a judge; ``name`` (and ``version``) identify it in the cache key."""

    def __init__(
        self,
        fn: Callable[..., str],
        *,
        name: str | None = None,
        version: str = "",
        takes_repeat: bool = False,
        concurrency: int = 1,
    ):
        self.fn = fn
        self.name = name or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        self.version = version
        self.takes_repeat = takes_repeat
        self.concurrency = concurrency

    def check(self) -> None:
        return None

    def identity(self) -> dict[str, Any]:
        return {"kind": "callable", "model": self.name, "version": self.version}

    def complete(self, messages: Messages, *, repeat: int = 0) -> JudgeReply:
        text = self.fn(messages, repeat) if self.takes_repeat else self.fn(messages)
        if not isinstance(text, str):
            raise TypeError(f"judge function {self.name} returned {type(text).__name__}, not str")
        return JudgeReply(text)
