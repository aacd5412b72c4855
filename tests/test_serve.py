"""`mmgpt-eval serve`, the real thing: the command started in a subprocess (uvicorn on 127.0.0.1, a free
port, the embedded tiny MultiModal-GPT), driven by the `openai` client and by lmms-eval's own
OpenAI-compatible model (its command line, a local task), and compared with in-process `mmgpt-eval
predict` on the same prompts: greedy outputs identical, multi-turn and two images included. Then bad
requests (4xx with a message, the server stays up), 8 concurrent clients, streaming, and Ctrl-C."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from mmgpt_eval.cli import main

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "openai")),
    reason="optional extra mmgpt-eval[serve] (fastapi, uvicorn) or the openai client not installed",
)

MAX_NEW = 8
NAME = "tiny-mmgpt"  # the default served name: the checkpoint's
# the MultiModal-GPT template, written out here (not taken from mmgpt_eval.templates): what a request
# must become
PRE = "Below is an instruction that describes a task. Write a response that appropriately completes the request."
IMG_BLOCK = "\n\n### Image:\n{images}"
TURN = "\n\n### Instruction:\n{q}\n\n### Response:\n"


def expected_prompt(turns: list[tuple[str, str | None]], n_images: int, system: str | None = None) -> str:
    text = (PRE if system is None else system) + (IMG_BLOCK.format(images="<image>" * n_images) if n_images else "")
    for q, a in turns:
        text += TURN.format(q=q) + (a or "")
    return text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _user(text: str, images: list[str], text_first: bool = False) -> dict:
    parts = [{"type": "image_url", "image_url": {"url": u}} for u in images]
    t = {"type": "text", "text": text}
    return {"role": "user", "content": [t, *parts] if text_first else [*parts, t]}


def make_cases(imgs: list[Path]) -> list[dict]:
    """20 chat requests and the prompt + images each must become."""
    import easy_vqa

    qs, _, _ = easy_vqa.get_test_questions()
    qs = list(dict.fromkeys(qs))  # distinct questions, in order
    cases = []
    for i in range(10):  # one image, as a data URL; the text part before or after it
        img = imgs[i]
        msgs = [_user(qs[i], [_data_url(img)], text_first=i % 2 == 1)]
        cases.append({"messages": msgs, "prompt": expected_prompt([(qs[i], None)], 1), "images": [img]})
    # local files inside the allowed folder: an absolute path and a file:// URL
    for i, url in ((10, str(imgs[10])), (11, imgs[11].as_uri())):
        cases.append(
            {
                "messages": [_user(qs[i], [url])],
                "prompt": expected_prompt([(qs[i], None)], 1),
                "images": [imgs[i]],
            }
        )
    for q in ("Write a short poem about a red circle.", "List three colors."):  # text only, string content
        cases.append({"messages": [{"role": "user", "content": q}], "prompt": expected_prompt([(q, None)], 0)})
    sys_text = "You are a helpful assistant that answers in one word."
    cases.append(
        {
            "messages": [{"role": "system", "content": sys_text}, {"role": "user", "content": "Name a shape."}],
            "prompt": expected_prompt([("Name a shape.", None)], 0, system=sys_text),
        }
    )
    # multi-turn: the image in the first turn, earlier answers given
    turns = [(qs[12], "circle"), ("what color is it?", None)]
    cases.append(
        {
            "messages": [
                _user(turns[0][0], [_data_url(imgs[12])]),
                {"role": "assistant", "content": "circle"},
                {"role": "user", "content": [{"type": "text", "text": turns[1][0]}]},
            ],
            "prompt": expected_prompt(turns, 1),
            "images": [imgs[12]],
        }
    )
    turns = [(qs[13], "yes"), ("is it big?", "no"), ("describe the image.", None)]
    cases.append(
        {
            "messages": [
                _user(turns[0][0], [_data_url(imgs[13])]),
                {"role": "assistant", "content": "yes"},
                {"role": "user", "content": "is it big?"},
                {"role": "assistant", "content": [{"type": "text", "text": "no"}]},
                {"role": "user", "content": "describe the image."},
            ],
            "prompt": expected_prompt(turns, 1),
            "images": [imgs[13]],
        }
    )
    turns = [("Name a color.", "red"), ("Name another one.", None)]
    cases.append(
        {
            "messages": [
                {"role": "user", "content": "Name a color."},
                {"role": "assistant", "content": "red"},
                {"role": "user", "content": "Name another one."},
            ],
            "prompt": expected_prompt(turns, 0),
        }
    )
    # two images in one message
    for a, b, q in ((14, 15, "which image shows a circle?"), (16, 17, "what colors are the two shapes?")):
        cases.append(
            {
                "messages": [_user(q, [_data_url(imgs[a]), _data_url(imgs[b])])],
                "prompt": expected_prompt([(q, None)], 2),
                "images": [imgs[a], imgs[b]],
            }
        )
    assert len(cases) == 20
    return cases


LMMS_DOCS = 8


def make_lmms_task(root: Path, imgs: list[Path]) -> tuple[Path, list[dict]]:
    """A local lmms-eval generation task (6 one-image docs, 2 two-image docs) and what each doc's request
    must become."""
    import easy_vqa

    qs, ans, ids = easy_vqa.get_test_questions()
    rows, expected = [], []
    for i in range(LMMS_DOCS):
        k = 100 + i * 7
        images = [imgs[20 + i]] if i < 6 else [imgs[20 + i], imgs[30 + i]]
        q = qs[k] if i < 6 else "how many images are there?"
        rows.append({"doc_id": i, "question": q, "answer": ans[k], "images": [str(p) for p in images]})
        expected.append({"prompt": expected_prompt([(q, None)], len(images)), "images": images})
    data = root / "lmms-data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = root / "lmms-tasks"
    tasks.mkdir()
    (tasks / "utils.py").write_text(
        textwrap.dedent("""\
        from PIL import Image


        def doc_to_visual(doc):
            return [Image.open(p).convert("RGB") for p in doc["images"]]


        def doc_to_text(doc):
            return doc["question"]


        def process_results(doc, results):
            return {"exact_match": float(results[0].strip().lower() == doc["answer"])}
        """)
    )
    (tasks / "mmgpt_serve_local.yaml").write_text(
        textwrap.dedent(f"""\
        task: mmgpt_serve_local
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: generate_until
        doc_to_visual: !function utils.doc_to_visual
        doc_to_text: !function utils.doc_to_text
        doc_to_target: answer
        generation_kwargs:
          max_new_tokens: {MAX_NEW}
          temperature: 0
        process_results: !function utils.process_results
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
        metadata:
          - version: 0.0
        """)
    )
    return tasks, expected


def _start_lmms_eval(root: Path, tasks: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / "hf-home"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    args = [
        "--model",
        "openai",
        "--model_args",
        f"model={NAME},base_url=http://127.0.0.1:{port}/v1,api_key=unused,num_concurrent=4,max_retries=60,"
        "retry_backoff_s=3",
        "--tasks",
        "mmgpt_serve_local",
        "--include_path",
        str(tasks),
        "--output_path",
        str(root / "lmms-out"),
        "--log_samples",
    ]
    exe = Path(sys.executable).parent / "lmms-eval"
    cmd = [str(exe), *args] if exe.exists() else [sys.executable, "-m", "lmms_eval", *args]
    with open(root / "lmms-eval.log", "w") as log:  # a file, not a pipe: nothing blocks on a full pipe
        return subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen, port: int, log: Path, timeout: float = 240) -> None:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server did not answer within the timeout")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The server (subprocess), the cases and predict's answers for them (in process, meanwhile)."""
    import easy_vqa

    root = tmp_path_factory.mktemp("serve")
    allowed = root / "images"
    allowed.mkdir()
    src = easy_vqa.get_test_image_paths()
    imgs = []
    for i in range(40):
        p = allowed / f"{i}.png"
        Image.open(src[i]).convert("RGB").save(p)
        imgs.append(p)
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "mmgpt_eval", "-q", "serve", "--model", "tiny-openflamingo", "--ckpt", NAME]
    cmd += ["--device", "cpu", "--port", str(port), "--max-new-tokens", str(MAX_NEW), "--allow-local-images"]
    cmd += [str(allowed), "--max-body-bytes", "200000", "--max-image-pixels", "250000", "--max-images", "4"]
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    tasks, lmms_expected = make_lmms_task(root, imgs)
    # lmms-eval's OpenAI-compatible model, started at once: its imports overlap the server's start-up (its
    # requests retry, every 3 s for up to 3 minutes, until the server listens)
    lmms = _start_lmms_eval(root, tasks, port)
    try:
        cases = make_cases(imgs)
        # in-process predict on the same prompts and images, while the server starts
        rows = [{"id": f"c{i}", "prompt": c["prompt"], "images": [str(p) for p in c.get("images", [])]}
                for i, c in enumerate(cases)]  # fmt: skip
        rows += [{"id": f"l{i}", "prompt": e["prompt"], "images": [str(p) for p in e["images"]]}
                 for i, e in enumerate(lmms_expected)]  # fmt: skip
        inp, out = root / "cases.jsonl", root / "predicted.jsonl"
        inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        argv = ["-q", "predict", "--model", "tiny-openflamingo", "--ckpt", NAME, "--device", "cpu"]
        assert main([*argv, "--input", str(inp), "--output", str(out), "--max-new-tokens", str(MAX_NEW)]) == 0
        predicted = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
        _wait_ready(proc, port, root / "server.log")
        yield {
            "port": port,
            "proc": proc,
            "lmms": lmms,
            "root": root,
            "allowed": allowed,
            "imgs": imgs,
            "cases": cases,
            "predicted": predicted,
            "tasks": tasks,
            "lmms_expected": lmms_expected,
        }
    finally:
        for p in (lmms, proc):
            if p.poll() is None:
                p.kill()
                p.wait(30)


