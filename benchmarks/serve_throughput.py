"""Throughput of `mmgpt-eval serve` against in-process `predict` on the same cases.

    python benchmarks/serve_throughput.py [--cases 48] [--repeats 3] [--device cpu] [--write]

The server runs as users run it (`mmgpt-eval serve` in its own process, the embedded tiny MultiModal-GPT
unless --model/--ckpt); clients are the `openai` Python client in threads (1 client, then 8 concurrent
clients, each sending its next request as soon as the last is answered). In-process predict is the work of
`mmgpt-eval predict` on an already loaded model: the same prompts and images through
`mmgpt_eval.engine.Engine.answer` (no model load, no file writing timed). Cases: easy-VQA test questions,
one image each (a data URL), greedy, at most --max-new-tokens new tokens.

Targets (requests/s, median over the rounds; the paths interleaved in each round after a warm-up):

* 8 concurrent clients >= 0.8x in-process predict at batch 8 (the server's --batch-size 8: at most 8
  requests are in flight, so this is the like-for-like batch);
* 1 client >= 0.7x in-process predict at batch 1 (one client has one request in flight: what remains is
  the server's own cost per request -- HTTP, JSON, image decoding, the queue). 1 client against batch 8 is
  printed too, for information.

The servers' answers must equal predict's (greedy): reported as "identical outputs". ``--write`` rewrites
the ``bench-serve`` section of RESULTS.md (``make bench`` / ``benchmarks/run_all.py`` pass it).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BEGIN, END = "<!-- bench-serve:begin -->", "<!-- bench-serve:end -->"
TARGET_8 = 0.8  # 8 concurrent clients vs in-process predict at batch 8
TARGET_1 = 0.7  # 1 client vs in-process predict at batch 1
BATCH = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_cases(n: int, folder: Path) -> list[dict]:
    import easy_vqa
    from PIL import Image

    qs, _, ids = easy_vqa.get_test_questions()
    paths = easy_vqa.get_test_image_paths()
    cases, seen = [], set()
    for q, i in zip(qs, ids):
        if i in seen:  # one question per image: no feature reuse helps either path
            continue
        seen.add(i)
        p = folder / f"{i}.png"
        Image.open(paths[i]).convert("RGB").save(p)
        url = "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()
        msg = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": q}]
        cases.append({"question": q, "image": p, "messages": [{"role": "user", "content": msg}]})
        if len(cases) == n:
            break
    return cases


def predict_path(args, cases):
    """A function answering all cases in process at a batch size (predict's engine on a loaded model)."""
    from mmgpt_eval.api import LoadOptions, load
    from mmgpt_eval.engine import GenerationRequest, engine_for
    from mmgpt_eval.generation_settings import GenerationSettings
    from mmgpt_eval.templates import TEMPLATES

    lm = load(args.model, args.ckpt, LoadOptions(device=args.device))
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    tmpl = TEMPLATES["mmgpt"]
    engines = {b: engine_for(lm, b) for b in (1, BATCH)}

    def run(batch: int) -> list[str]:
        reqs = [
            GenerationRequest(tmpl.render(question=c["question"]), [str(c["image"])], settings=settings, stop=tmpl.stop)
            for c in cases
        ]
        return [tmpl.extract(g.full_text, g.text) for g in engines[batch].answer(reqs)]

    return run


def refused_path(port: int, cases, clients: int) -> list[str]:
    """The same requests for an unknown model: refused (404) after the body is read and parsed, so no
    image is decoded and nothing generated -- the HTTP, JSON and client cost alone, for information."""
    from openai import NotFoundError

    def one(client, i: int) -> str:
        try:
            client.chat.completions.create(model="not-served", messages=cases[i]["messages"], max_tokens=1)
        except NotFoundError:
            return "refused"
        return "answered"

    return _threads(port, cases, clients, one)


def _threads(port: int, cases, clients: int, one) -> list[str]:
    from openai import OpenAI

    out: list[str | None] = [None] * len(cases)
    lock = threading.Lock()
    nxt = [0]

    def worker() -> None:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=600)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= len(cases):
                return
            out[i] = one(client, i)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]


def client_path(port: int, name: str, cases, clients: int, max_new_tokens: int) -> list[str]:
    def one(client, i: int) -> str:
        r = client.chat.completions.create(
            model=name, messages=cases[i]["messages"], max_tokens=max_new_tokens, temperature=0
        )
        return r.choices[0].message.content

    return _threads(port, cases, clients, one)


def start_server(args, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mmgpt_eval", "-q", "serve", "--model", args.model]
    cmd += ["--ckpt", args.ckpt] if args.ckpt else []
    cmd += ["--device", args.device, "--port", str(port), "--batch-size", str(BATCH)]
    cmd += ["--max-new-tokens", str(args.max_new_tokens), "--served-model-name", "bench"]
    with open(log, "w") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)


def wait_ready(proc: subprocess.Popen, port: int, log: Path) -> None:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < 600:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not start within 10 minutes")


def _stats(rates: list[float]) -> dict:
    return {"median": round(statistics.median(rates), 2), "min": round(min(rates), 2), "max": round(max(rates), 2)}


