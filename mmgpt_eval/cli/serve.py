"""``mmgpt-eval serve``: an OpenAI-compatible chat-completions server for one loaded model.

    mmgpt-eval serve --model tiny-openflamingo --ckpt tiny-mmgpt --port 8000
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "tiny-mmgpt", "messages": [{"role": "user", "content": "Say hello."}]}'

Routes: POST /v1/chat/completions, GET /v1/models, GET /health. Messages with images (OpenAI
``image_url`` parts: data: URLs, or local files under a --allow-local-images directory; never http(s)) are
rendered in the MultiModal-GPT template, multi-turn as the dialog task renders conversations; decoding
defaults to the generation flags below (greedy unless --do-sample), and a request's max_tokens,
temperature (0 = greedy), top_p, seed and stop override them. Requests are answered by one worker that
owns the model, concurrent ones batched through the same engine as `mmgpt-eval predict` (identical
greedy outputs). Needs the optional extra: pip install 'mmgpt-eval[serve]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from ..errors import UserError
from .common import add_generation_args, add_model_args, generation_settings, int_arg, load_from_args

log = logging.getLogger("mmgpt_eval")

INSTALL_HINT = "pip install 'mmgpt-eval[serve]'"
_CKPT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible chat-completions API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p, model_required=True)
    s = p.add_argument_group("server")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    s.add_argument("--port", type=int_arg(0), default=8000, help="port (default 8000; 0: a free one, logged)")
    s.add_argument(
        "--served-model-name",
        default=None,
        help="the model name clients send and /v1/models lists (default: the checkpoint's file name without "
        "its suffix, else the model's)",
    )
    s.add_argument(
        "--allow-local-images",
        action="append",
        default=[],
        metavar="DIR",
        help="accept image_url paths to files under DIR (repeatable; default: data: URLs only)",
    )
    lim = p.add_argument_group("limits (larger requests are refused with a 4xx error)")
    lim.add_argument("--max-body-bytes", type=int_arg(1), default=32 * 2**20, help="request body (default 32 MiB)")
    lim.add_argument("--max-images", type=int_arg(1), default=8, help="images per request (default 8)")
    lim.add_argument(
        "--max-image-pixels", type=int_arg(1), default=4096 * 4096, help="width x height of one image (default 4096^2)"
    )
    lim.add_argument("--max-tokens", type=int_arg(1), default=1024, help="largest max_tokens a request may ask")
    lim.add_argument("--max-messages", type=int_arg(1), default=64, help="messages per request (default 64)")
    lim.add_argument("--max-queue", type=int_arg(1), default=256, help="requests waiting; more get 503 (default 256)")
    lim.add_argument(
        "--max-batch-requests",
        type=int_arg(1),
        default=64,
        help="waiting requests answered in one engine call, batched by --batch-size (default 64)",
    )
    add_generation_args(p)
    p.set_defaults(func=run)


def missing_modules() -> list[str]:
    return [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]


def served_model_name(model: str, ckpt: str | None) -> str:
    """The default public name: the checkpoint's file (or folder) name without a weights suffix, else
    the model's (a preset name, or a spec file's stem)."""
    source = Path(str(ckpt if ckpt else model).rstrip("/"))
    return source.stem if source.suffix.lower() in _CKPT_SUFFIXES | {".toml"} else source.name


def run(args: argparse.Namespace) -> int:
    if args.port > 65535:
        raise UserError(f"--port must be 0-65535, got {args.port}")
    missing = missing_modules()
    if missing:
        raise UserError(f"serve needs {' and '.join(missing)}, which are not installed: {INSTALL_HINT}")
    from ..engine import engine_for
    from ..serve.chat import Limits
    from ..serve.http import ServeSettings, bind, create_app, serve
    from ..serve.worker import ModelWorker

    for d in args.allow_local_images:
        if not Path(d).is_dir():
            raise UserError(f"--allow-local-images {d}: not a directory")
    settings = ServeSettings(
        served_model_name=args.served_model_name or served_model_name(args.model, args.ckpt),
        defaults=generation_settings(args),
        limits=Limits(
            max_body_bytes=args.max_body_bytes,
            max_images=args.max_images,
            max_image_pixels=args.max_image_pixels,
            max_tokens=args.max_tokens,
            max_messages=args.max_messages,
        ),
        allowed_image_dirs=[Path(d) for d in args.allow_local_images],
    )
    sock = bind(args.host, args.port)  # before the model loads: a busy port fails at once
    try:
        lm = load_from_args(args)
        engine = engine_for(lm, args.batch_size, share_prefix=not args.no_share_prefix)
        worker = ModelWorker(engine, max_batch=args.max_batch_requests, max_queue=args.max_queue).start()
        app = create_app(settings, worker)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        log.warning(
            "serving %s on http://%s:%d/v1 (POST /v1/chat/completions, GET /v1/models); Ctrl-C stops",
            settings.served_model_name,
            shown,
            port,
        )
        try:
            verbose = getattr(args, "verbose", 0)
            serve(app, sock, log_level="info" if verbose else "warning", access_log=verbose > 0)
        finally:
            worker.stop()
    finally:
        sock.close()
    return 0