@pytest.fixture(scope="module")
def client(world):
    from openai import OpenAI

    return OpenAI(base_url=f"http://127.0.0.1:{world['port']}/v1", api_key="unused", max_retries=0, timeout=120)


def _url(world, path: str) -> str:
    return f"http://127.0.0.1:{world['port']}{path}"


# ------------------------------------------------------------------------------------------ tests
def test_openai_client_outputs_equal_predict_and_lmms_eval_too(world, client):
    """20 cases through the openai client, and lmms-eval's OpenAI-compatible model on a local task
    (started with the server: it runs in its own process while the client's cases are checked)."""
    lmms = world["lmms"]
    try:
        models = client.models.list()
        assert [m.id for m in models.data] == [NAME]
        for i, case in enumerate(world["cases"]):
            extra = {"max_tokens": MAX_NEW, "temperature": 0} if i % 3 == 0 else {}
            r = client.chat.completions.create(model=NAME, messages=case["messages"], **extra)
            want = world["predicted"][f"c{i}"]
            assert r.choices[0].message.content == want["text"], (i, case["prompt"])
            assert r.choices[0].message.role == "assistant" and r.model == NAME and r.object == "chat.completion"
            assert r.usage.completion_tokens == len(want["token_ids"]) <= MAX_NEW
            assert 0 < r.usage.prompt_tokens == r.usage.total_tokens - r.usage.completion_tokens
            assert r.choices[0].finish_reason == ("length" if len(want["token_ids"]) == MAX_NEW else "stop")
        texts = [world["predicted"][f"c{i}"]["text"] for i in range(20)]
        assert len(set(texts)) >= 10  # a real model answered different things
        lmms.wait(timeout=300)
    finally:
        if lmms.poll() is None:
            lmms.kill()
    log = (world["root"] / "lmms-eval.log").read_text()
    samples = list((world["root"] / "lmms-out").rglob("*_samples_*.jsonl"))
    assert lmms.returncode == 0 and len(samples) == 1, log[-5000:]
    got = {s["doc_id"]: s for s in map(json.loads, samples[0].read_text().splitlines())}
    assert sorted(got) == list(range(LMMS_DOCS))
    for i in range(LMMS_DOCS):
        resp = got[i]["filtered_resps"]
        resp = resp[0] if isinstance(resp, list) else resp
        assert resp == world["predicted"][f"l{i}"]["text"], (i, log[-3000:])
        assert "LMMS_EVAL_REQUEST_FAILED" not in resp


