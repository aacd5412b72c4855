"""OpenAI chat-completions requests -> MultiModal-GPT prompts and generation settings, and generations ->
OpenAI responses. No HTTP and no torch here: :mod:`mmgpt_eval.serve.http` calls these functions.

Translation (what ``mmgpt-eval serve`` documents):

* ``messages``: an optional ``system`` (or ``developer``) message first, then ``user`` and ``assistant``
  turns alternating, starting and ending with ``user``. They are rendered as the ``dialog`` task renders
  a conversation (:func:`mmgpt_eval.templates.render_mmgpt_dialog`): the first turn in the ``mmgpt``
  template (``mmgpt-text`` without images), each later turn appended after the previous answer. A
  system message replaces the template's preamble ("Below is an instruction ...") verbatim.
* Images: ``image_url`` content parts of the FIRST user message (MultiModal-GPT keeps the image in the
  first turn), in order, as ``data:image/...;base64,...`` URLs or as local files (absolute paths or
  ``file://`` URLs) inside a directory the server allows (``--allow-local-images``). Several images share
  the ``### Image:`` block, one ``<image>`` each (the convention of the lmms-eval backend). http(s) URLs
  are refused: the server never goes to the network.
* The message text is its string content, or its ``text`` parts joined with newlines.
* Decoding: the server's generation flags are the defaults; ``max_tokens`` (or
  ``max_completion_tokens``), ``temperature`` (0: greedy; > 0: sampling at that temperature), ``top_p``
  (sampling only), ``seed`` and ``stop`` (up to 4 strings; the answer is cut before the first one) override
  them per request. ``n`` must be 1. ``frequency_penalty`` / ``presence_penalty`` other than 0,
  ``logprobs``, ``tools`` and non-text ``response_format`` are refused (not implemented).
* The answer is the decoded text after the last ``### Response:``, stripped: the same rule as
  ``mmgpt-eval predict`` (:meth:`mmgpt_eval.templates.Template.extract`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import UserError
from ..generation_settings import GenerationSettings, check_value
from ..model.seam import Generation
from ..templates import IMAGE, MMGPT_PREAMBLE, TEMPLATES, render_mmgpt_dialog

MAX_STOP_STRINGS = 4
_GREEDY = GenerationSettings()


class ApiError(Exception):
    """A request the server refuses: HTTP ``status`` and an OpenAI-style error body."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None, kind: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.kind = kind or ("invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests get a 4xx answer."""

    max_body_bytes: int = 32 * 2**20
    max_images: int = 8
    max_image_pixels: int = 4096 * 4096
    max_tokens: int = 1024
    max_messages: int = 64

    def validate(self) -> "Limits":
        for name in ("max_body_bytes", "max_images", "max_image_pixels", "max_tokens", "max_messages"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise UserError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v!r}")
        return self


@dataclass
class ChatRequest:
    """One parsed chat-completions request, ready for the engine."""

    prompt: str
    images: list[Image.Image]
    image_keys: list[str]
    settings: GenerationSettings
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage


@dataclass
class Answer:
    text: str
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int


# ------------------------------------------------------------------------------------------ images
def _image_from_bytes(data: bytes, where: str, limits: Limits) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
    except Exception as e:  # noqa: BLE001 - PIL raises many types for undecodable data
        raise ApiError(400, f"{where} is not a readable image ({type(e).__name__})", "messages") from None
    if w * h > limits.max_image_pixels:
        raise ApiError(
            413,
            f"{where} is {w}x{h} = {w * h} pixels, over the server's limit of {limits.max_image_pixels}",
            "messages",
            "image_too_large",
        )
    try:
        return im.convert("RGB")  # as mmgpt_eval.images.open_image reads a file: the same pixels as predict
    except Exception as e:  # noqa: BLE001 - a truncated file fails only when its pixels are read
        raise ApiError(400, f"{where} is not a readable image ({type(e).__name__}: {e})", "messages") from None


def _local_path(url: str) -> Path:
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise ApiError(400, f"file URL with a host is not a local file: {url[:200]}", "messages")
        return Path(unquote(parsed.path))
    return Path(url)


def load_image(url: str, where: str, limits: Limits, allowed_dirs: list[Path]) -> tuple[Image.Image, str]:
    """The RGB image an ``image_url`` names, and a content key (identical images are encoded once)."""
    if not isinstance(url, str) or not url:
        raise ApiError(400, f"{where}: image_url.url must be a non-empty string", "messages")
    low = url[:16].lower()
    if low.startswith(("http://", "https://")):
        raise ApiError(
            400,
            f"{where}: remote image URLs are not fetched (the server does not use the network); send the image "
            "as a data: URL (data:image/png;base64,...)",
            "messages",
            "remote_image_url",
        )
    if low.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or not header.lower().endswith(";base64") or not header[5:].lower().startswith("image/"):
            raise ApiError(400, f"{where}: a data URL must look like data:image/<type>;base64,<data>", "messages")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{where}: the data URL's base64 is malformed", "messages") from None
        return _image_from_bytes(data, where, limits), "sha256:" + hashlib.sha256(data).hexdigest()
    if ":" in url.split("/", 1)[0] and not url.startswith("file://"):
        raise ApiError(400, f"{where}: unsupported image URL scheme {url.split(':', 1)[0]!r}", "messages")
    path = _local_path(url)
    if not allowed_dirs:
        raise ApiError(
            400,
            f"{where}: local image paths are not allowed by this server (start it with --allow-local-images DIR), "
            "or send the image as a data: URL",
            "messages",
            "local_images_not_allowed",
        )
    if not path.is_absolute():
        raise ApiError(400, f"{where}: a local image path must be absolute, got {url[:200]}", "messages")
    real = Path(path).resolve()
    if not any(real.is_relative_to(d) for d in allowed_dirs):
        raise ApiError(
            403,
            f"{where}: {path} is outside the directories this server allows (--allow-local-images)",
            "messages",
            "image_path_not_allowed",
            kind="permission_error",
        )
    if not real.is_file():
        raise ApiError(400, f"{where}: image not found: {path}", "messages", "image_not_found")
    data = real.read_bytes()
    if len(data) > limits.max_body_bytes:
        raise ApiError(413, f"{where}: {path} is larger than the server's limit of {limits.max_body_bytes} bytes")
    return _image_from_bytes(data, f"{where} ({path})", limits), "sha256:" + hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ messages
def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list):
        raise ApiError(400, f"{where}.content must be a string or a list of content parts", "messages")
    for j, p in enumerate(content):
        if not isinstance(p, dict) or not isinstance(p.get("type"), str):
            raise ApiError(400, f"{where}.content[{j}] must be an object with a 'type'", "messages")
    return content


def _text(parts: list[dict[str, Any]], where: str) -> str:
    texts = []
    for j, p in enumerate(parts):
        if p["type"] == "text":
            if not isinstance(p.get("text"), str):
                raise ApiError(400, f"{where}.content[{j}].text must be a string", "messages")
            texts.append(p["text"])
    text = "\n".join(texts)
    if IMAGE in text:
        raise ApiError(
            400,
            f"{where}: the text contains the image placeholder {IMAGE}; send images as image_url content parts",
            "messages",
        )
    return text


def _image_urls(parts: list[dict[str, Any]], where: str) -> list[Any]:
    """The ``url`` of each image part (checked by :func:`load_image`)."""
    urls = []
    for j, p in enumerate(parts):
        t = p["type"]
        if t == "text":
            continue
        if t != "image_url":
            raise ApiError(
                400, f"{where}.content[{j}]: content type {t!r} is not supported (text and image_url)", "messages"
            )
        iu = p.get("image_url")
        urls.append(iu.get("url") if isinstance(iu, dict) else iu)
    return urls


def render_prompt(system: str | None, turns: list[tuple[str, str | None]], n_images: int) -> str:
    """The MultiModal-GPT prompt of a conversation whose first turn carries ``n_images`` images."""
    text = render_mmgpt_dialog(turns, has_image=n_images > 0)
    if n_images > 1:
        text = text.replace(IMAGE, IMAGE * n_images, 1)
    if system is not None:
        assert text.startswith(MMGPT_PREAMBLE)
        text = system + text[len(MMGPT_PREAMBLE) :]
    return text


def parse_messages(messages: Any, limits: Limits) -> tuple[str | None, list[tuple[str, str | None]], list[Any]]:
    """(system text, [(user text, assistant answer or None for the last)], image URLs of the first turn)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", "messages")
    if len(messages) > limits.max_messages:
        raise ApiError(400, f"{len(messages)} messages, over the server's limit of {limits.max_messages}", "messages")
    system = None
    turns: list[tuple[str, str | None]] = []
    urls: list[Any] = []
    expect = "user"
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"{where} must be an object with a 'role'", "messages")
        role = m["role"]
        parts = _parts(m.get("content"), where)
        if role in ("system", "developer"):
            if i != 0:
                raise ApiError(400, f"{where}: a {role} message may only come first", "messages")
            if _image_urls(parts, where):
                raise ApiError(400, f"{where}: a {role} message cannot hold images", "messages")
            system = _text(parts, where)
            continue
        if role not in ("user", "assistant"):
            raise ApiError(400, f"{where}: role {role!r} is not supported (system, user, assistant)", "messages")
        if role != expect:
            raise ApiError(
                400, f"{where}: expected a {expect} message (user and assistant turns alternate)", "messages"
            )
        text = _text(parts, where)
        found = _image_urls(parts, where)
        if role == "user":
            if found and turns:
                raise ApiError(
                    400,
                    f"{where}: images are accepted in the first user message only (MultiModal-GPT keeps the "
                    "image in the first turn of a conversation)",
                    "messages",
                )
            urls += found
            turns.append((text, None))
            expect = "assistant"
        else:
            if found:
                raise ApiError(400, f"{where}: an assistant message cannot hold images", "messages")
            turns[-1] = (turns[-1][0], text)
            expect = "user"
    if not turns or turns[-1][1] is not None:
        raise ApiError(400, "the last message must be a user message", "messages")
    if len(urls) > limits.max_images:
        raise ApiError(400, f"{len(urls)} images, over the server's limit of {limits.max_images}", "messages")
    return system, turns, urls


