"""Judging a run end to end: the embedded models offline, a scripted OpenAI-compatible judge over
real HTTP on 127.0.0.1 (FastAPI + uvicorn, started here), the real CLI. ``run --judge`` with a
baseline writes win rate with an interval, rubric scores, agreement and position bias; judging again
asks nothing; an edited answer is judged again alone; a bad endpoint is refused before the model
loads; a judging killed with SIGKILL resumes without asking anything twice."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from http_servers import chat_completion, served
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cli_checks import one_error_line
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.judge_results import read_judge
from mmgpt_eval.results import RunResults

KEY = "judge-run-key"
ROOT = Path(__file__).resolve().parents[1]


class Script:
    """What the server was asked: requests per model, and how often each exact request came."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.asked: Counter[str] = Counter()
        self.lock = threading.Lock()


def _section(text: str, title: str) -> str:
    return text.split(f"[{title}]\n", 1)[1].split("\n\n", 1)[0]


def _reply(model: str, text: str, seed: int) -> str:
    if "[Reply A]" in text:  # every scripted judge here prefers whatever it is shown first
        return "The first one.\nVERDICT: A"
    words = len(set(_section(text, "Reply to grade").lower().split()))
    s = max(1, min(10, 1 + words // 3))
    noisy = max(1, min(10, s + (1 if (seed + words) % 3 == 0 else 0)))  # a little known noise per repeat
    return f"Graded.\nSCORES: helpfulness={s}; accuracy={noisy}; detail={s}"


def _app(state: Script) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models(request: Request):
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "t"} for m in ("first", "slow")]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        body = await request.json()
        model, text = body["model"], body["messages"][-1]["content"]
        probe = text == "Reply with OK."
        if not probe:
            with state.lock:
                state.requests[model] += 1
                state.asked[f"{model}|{body.get('seed')}|{text}"] += 1
            if model == "slow":
                time.sleep(0.05)
        content = "OK" if probe else _reply(model, text, int(body.get("seed") or 0))
        return chat_completion(model, content, text, 9)

    return app


@pytest.fixture(scope="module")
def server():
    state = Script()
    with served(_app(state)) as url:
        yield url, state


@pytest.fixture(scope="module")
def judged(server, tmp_path_factory):
    """``run --tasks dialog --baseline tiny-openflamingo --judge openai:first@URL --judge-repeats 2``."""
    url, state = server
    ws = tmp_path_factory.mktemp("judged")
    os.environ["OPENAI_API_KEY"] = KEY
    argv = ["-q", "run", "--tasks", "dialog", "--baseline", "tiny-openflamingo", "--limit", "4", "--no-report"]
    argv += ["--output-dir", str(ws / "run"), "--judge", f"openai:first@{url}", "--judge-repeats", "2"]
    argv += ["--no-progress"]
    assert main(argv) == 0
    return ws / "run", state


def _jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def test_run_judge_writes_win_rate_rubric_agreement_and_position_bias(judged):
    run, state = judged
    res = read_judge(run)
    assert res is not None and res.repeats == 2 and res.baseline is not None
    assert res.judge["model"] == "first" and res.judge["served"]["reply_model"] == "first"
    assert set(res.judge["templates"]) == {"rubric-v1", "pairwise-v1"}
    tj = res.tasks["dialog"]
    m = tj.metrics
    # an always-"first answer" judge: every verdict follows the position, every pair is a tie
    assert m["position_bias"] == 1.0
    assert tj.counts["tie"] > 0 and tj.counts["win"] == tj.counts["loss"] == 0
    assert m["win_rate"] == 0.5 and tj.intervals["win_rate"] == (0.5, 0.5)
    # every repeat gave the same outcome (tie) to every pair: no variation, so kappa is undefined (null)
    assert "kappa_pairwise" in m and m["kappa_pairwise"] is None
    for d in ("helpfulness", "accuracy", "detail"):
        assert 1 <= m[f"rubric_{d}"] <= 10 and 1 <= tj.baseline_metrics[f"rubric_{d}"] <= 10
        assert f"alpha_{d}" in m
    # helpfulness and detail never vary across repeats: full agreement; accuracy has scripted noise
    assert m["alpha_helpfulness"] in (1.0, None) and m["alpha_accuracy"] is not None and m["alpha_accuracy"] < 1.0
    lo, hi = tj.intervals["rubric_overall_delta"]
    assert lo <= m["rubric_overall_delta"] <= hi
    assert m["rubric_overall_delta"] == pytest.approx(m["rubric_overall"] - tj.baseline_metrics["rubric_overall"])
    assert m["parse_failure_rate"] == 0.0
    lines = _jsonl(run / "judge" / "dialog.jsonl")
    assert {(x["mode"], x["run"]) for x in lines} == {
        ("rubric", "candidate"),
        ("rubric", "baseline"),
        ("pairwise", "candidate"),
    }
    assert all(x["verdicts"] == ["A", "A"] for x in lines if x["mode"] == "pairwise")
    # every reply was asked once; the cache holds exactly those replies
    assert max(state.asked.values()) == 1
    assert res.cost["calls"] == state.requests["first"] == len(_jsonl(run / "judge" / "cache.jsonl"))
    assert res.cost["prompt_tokens"] > 0 and res.cost["cached"] == 0


