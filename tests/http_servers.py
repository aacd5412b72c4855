"""Test helpers for real HTTP on 127.0.0.1: an ASGI app (a scripted OpenAI-compatible judge) served by
uvicorn in a thread for the duration of a ``with`` block, and the chat-completion body such a server
answers with."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any, Iterator


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1; yields the OpenAI-style base URL (``.../v1``)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        sock.close()


def chat_completion(model: str, content: str, prompt_text: str, completion_tokens: int) -> dict[str, Any]:
    """An OpenAI chat-completion response body with ``content`` as the reply (prompt tokens: a quarter
    of the prompt's characters)."""
    prompt_tokens = len(prompt_text) // 4
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