# ------------------------------------------------------------------------------------------ settings
def _number(body: dict[str, Any], key: str) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ApiError(400, f"'{key}' must be a number, got {v!r}", key)
    return float(v)


def request_settings(body: dict[str, Any], defaults: GenerationSettings, limits: Limits) -> GenerationSettings:
    """The server's default decoding with this request's overrides."""
    s = GenerationSettings(**defaults.to_dict())
    key = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    mt = body.get(key)
    if mt is not None:
        if isinstance(mt, bool) or not isinstance(mt, int) or mt < 1:
            raise ApiError(400, f"'{key}' must be an integer >= 1, got {mt!r}", key)
        if mt > limits.max_tokens:
            raise ApiError(400, f"'{key}' is {mt}, over the server's limit of {limits.max_tokens}", key)
        s.max_new_tokens = mt
    t = _number(body, "temperature")
    if t is not None:
        if not 0 <= t <= 2:
            raise ApiError(400, f"'temperature' must be between 0 and 2, got {t:g}", "temperature")
        s.do_sample = t > 0
        if t > 0:
            s.temperature = t
    if not s.do_sample:  # greedy: sampling parameters play no part (one batch group for all greedy requests)
        s.temperature, s.top_p, s.top_k = _GREEDY.temperature, _GREEDY.top_p, _GREEDY.top_k
    p = _number(body, "top_p")
    if p is not None:
        if not 0 < p <= 1:
            raise ApiError(400, f"'top_p' must satisfy 0 < top_p <= 1, got {p:g}", "top_p")
        if s.do_sample:
            s.top_p = p
    if body.get("seed") is not None:
        try:
            s.seed = check_value("seed", body["seed"])
        except ValueError as e:
            raise ApiError(400, str(e), "seed") from None
    try:
        return s.validate("request")
    except UserError as e:
        raise ApiError(400, str(e)) from None