@pytest.mark.chromium
def test_the_report_of_the_judged_run_shows_the_judgments_in_chromium(judged, tmp_path):
    """The embedded model's judged run (`run --judge`, above) through `mmgpt-eval report` with its stored
    baseline, rendered in real headless Chromium: the Judged quality section with the win rate and its
    interval, the rubric scores, agreement and position bias, and the judge's notes beside the answers;
    no script runs and the console stays quiet."""
    from test_report_chromium import _chromium, noisy_events, opened_page

    chromium = _chromium()
    run, _ = judged
    res = RunResults.load(run)
    base = res.stored_baseline()
    assert base is not None and base.run_dir is not None
    page = tmp_path / "report.html"
    assert main(["-q", "report", str(run), "--baseline", str(base.run_dir), "-o", str(page)]) == 0
    with opened_page(chromium, page, tmp_path / "profile") as (cdp, sid, js):
        section = js("(document.querySelector('#judged') || {innerText: ''}).innerText")
        n_scripts, n_notes = js(
            "[document.querySelectorAll('script').length, document.querySelectorAll('.judgment').length]"
        )
        events = list(cdp.events)
    bad = noisy_events(events)
    assert not bad, json.dumps(bad)[:2000]
    assert n_scripts == 0 and n_notes > 0
    tj = read_judge(run).tasks["dialog"]  # type: ignore[union-attr]
    assert "Judged quality" in section
    c = tj.counts
    assert f"{c['win']} wins · {c['tie']} ties · {c['loss']} losses · win rate 0.5 [0.5, 0.5]" in section, section
    for name in ("rubric_overall", "rubric_helpfulness", "position_bias", "alpha_accuracy", "parse_failure_rate"):
        assert name in section, (name, section[:3000])
    assert f"{tj.metrics['rubric_overall']:.4g}" in section and f"{tj.metrics['alpha_accuracy']:.3g}" in section