def main(argv: list[str] | None = None) -> int:
    from mmgpt_eval.api import EMBEDDED_DEFAULT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=EMBEDDED_DEFAULT["model"])
    ap.add_argument("--ckpt", default=EMBEDDED_DEFAULT["ckpt"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cases", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--write", action="store_true", help="rewrite the bench-serve section of RESULTS.md")
    args = ap.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = make_cases(args.cases, tmp)
        port = _free_port()
        log = tmp / "server.log"
        server = start_server(args, port, log)  # starts while this process loads its own copy
        try:
            predict = predict_path(args, cases)
            wait_ready(server, port, log)
            paths = {
                "predict-b1": lambda: predict(1),
                f"predict-b{BATCH}": lambda: predict(BATCH),
                "serve-1-client": lambda: client_path(port, "bench", cases, 1, args.max_new_tokens),
                "serve-8-clients": lambda: client_path(port, "bench", cases, 8, args.max_new_tokens),
            }
            outputs = {k: f() for k, f in paths.items()}  # warm-up (untimed), and the outputs compared
            paths["refused-8-clients"] = lambda: refused_path(port, cases, 8)  # information only
            rates: dict[str, list[float]] = {k: [] for k in paths}
            for _ in range(args.repeats):
                for k, f in paths.items():
                    t0 = time.perf_counter()
                    f()
                    rates[k].append(len(cases) / (time.perf_counter() - t0))
            import httpx

            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).json()
        finally:
            server.terminate()
            server.wait(60)
    ref = outputs["predict-b1"]
    r = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, "
        f"{torch.cuda.get_device_name(0) if args.device.startswith('cuda') else 'no GPU used'}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "model": args.model,
        "ckpt": args.ckpt,
        "device": args.device,
        "cases": len(cases),
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "requests_per_s": {k: _stats(v) for k, v in rates.items()},
        "identical_outputs": all(o == ref for o in outputs.values()),
        "mismatches": {k: sum(a != b for a, b in zip(o, ref)) for k, o in outputs.items()},
        "server_engine_calls": health["engine_calls"],
        "server_requests": health["requests_answered"],
        "server_largest_engine_call": health["largest_engine_call"],
    }
    med = {k: v["median"] for k, v in r["requests_per_s"].items()}
    r["ratio_8_clients_vs_predict_b8"] = round(med["serve-8-clients"] / med[f"predict-b{BATCH}"], 2)
    r["ratio_1_client_vs_predict_b1"] = round(med["serve-1-client"] / med["predict-b1"], 2)
    r["ratio_1_client_vs_predict_b8"] = round(med["serve-1-client"] / med[f"predict-b{BATCH}"], 2)
    r["met_8"] = r["ratio_8_clients_vs_predict_b8"] >= TARGET_8
    r["met_1"] = r["ratio_1_client_vs_predict_b1"] >= TARGET_1
    section = render(r)
    print(section)
    if args.output:
        args.output.write_text(json.dumps(r, indent=2))
    if args.write:
        from run_all import _write_results

        _write_results(BEGIN, END, section)
    return 0 if r["identical_outputs"] else 1


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def render(r: dict) -> str:
    lines = [
        BEGIN,
        "## Serve throughput (`make bench`; `python benchmarks/serve_throughput.py --write`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {r['machine']}, load average at the end "
        f"{', '.join(map(str, r['load_average']))}. `mmgpt-eval serve --batch-size {BATCH}` in its own process "
        f"({r['model']} + {r['ckpt']}, {r['device']}) answering the `openai` client in threads, against "
        f"in-process predict (predict's engine on a loaded model) on the same {r['cases']} easy-VQA questions "
        f"(one image each, sent as PNG data URLs; greedy, at most {r['max_new_tokens']} new tokens). Requests/s: "
        f"medians of {r['repeats']} rounds (paths interleaved, after a warm-up), min-max over the rounds.",
        "",
        "| path | requests/s (median) | min-max |",
        "|---|---|---|",
    ]
    for k, v in r["requests_per_s"].items():
        lines.append(f"| {k} | {v['median']:.2f} | {v['min']:.2f}-{v['max']:.2f} |")
    lines += [
        "",
        f"- 8 concurrent clients vs in-process predict at batch {BATCH}: **{r['ratio_8_clients_vs_predict_b8']}x** "
        f"(target >= {TARGET_8}x: {_verdict(r['met_8'])})",
        f"- 1 client vs in-process predict at batch 1: **{r['ratio_1_client_vs_predict_b1']}x** "
        f"(target >= {TARGET_1}x: {_verdict(r['met_1'])}); vs predict at batch {BATCH}, for information: "
        f"{r['ratio_1_client_vs_predict_b8']}x (one client keeps one request in flight, so nothing to batch)",
        "- refused-8-clients, for information: the same requests for an unknown model, answered 404 once the "
        "body is read and parsed (no image decoded, nothing generated): the ceiling that the HTTP stack and the "
        "`openai` client set on this machine",
        f"- server batching: {r['server_requests']} requests in {r['server_engine_calls']} engine calls, "
        f"largest {r['server_largest_engine_call']}",
        f"- identical outputs (every path's answers equal predict's): {'yes' if r['identical_outputs'] else 'NO'}"
        + ("" if r["identical_outputs"] else f" (mismatches per path: {r['mismatches']})"),
        END,
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