def _stop(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > MAX_STOP_STRINGS:
        raise ApiError(400, f"'stop' must be a string or a list of at most {MAX_STOP_STRINGS} strings", "stop")
    return [s for s in stop if s]


def _refuse_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise ApiError(400, f"'n' must be 1 (one choice per request), got {n!r}", "n")
    for key in ("frequency_penalty", "presence_penalty"):
        v = _number(body, key)
        if v:
            raise ApiError(400, f"'{key}' is not supported (only 0)", key)
    if body.get("logprobs") or body.get("top_logprobs"):
        raise ApiError(400, "'logprobs' is not supported", "logprobs")
    if body.get("tools") or body.get("functions"):
        raise ApiError(400, "tools / function calling is not supported", "tools")
    rf = body.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or rf.get("type") != "text"):
        raise ApiError(400, "only response_format {'type': 'text'} is supported", "response_format")
    if not isinstance(body.get("stream", False), (bool, type(None))):
        raise ApiError(400, "'stream' must be true or false", "stream")


def parse_chat_request(
    body: Any, served_model: str, defaults: GenerationSettings, limits: Limits, allowed_dirs: list[Path]
) -> ChatRequest:
    """A decoded JSON body -> :class:`ChatRequest`; :class:`ApiError` (4xx) for anything the server refuses."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "'model' is required (a string; GET /v1/models lists it)", "model")
    if model != served_model:
        raise ApiError(
            404,
            f"the model {model!r} does not exist; this server serves {served_model!r}",
            "model",
            "model_not_found",
        )
    _refuse_unsupported(body)
    system, turns, urls = parse_messages(body.get("messages"), limits)
    settings = request_settings(body, defaults, limits)
    stop = _stop(body)
    images, keys = [], []
    for k, url in enumerate(urls):
        im, key = load_image(url, f"image {k + 1}", limits, allowed_dirs)
        images.append(im)
        keys.append(key)
    opts = body.get("stream_options")
    return ChatRequest(
        prompt=render_prompt(system, turns, len(images)),
        images=images,
        image_keys=keys,
        settings=settings,
        stop=stop,
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")),
    )


# ------------------------------------------------------------------------------------------ answers
def cut_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """``text`` before the first occurrence of any stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i != -1), default=-1)
    return (text[:cut], True) if cut != -1 else (text, False)