def test_judging_again_makes_no_call_and_an_edited_answer_only_its_own(judged, capsys):
    run, state = judged
    url = f"openai:first@{_url(state, judged)}"
    before = state.requests["first"]
    assert main(["-q", "judge", str(run), "--judge", url, "--judge-repeats", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert state.requests["first"] == before
    assert "judge cost: 0 calls made" in out and "win_rate" in out and "position_bias" in out
    # edit the last answer of one conversation: the judge.json in between is refused as stale
    log = run / "samples" / "dialog.jsonl"
    lines = log.read_text().splitlines()
    rec = json.loads(lines[1])
    last = f"t{len(rec['references']) - 1}"
    rec["outputs"][last]["prediction"] = "An entirely new answer about something else."
    lines[1] = json.dumps(rec)
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="changed after it was judged"):
        read_judge(run)
    assert main(["-q", "judge", str(run), "--judge", url, "--judge-repeats", "2", "--no-progress"]) == 0
    # its last turn's rubric (2 repeats) and its last turn's pair (2 orders x 2 repeats): 6 calls, no more
    assert state.requests["first"] - before == 6
    res = read_judge(run)
    assert res is not None and res.cost["calls"] == 6 and res.cost["cached"] > 0


def test_compare_shows_the_judgments(judged, capsys):
    run, _ = judged
    assert main(["-q", "compare", str(run / "baseline"), str(run), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {(r["task"], r["metric"]): r for r in doc["judge"]["rows"]}
    assert rows[("dialog", "win_rate")]["values"] == [None, 0.5]
    assert rows[("dialog", "win_rate")]["intervals"][1] == [0.5, 0.5]
    # the baseline run was judged as the run's baseline: its rubric scores come from that judging
    base_overall, cand_overall = rows[("dialog", "rubric_overall")]["values"]
    assert base_overall is not None and cand_overall is not None
    assert doc["judge"]["notes"] == []
    assert main(["-q", "compare", str(run / "baseline"), str(run)]) == 0
    out = capsys.readouterr().out
    assert "judged by a model" in out and "position_bias" in out and "rubric_overall" in out
    assert "different judges" not in out


def test_compare_says_when_two_runs_were_judged_by_different_judges(judged, tmp_path, capsys):
    run, _ = judged
    other = tmp_path / "other"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("judge", "judge.json"))
    judge = f"python:{ROOT / 'examples' / 'judge_example.py'}:judge"
    assert main(["-q", "judge", str(other), "--judge", judge, "--judge-repeats", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["-q", "compare", str(run), str(other), "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["judge"]["notes"]
    assert len(notes) == 1 and "different judges" in notes[0] and "not comparable" in notes[0]


def test_a_bad_endpoint_is_refused_before_the_model_loads(server, tmp_path, capsys, monkeypatch, no_load):
    url, _ = server
    base = ["run", "--tasks", "dialog", "--limit", "2", "--no-report", "--output-dir", "out"]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    one_error_line(
        tmp_path, base + ["--judge", "openai:first@http://127.0.0.1:9/v1"], capsys, monkeypatch, ["unreachable"]
    )
    one_error_line(
        tmp_path, base + ["--judge", f"openai:nosuch@{url}"], capsys, monkeypatch, ["unknown model", "nosuch"]
    )
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    one_error_line(tmp_path, base + ["--judge", f"openai:first@{url}"], capsys, monkeypatch, ["API key was refused"])
    one_error_line(tmp_path, base + ["--judge", "nonsense"], capsys, monkeypatch, ["--judge"])


def test_kill_9_mid_judging_resumes_without_judging_anything_twice(judged, tmp_path):
    run, state = judged
    url = _url(state, judged)
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("judge", "judge.json"))
    for rj in (copy / "results.json",):  # the stored baseline is a relative path: still inside the copy
        assert "baseline" in json.loads(rj.read_text())
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "mmgpt_eval", "-q", "judge", str(copy), "--judge", f"openai:slow@{url}"]
    cmd += ["--judge-concurrency", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cache = copy / "judge" / "cache.jsonl"
    deadline = time.monotonic() + 60
    while not (cache.exists() and cache.read_text().count("\n") >= 5):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the judging made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (copy / "judge.json").exists()
    done_before = len(_jsonl(cache))
    assert main(["-q", "judge", str(copy), "--judge", f"openai:slow@{url}", "--no-progress"]) == 0
    res = read_judge(copy)
    assert res is not None
    slow = {k: v for k, v in state.asked.items() if k.startswith("slow|")}
    # at most the one call in flight at the kill was asked twice; nothing answered and cached was
    assert sum(v - 1 for v in slow.values()) <= 1
    assert res.cost["cached"] >= done_before and len(_jsonl(cache)) == len(
        set(re.findall(r'"key": "(\w+)"', cache.read_text()))
    )


def _url(state: Script, judged) -> str:
    res = read_judge(judged[0], check_logs=False)
    assert res is not None
    return res.judge["base_url"]


def test_judge_bad_input_is_one_line_and_writes_nothing(judged, tmp_path, capsys, monkeypatch):
    run, state = judged
    url = _url(state, judged)
    small = tmp_path / "small"
    args = ["-q", "run", "--tasks", "dialog", "--baseline", "tiny-openflamingo", "--limit", "2", "--no-report"]
    assert main([*args, "--output-dir", str(small)]) == 0
    ws = tmp_path / "ws"
    ws.mkdir()
    target = ws / "run"
    shutil.copytree(run, target, ignore=shutil.ignore_patterns("judge", "judge.json"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    judge = ["--judge", f"openai:first@{url}"]
    one_error_line(ws, ["judge", "run", *judge, "--baseline", str(small)], capsys, monkeypatch, ["other samples"])
    one_error_line(ws, ["judge", "run", *judge, "--tasks", "easyvqa"], capsys, monkeypatch, ["easyvqa", "not in"])
    one_error_line(ws, ["judge", "run", *judge, "--judge-repeats", "0"], capsys, monkeypatch, ["--judge-repeats"])
    one_error_line(ws, ["judge", "run", "--judge", "python:nope.py:f"], capsys, monkeypatch, ["no such Python file"])
    one_error_line(
        ws,
        ["judge", str(small / "baseline"), *judge, "--tasks", "dialog", "--baseline", "run"],
        capsys,
        monkeypatch,
        ["other samples"],
    )
    # a run whose tasks declare no judging
    plain = tmp_path / "plain"
    assert main(["-q", "run", "--tasks", "easyvqa", "--limit", "2", "--no-report", "--output-dir", str(plain)]) == 0
    one_error_line(ws, ["judge", str(plain), *judge], capsys, monkeypatch, ["no task of this run is judged"])


def test_the_python_api_judges_after_evaluating(tmp_path, monkeypatch):
    """evaluate(judge=...) judges the run before the report is written again and before the trackers log
    it: report.html shows the judgments and MLflow (a real file store) has the judge metrics."""
    import mmgpt_eval

    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "api-judged")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    judge = f"python:{ROOT / 'examples' / 'judge_example.py'}:judge"
    res = mmgpt_eval.evaluate(
        tasks="dialog", limit=2, output_dir=str(tmp_path / "api"), judge=judge, log_to=[f"mlflow:file:{store}"]
    )
    assert "Judged quality" in (tmp_path / "api" / "report.html").read_text(encoding="utf-8")
    client = MlflowClient(tracking_uri=store.as_uri())
    (logged,) = client.search_runs([client.get_experiment_by_name("api-judged").experiment_id])
    judged = read_judge(res.run_dir)
    assert judged is not None
    assert logged.data.metrics["dialog/judge.rubric_overall"] == judged.tasks["dialog"].metrics["rubric_overall"]
    assert judged is not None and judged.judge["kind"] == "callable" and judged.baseline is None
    tj = judged.tasks["dialog"]
    assert tj.metrics["rubric_overall"] is not None and "win_rate" not in tj.metrics
    assert tj.notes == ["pairwise judging skipped: no baseline run (--baseline RUN)"]
    assert tj.counts["judgments"] == len(_jsonl(tmp_path / "api" / "judge" / "dialog.jsonl")) > 0
    # a local causal LM judge (the shipped tiny-lm): its replies are not the asked-for SCORES line, so
    # every judgment is a parse failure, counted, and no score is made up
    assert main(["-q", "judge", str(tmp_path / "api"), "--judge", "local:tiny-lm", "--no-progress"]) == 0
    local = read_judge(tmp_path / "api")
    assert local is not None and local.judge["kind"] == "local-lm"
    lm = local.tasks["dialog"]
    assert lm.counts["parse_failures"] == lm.counts["judgments"] > 0 and lm.metrics["parse_failure_rate"] == 1.0
    assert lm.metrics["rubric_overall"] is None and local.cost["completion_tokens"] > 0


def test_a_run_config_judge_table_judges_and_a_bad_one_is_one_line(tmp_path, capsys, monkeypatch):
    judge = ROOT / "examples" / "judge_example.py"
    cfg = tmp_path / "ci.toml"
    cfg.write_text(
        f'tasks = ["dialog"]\nlimit = 2\nno_report = true\noutput_dir = "out"\n'
        f'[judge]\nspec = "python:{judge}:judge"\nrepeats = 2\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "run", "--config", str(cfg), "--no-progress"]) == 0
    res = read_judge(tmp_path / "out")
    assert res is not None and res.repeats == 2 and res.judge["kind"] == "callable"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ci.toml").write_text('tasks = ["dialog"]\n[judge]\nspec = "python:x.py:f"\napi_key = "secret"\n')
    one_error_line(bad, ["run", "--config", "ci.toml"], capsys, monkeypatch, ["[judge] api_key", "unknown key"])


def test_a_user_probe_file_with_a_real_image_and_a_caption_reaches_the_judge(tmp_path):
    """The dialog probe format with a user's own image file: the judge reads its caption, and the image
    file's content is its identity (a changed file is judged again; the same file elsewhere is not)."""
    import hashlib

    from PIL import Image

    from mmgpt_eval.records import read_samples
    from mmgpt_eval.taskregistry import discover

    (tmp_path / "img").mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "img" / "red.png")
    conv = {
        "id": "mine",
        "image": {"path": "img/red.png"},
        "caption": "A plain red square.",
        "turns": [{"instruction": "What colour is it?", "kind": "short", "reference": "red"}],
    }
    probes = tmp_path / "probes.jsonl"
    probes.write_text(json.dumps(conv) + "\n")
    out = tmp_path / "run"
    argv = ["-q", "run", "--model", "tiny", "--tasks", "dialog", "--dialog-probes", str(probes)]
    assert main([*argv, "--dialog-max-new-tokens", "4", "--no-report", "--no-progress", "--output-dir", str(out)]) == 0
    (record,) = read_samples(out / "samples" / "dialog.jsonl")
    judging = discover()["dialog"].JUDGING
    assert judging is not None
    item = judging.item(record)
    assert item.image == "A plain red square."
    assert item.image_id == hashlib.sha256((tmp_path / "img" / "red.png").read_bytes()).hexdigest()
    assert item.turns[0][0] == "What colour is it?" and item.reference == "red"
    # a caption without an image is refused in one line naming the file and line
    probes.write_text(json.dumps({**conv, "image": None, "turns": [{**conv["turns"][0], "kind": "language"}]}) + "\n")
    with pytest.raises(UserError, match=r"probes.jsonl:1: mine: 'caption' describes the image"):
        from mmgpt_eval.taskapi.datasets import load_dialog_probes

        load_dialog_probes(probes)