def _post(world, body, **kw):
    import httpx

    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(_url(world, "/v1/chat/completions"), content=data, timeout=60, **kw)


def _png(size: tuple[int, int], color: str = "red") -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_bad_requests_get_4xx_with_a_message_and_the_server_stays_up(world, tmp_path):
    ok = {"model": NAME, "messages": [{"role": "user", "content": "Say hello."}]}
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)

    def user(*urls):
        return {**ok, "messages": [_user("what is it?", list(urls))]}

    bad = [
        ("malformed JSON", b'{"model": ', 400, "not valid JSON"),
        ("not an object", b"[1, 2]", 400, "must be a JSON object"),
        ("unknown model", {**ok, "model": "gpt-4o"}, 404, "does not exist"),
        ("no model", {"messages": ok["messages"]}, 400, "'model' is required"),
        ("no messages", {"model": NAME}, 400, "'messages' must be a non-empty list"),
        ("oversized body", {**ok, "pad": "x" * 250_000}, 413, "over the server's limit of 200000"),
        ("missing image", user(str(world["allowed"] / "nope.png")), 400, "image not found"),
        ("outside the allowed folder", user(str(outside)), 403, "outside the directories"),
        ("remote URL", user("https://example.com/a.png"), 400, "not fetched"),
        ("bad base64", user("data:image/png;base64,@@@"), 400, "base64 is malformed"),
        ("not an image", user("data:image/png;base64," + base64.b64encode(b"hello").decode()), 400, "not a readable"),
        ("too many pixels", user(_png((600, 600))), 413, "over the server's limit of 250000"),
        ("too many images", user(*[_png((8, 8))] * 5), 400, "5 images, over the server's limit of 4"),
        (
            "image in a later turn",
            {
                **ok,
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                    _user("and this?", [_png((8, 8))]),
                ],
            },
            400,
            "first user message only",
        ),
        ("image token in text", {**ok, "messages": [{"role": "user", "content": "<image> what?"}]}, 400, "<image>"),
        (
            "last is assistant",
            {**ok, "messages": [*ok["messages"], {"role": "assistant", "content": "x"}]},
            400,
            "last message must be a user message",
        ),  # fmt: skip
        ("n=2", {**ok, "n": 2}, 400, "'n' must be 1"),
        ("max_tokens too large", {**ok, "max_tokens": 5000}, 400, "over the server's limit of 1024"),
        ("max_tokens zero", {**ok, "max_tokens": 0}, 400, "integer >= 1"),
        ("temperature", {**ok, "temperature": "hot"}, 400, "'temperature' must be a number"),
        ("unknown route", None, 404, "Not Found"),
    ]
    import httpx

    for what, body, status, msg in bad:
        if body is None:
            r = httpx.get(_url(world, "/v1/nothing"), timeout=30)
        else:
            r = _post(world, body, headers={"Content-Type": "application/json"})
        assert r.status_code == status, (what, r.text)
        err = r.json()["error"]
        assert msg in err["message"] and err["type"], (what, err)
    # the openai client raises its own errors for these statuses
    import openai

    from_client = openai.OpenAI(base_url=_url(world, "/v1"), api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        from_client.chat.completions.create(model="nope", messages=ok["messages"])
    # still up: a valid request is answered like before
    r = _post(world, {**world["cases"][0], "model": NAME, "prompt": None, "images": None})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == world["predicted"]["c0"]["text"]
    assert world["proc"].poll() is None


def test_eight_concurrent_clients_all_answered_correctly_and_batched(world, client):
    import httpx

    before = httpx.get(_url(world, "/health"), timeout=30).json()
    picks = [0, 3, 10, 12, 14, 15, 18, 19]  # images, text, multi-turn, two images: several batch groups
    barrier = threading.Barrier(len(picks))
    out: dict[int, str] = {}

    def one(i: int) -> None:
        barrier.wait()
        r = client.chat.completions.create(model=NAME, messages=world["cases"][i]["messages"])
        out[i] = r.choices[0].message.content

    threads = [threading.Thread(target=one, args=(i,)) for i in picks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert out == {i: world["predicted"][f"c{i}"]["text"] for i in picks}
    after = httpx.get(_url(world, "/health"), timeout=30).json()
    assert after["requests_answered"] - before["requests_answered"] == len(picks)
    assert after["engine_calls"] - before["engine_calls"] < len(picks)  # some requests shared an engine call
    assert after["largest_engine_call"] >= 2


def test_streaming_and_stop_strings(world, client):
    case, want = world["cases"][1], world["predicted"]["c1"]["text"]
    chunks = list(
        client.chat.completions.create(
            model=NAME, messages=case["messages"], stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == want
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    # a stop string cuts the answer before it
    word = want.split()[-1]
    r = client.chat.completions.create(model=NAME, messages=case["messages"], stop=[word])
    assert r.choices[0].message.content == want[: want.find(word)] and r.choices[0].finish_reason == "stop"


def test_serve_without_the_extra_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "--model", "tiny", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'mmgpt-eval[serve]'" in err[0] and "fastapi" in err[0]


def test_a_busy_port_is_one_line_exit_2_before_the_model_loads(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        t0 = time.monotonic()
        rc = main(["serve", "--model", "tiny", "--port", str(s.getsockname()[1])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "cannot listen on 127.0.0.1:" in err[0]
    assert time.monotonic() - t0 < 5  # no model was loaded


def test_ctrl_c_stops_the_server(world):
    proc = world["proc"]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    err = (world["root"] / "server.log").read_text()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