def answer(req: ChatRequest, g: Generation) -> Answer:
    """The reply to ``req`` from its generation: extracted as ``mmgpt-eval predict`` extracts a
    MultiModal-GPT answer, then cut at the request's stop strings."""
    text = TEMPLATES["mmgpt"].extract(g.full_text, g.text)
    text, stopped = cut_at_stop(text, req.stop)
    reason = "stop" if (stopped or g.stopped_on_eos) else "length"
    return Answer(text, reason, g.prompt_tokens, g.num_new_tokens)


def _usage(a: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": a.prompt_tokens,
        "completion_tokens": a.completion_tokens,
        "total_tokens": a.prompt_tokens + a.completion_tokens,
    }


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def completion_body(a: Answer, model: str, cid: str | None = None, created: int | None = None) -> dict[str, Any]:
    """OpenAI's ``chat.completion`` object."""
    return {
        "id": cid or completion_id(),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": a.text},
                "logprobs": None,
                "finish_reason": a.finish_reason,
            }
        ],
        "usage": _usage(a),
    }


def stream_chunks(a: Answer, model: str, include_usage: bool) -> list[dict[str, Any]]:
    """OpenAI's ``chat.completion.chunk`` objects of a streamed reply: the role, the whole answer in one
    content chunk (the answer exists only once generation has finished), the finish reason, and with
    ``stream_options.include_usage`` a last chunk with the usage."""
    cid, created = completion_id(), int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    out = [chunk({"role": "assistant", "content": ""}, None), chunk({"content": a.text}, None)]
    out.append(chunk({}, a.finish_reason))
    if include_usage:
        out.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(a),
            }
        )
    return out
