"""The HTTP side of ``mmgpt-eval serve``: a FastAPI application with OpenAI's chat-completions routes,
run by uvicorn (optional extra ``mmgpt-eval[serve]``).

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /v1/models/{model}``, ``GET /health``.
Every refusal is an OpenAI-style error object (``{"error": {"message", "type", "param", "code"}}``) with a
4xx status: 400 bad request (malformed JSON, a bad field, a missing image, wrong image count...), 403 an
image path outside the allowed directories, 404 an unknown model or route, 413 a body or image over the
limits, 503 the queue is full. A failure inside the model is a 500 with the same shape (logged with its
traceback); the server stays up either way.

Streaming (``"stream": true``) is answered as server-sent events in OpenAI's chunk format, ending with
``data: [DONE]``; the answer comes as one content chunk once generation has finished (batched generation
has no per-token stream).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import GenerationRequest
from ..errors import UserError
from ..generation_settings import GenerationSettings
from ..model.seam import STOP_EOS
from ..version import __version__
from .chat import ApiError, Limits, answer, completion_body, parse_chat_request, stream_chunks
from .worker import ModelWorker, QueueFull

log = logging.getLogger("mmgpt_eval")

# request bodies up to this size are parsed (JSON, images decoded) on the event loop: a thread hand-off
# costs more than the work
INLINE_PARSE_BYTES = 256 * 2**10


@dataclass
class ServeSettings:
    """What the server answers with: the model's public name, the default decoding, the limits and the
    directories local image paths may point into."""

    served_model_name: str
    defaults: GenerationSettings = field(default_factory=GenerationSettings)
    limits: Limits = field(default_factory=Limits)
    allowed_image_dirs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.limits.validate()
        self.allowed_image_dirs = [Path(d).resolve() for d in self.allowed_image_dirs]
        if self.defaults.max_new_tokens > self.limits.max_tokens:
            raise UserError(
                f"--max-new-tokens {self.defaults.max_new_tokens} is over --max-tokens {self.limits.max_tokens}"
            )


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is {declared} bytes, over the server's limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is over the server's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(settings: ServeSettings, worker: ModelWorker) -> FastAPI:
    """The application; ``worker`` answers generation requests (started by the caller)."""
    app = FastAPI(title="mmgpt-eval serve", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())
    name = settings.served_model_name

    def model_card() -> dict[str, Any]:
        return {"id": name, "object": "model", "created": created, "owned_by": "mmgpt-eval"}

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        msg = f"{request.method} {request.url.path}: {e.detail}"
        code = "not_found" if e.status_code == 404 else None
        return _error(ApiError(e.status_code, msg, code=code))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, e: Exception) -> JSONResponse:
        log.error("internal error answering %s %s", request.method, request.url.path, exc_info=e)
        return _error(ApiError(500, f"internal error ({type(e).__name__}); see the server's log"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        st = worker.stats
        return {
            "status": "ok",
            "model": name,
            "requests_answered": st.requests,
            "requests_failed": st.failed,
            "engine_calls": st.engine_calls,
            "largest_engine_call": st.largest_call,
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def one_model(model_id: str) -> dict[str, Any]:
        if model_id != name:
            raise ApiError(404, f"the model {model_id!r} does not exist; this server serves {name!r}", "model",
                           "model_not_found")  # fmt: skip
        return model_card()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        with worker.arriving():  # the worker waits briefly for a request on its way (batching)
            raw = await _read_body(request, settings.limits.max_body_bytes)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                raise ApiError(400, f"the request body is not valid JSON ({e})") from None
            parse_args = (body, name, settings.defaults, settings.limits, settings.allowed_image_dirs)
            if len(raw) <= INLINE_PARSE_BYTES:  # small images decode in well under a millisecond
                req = parse_chat_request(*parse_args)
            else:  # large ones in a thread, so that the event loop goes on serving
                req = await run_in_threadpool(parse_chat_request, *parse_args)
            try:
                fut = worker.submit(GenerationRequest(req.prompt, req.images, req.image_keys, req.settings, STOP_EOS))
            except QueueFull as e:
                raise ApiError(
                    503, f"the server is busy: {e}; retry later", code="queue_full", kind="server_error"
                ) from None
        try:
            gen = await asyncio.wrap_future(fut)
        except UserError as e:  # a request the model cannot answer (e.g. images for a text-only family)
            raise ApiError(400, str(e)) from None
        a = answer(req, gen)
        if not req.stream:
            return JSONResponse(completion_body(a, name))
        chunks = stream_chunks(a, name, req.include_usage)

        async def events():
            for c in chunks:
                yield f"data: {json.dumps(c, ensure_ascii=False)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one), or a one-line :class:`UserError`."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UserError(f"--host {host}: cannot resolve ({e.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    # the protocol number matters: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets whose
    # proto is IPPROTO_TCP, and without that every keep-alive response waits ~40 ms for a delayed ACK
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def serve(app: FastAPI, sock: socket.socket, log_level: str = "warning", access_log: bool = False) -> None:
    """Run ``app`` with uvicorn on ``sock`` until interrupted."""
    import uvicorn

    # no lifespan events (the app has no start-up or shut-down hooks): Ctrl-C then stops without a traceback
    config = uvicorn.Config(
        app, log_level=log_level, access_log=access_log, lifespan="off", timeout_graceful_shutdown=10
    )
    uvicorn.Server(config).run(sockets=[sock])
