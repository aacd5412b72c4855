"""The toy judge of ``judge_example.py`` behind an OpenAI-compatible endpoint on this machine, the way a
local judge model is served (vLLM, SGLang, llama.cpp, Ollama): ``--judge openai:toy-judge@URL``.

    python examples/judge_server.py --port 8011 --pid-file judge-server.pid   # in the background
    ...
    kill "$(cat judge-server.pid)"

It serves ``GET /v1/models`` and ``POST /v1/chat/completions`` (the request's ``seed`` is the judge
repeat) with the Python standard library only. By default it listens on 127.0.0.1, goes to the
background once it accepts connections (so the next command can use it at once), and exits by itself
after ``--idle-exit`` seconds without a request. ``--foreground`` keeps it in the terminal."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from judge_example import judge  # the toy judge beside this file

MODEL = "toy-judge"
MAX_BODY = 4 << 20


class _Handler(BaseHTTPRequestHandler):
    server_version = "toy-judge/1"
    last_request = time.monotonic()

    def log_message(self, format: str, *args: object) -> None:  # quiet: the caller's output stays readable
        return

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str) -> None:
        self._send(code, {"error": {"message": message, "type": "invalid_request_error", "code": code}})

    def do_GET(self) -> None:
        _Handler.last_request = time.monotonic()
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "examples"}]})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        _Handler.last_request = time.monotonic()
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, f"no route {self.path}")
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return self._error(413, "request body too large")
        try:
            req = json.loads(self.rfile.read(n))
            messages = req["messages"]
            text = judge(
                [{"role": m["role"], "content": str(m["content"])} for m in messages], int(req.get("seed") or 0)
            )
        except (ValueError, KeyError, TypeError) as e:
            return self._error(400, f"malformed request: {e}")
        if req.get("model") != MODEL:
            return self._error(404, f"unknown model {req.get('model')!r}; this server has {MODEL!r}")
        words = sum(len(str(m["content"]).split()) for m in messages)
        self._send(
            200,
            {
                "id": f"toy-{time.time_ns()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": words,
                    "completion_tokens": len(text.split()),
                    "total_tokens": words + len(text.split()),
                },
            },
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8011)
    p.add_argument("--pid-file", help="write the server's process id here")
    p.add_argument("--idle-exit", type=float, default=300.0, help="exit after this many seconds without a request")
    p.add_argument("--foreground", action="store_true", help="stay in the terminal (Ctrl-C stops it)")
    args = p.parse_args()
    try:
        httpd = ThreadingHTTPServer((args.host, args.port), _Handler)  # listening from here on
    except OSError as e:
        print(f"judge_server: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 2
    pid = 0 if args.foreground else os.fork()
    if pid > 0 or args.foreground:
        if args.pid_file:
            with open(args.pid_file, "w") as f:
                f.write(f"{pid or os.getpid()}\n")
    if pid > 0:
        return 0  # the parent returns once the socket accepts connections: the next command can use it
    if not args.foreground:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)

    def idle_watch() -> None:
        while time.monotonic() - _Handler.last_request < args.idle_exit:
            time.sleep(1.0)
        httpd.shutdown()

    threading.Thread(target=idle_watch, daemon=True).start()
    print(f"toy judge: http://{args.host}:{args.port}/v1 (model {MODEL})", file=sys.stderr)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
