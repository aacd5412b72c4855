"""The judged tasks llava-bench and mmvet on tiny data in their published layouts (tests/datasets.py),
and the MM-Vet-style ``grade`` mode: ``data check``, a real ``run`` with the tiny model, the judge's
view of the real per-sample records (checked against the data files read here independently), bad
data refused before the model loads, and grading through a Python judge and over real HTTP on
127.0.0.1 (parse failures counted, retries, a second run served from the cache)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from http_servers import chat_completion, served
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from cli_checks import one_error_line
from datasets import make_llava_bench, make_mmvet
from mmgpt_eval.cli import main
from mmgpt_eval.errors import UserError
from mmgpt_eval.judge.backends import CallableJudge, OpenAIJudge
from mmgpt_eval.judge.cache import JudgmentCache
from mmgpt_eval.judge.grade import GRADE, grade, parse_grade
from mmgpt_eval.judge.modes import AnswerItem, JudgeRunner
from mmgpt_eval.judge.parse import ParseFailure
from mmgpt_eval.records import read_samples
from mmgpt_eval.taskapi import JudgedItem
from mmgpt_eval.taskregistry import discover

TOKENS = ["--llava-bench-max-new-tokens", "12", "--mmvet-max-new-tokens", "12"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("judged")
    make_llava_bench(root)
    make_mmvet(root)
    return root


@pytest.fixture(scope="module")
def run_dir(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    rc = main(
        ["-q", "run", "--model", "tiny", "--tasks", "llava-bench,mmvet", "--data-root", str(data_root)]
        + ["--no-progress", "--no-report", "--out", str(out), *TOKENS]
    )
    assert rc == 0
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _answer_item(j: JudgedItem) -> AnswerItem:
    return AnswerItem(j.id, j.turns, image=j.image, image_id=j.image_id, reference=j.reference)


# ------------------------------------------------------------------------------------------ data check, run
def test_data_check_lists_every_file_of_both_tasks(data_root, tmp_path, capsys):
    capsys.readouterr()
    assert main(["data", "check", "--tasks", "llava-bench,mmvet", "--data-root", str(data_root)]) == 0
    out = capsys.readouterr().out
    for rel in ("questions.jsonl", "answers_gpt4.jsonl", "context.jsonl", "mm-vet.json"):
        assert rel in out, out
    assert out.count("present") >= 6
    # an empty root: every file missing, with where to get it
    assert main(["data", "check", "--tasks", "llava-bench,mmvet", "--data-root", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "6 required file(s) missing" in out
    assert "present" not in out and "liuhaotian/llava-bench-in-the-wild" in out and "MM-Vet" in out


def test_run_writes_records_whose_judged_items_match_the_data_files(data_root, run_dir):
    tasks = discover()
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results["tasks"]) == {"llava-bench", "mmvet"}

    # llava-bench: each record -> question, answer, reference, caption, image sha256, category
    folder = data_root / "llava-bench"
    questions = {str(q["question_id"]): q for q in _jsonl(folder / "questions.jsonl")}
    refs = {str(a["question_id"]): a["text"] for a in _jsonl(folder / "answers_gpt4.jsonl")}
    captions = {c["image"]: c["caption"] for c in _jsonl(folder / "context.jsonl")}
    records = read_samples(run_dir / "samples" / "llava-bench.jsonl")
    assert sorted(r["id"] for r in records) == sorted(questions)
    judging = tasks["llava-bench"].JUDGING
    assert judging is not None and judging.modes == ("relative", "pairwise")
    for r in records:
        q = questions[r["id"]]
        assert r["metrics"]["words"] == len(r["prediction"].split())
        assert judging.item(r) == JudgedItem(
            id=r["id"],
            turns=((q["text"], r["prediction"]),),
            image=captions[q["image"]],
            image_id=_sha(folder / "images" / q["image"]),
            reference=refs[r["id"]],
            group=q["category"],
        )
    # two questions share each image: the same image id, different questions
    assert len({judging.item(r).image_id for r in records}) == 3

    # mmvet: question, answer, ground truth, image sha256, sorted capability set
    doc = json.loads((data_root / "mmvet" / "mm-vet.json").read_text())
    records = read_samples(run_dir / "samples" / "mmvet.jsonl")
    assert sorted(r["id"] for r in records) == sorted(doc)
    judging = tasks["mmvet"].JUDGING
    assert judging is not None and judging.modes == ("grade",)
    groups = set()
    for r in records:
        q = doc[r["id"]]
        item = judging.item(r)
        assert item == JudgedItem(
            id=r["id"],
            turns=((q["question"], r["prediction"]),),
            image=None,
            image_id=_sha(data_root / "mmvet" / "images" / q["imagename"]),
            reference=q["answer"],
            group=",".join(sorted(q["capability"])),
        )
        groups.add(item.group)
    assert "math,ocr" in groups and "gen,know,rec" in groups


def test_the_real_records_are_graded_end_to_end(run_dir, tmp_path):
    """mmvet's records through JUDGING.item and the grade mode, with a judge that reads the prompt."""

    def judge(messages):
        text = messages[-1]["content"]
        truth = text.split("[Ground truth]\n", 1)[1].split("\n\n", 1)[0]
        return "Checked.\nGRADE: " + ("0.5" if "<OR>" in truth else "0.0")

    records = read_samples(run_dir / "samples" / "mmvet.jsonl")
    items = [_answer_item(discover()["mmvet"].JUDGING.item(r)) for r in records]
    runner = JudgeRunner(CallableJudge(judge, name="or-half"), JudgmentCache(tmp_path / "c.jsonl"))
    out = grade(runner, items)
    expect = {r["id"]: (5 if "<OR>" in r["references"][0] else 0) for r in records}
    assert {j.item_id: j.scores["score"] for j in out} == expect
    assert set(expect.values()) == {0, 5}


def test_llava_bench_records_go_through_the_relative_and_pairwise_modes(run_dir, tmp_path):
    """The judge sees the caption and the reference the data files hold, for every record."""
    records = read_samples(run_dir / "samples" / "llava-bench.jsonl")
    items = [_answer_item(discover()["llava-bench"].JUDGING.item(r)) for r in records]
    seen = []

    def judge(messages):
        text = messages[-1]["content"]
        if "[Reply A]" in text:
            return "Same answers.\nVERDICT: tie"
        seen.append((text.split("[Image description]\n", 1)[1].split("\n\n", 1)[0], text))
        return "Scored.\nSCORES: reference=8; candidate=2"

    runner = JudgeRunner(CallableJudge(judge, name="fixed"), JudgmentCache(None))
    rel = runner.relative(items)
    assert [j.relative for j in rel] == [25.0] * len(records)
    by_id = {r["id"]: r for r in records}
    for (caption, text), it in zip(seen, items):
        assert caption == by_id[it.id]["meta"]["caption"] and by_id[it.id]["references"][0] in text
    pairs = runner.pairwise(items, items)
    assert len(pairs) == len(records) and {p.outcome for p in pairs} == {"tie"}


def test_importing_the_judged_tasks_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, mmgpt_eval_tasks.llava_bench, mmgpt_eval_tasks.mmvet, mmgpt_eval.judge.grade\n"
        "print(','.join(m for m in ('torch', 'transformers', 'open_flamingo') if m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


# ------------------------------------------------------------------------------------------ bad data
def _bad_llava(root: Path, key: str) -> tuple[Path, str]:
    d = make_llava_bench(root)
    p = d[key]
    rows = _jsonl(p)
    if key == "questions":
        del rows[1]["image"]
        word = "question 1"
    else:
        rows[2]["text"] = 7
        word = "question 2"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p, word


@pytest.mark.parametrize("case", ["question-without-image", "answer-not-a-string", "mmvet-answer", "mmvet-image"])
def test_bad_data_is_one_line_naming_file_and_id_before_the_model_loads(case, tmp_path, capsys, monkeypatch, no_load):
    root = tmp_path / "data"
    if case == "question-without-image":
        bad, word = _bad_llava(root, "questions")
    elif case == "answer-not-a-string":
        bad, word = _bad_llava(root, "answers")
    else:
        d = make_mmvet(root)
        bad, doc = d["json"], json.loads(d["json"].read_text())
        if case == "mmvet-answer":
            doc["v1_3"]["answer"] = ["3"]
        else:
            doc["v1_3"]["imagename"] = "missing.png"
        bad.write_text(json.dumps(doc))
        word = "question v1_3"
    task = "mmvet" if case.startswith("mmvet") else "llava-bench"
    ws = tmp_path / "ws"
    ws.mkdir()
    argv = ["run", "--model", "tiny", "--tasks", task, "--data-root", str(root), "--no-progress", "--out", "o"]
    line = one_error_line(ws, argv, capsys, monkeypatch, [bad.name, word])
    if case == "mmvet-image":
        assert "missing.png" in line


# ------------------------------------------------------------------------------------------ grade mode
@pytest.mark.parametrize(
    "reply, expect",
    [
        ("Right.\nGRADE: 1.0", 10),
        ("GRADE: 1", 10),
        ("half right\n\nGRADE:0.5  \n\n", 5),
        ("GRADE: 0", 0),
        ("GRADE: 0.0", 0),
        ("GRADE: 0.7", 7),
        ("GRADE: 1.1", None),
        ("GRADE: 0.75", None),
        ("GRADE: .5", None),
        ("GRADE: -0.1", None),
        ("GRADE: 7", None),
        ("GRADE: 0.7\nI am not sure.", None),
        ("The grade is 0.7", None),
        ("SCORES: score=7", None),
        ("", None),
    ],
)
def test_the_grade_parser_reads_only_a_strict_last_line(reply, expect):
    got = parse_grade(reply)
    if expect is None:
        assert isinstance(got, ParseFailure)
    else:
        assert got == expect


def _items(n: int) -> list[AnswerItem]:
    """Answers whose correct grade is written in them as ``g<k>`` (k tenths)."""
    return [
        AnswerItem(f"q{i}", ((f"Question {i}?", f"answer g{i % 11}"),), image_id=f"img{i}", reference=f"truth {i}")
        for i in range(n)
    ]


def _true_grade(text: str) -> int:
    return int(re.search(r"g(\d+)", text.split("[Answer to grade]\n", 1)[1]).group(1))


def test_grade_with_a_python_judge_counts_failures_and_caches(tmp_path):
    calls: Counter[str] = Counter()

    def judge(messages, repeat):
        k = _true_grade(messages[-1]["content"])
        calls[f"{k}|{repeat}"] += 1
        if k == 3:
            return "It is three tenths right, I think."  # no GRADE line: a parse failure
        return f"Compared with the ground truth.\nGRADE: {k / 10:.1f}"

    cache = tmp_path / "cache.jsonl"
    runner = JudgeRunner(CallableJudge(judge, name="exact", takes_repeat=True), JudgmentCache(cache), repeats=2)
    out = grade(runner, _items(12))
    assert len(out) == 24 and sum(calls.values()) == 24
    ok = [j for j in out if j.failure is None]
    assert all(j.scores == {"score": _true_grade_of(j.item_id)} for j in ok)
    failed = [j for j in out if j.failure is not None]
    assert {j.item_id for j in failed} == {"q3"} and all(j.scores is None for j in failed)
    assert all(j.failure.startswith("parse:") for j in failed)
    assert runner.judgments == 24 and runner.parse_failures == 2 and runner.call_failures == 0
    prov = runner.provenance()
    assert prov["templates"] == {"grade-v1": GRADE.sha256} and prov["calls"] == 24

    # a second run on the same cache file asks nothing and gives the same judgments
    again = JudgeRunner(CallableJudge(judge, name="exact", takes_repeat=True), JudgmentCache(cache), repeats=2)
    out2 = grade(again, _items(12))
    assert sum(calls.values()) == 24 and again.provenance()["calls"] == 0
    assert again.provenance()["cache_hits"] == 24 and again.parse_failures == 2
    assert [(j.item_id, j.repeat, j.scores) for j in out2] == [(j.item_id, j.repeat, j.scores) for j in out]

    # one answer edited: exactly its two repeats are asked
    items = _items(12)
    items[5] = AnswerItem("q5", (("Question 5?", "answer g9 edited"),), image_id="img5", reference="truth 5")
    third = JudgeRunner(CallableJudge(judge, name="exact", takes_repeat=True), JudgmentCache(cache), repeats=2)
    grade(third, items)
    assert third.provenance()["calls"] == 2


def _true_grade_of(item_id: str) -> int:
    return int(item_id[1:]) % 11


def test_grade_needs_a_reference():
    runner = JudgeRunner(CallableJudge(lambda m: "GRADE: 1.0", name="one"), JudgmentCache(None))
    with pytest.raises(UserError, match="q0: grade judging needs a reference"):
        grade(runner, [AnswerItem("q0", (("Q?", "A"),))])


# ------------------------------------------------------------------------------------------ over HTTP
KEY = "grade-key"


def _app(requests: Counter[str], seen: set[str], lock: threading.Lock) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models(request: Request):
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "t"} for m in "ab"]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        text = body["messages"][-1]["content"]
        if text == "Reply with OK.":
            content = "OK"
        else:
            k = _true_grade(text)
            with lock:
                first = text not in seen
                seen.add(text)
                requests["calls"] += 1
            if first and k % 4 == 1:  # the first ask of these is refused: retried after a back-off
                return JSONResponse({"error": {"message": "slow down"}}, status_code=429)
            content = f"Grade {k}.\nGRADE: {k / 10:.2f}" if k == 7 else f"Reasoning.\nGRADE: {k / 10:.1f}"
        return chat_completion(body["model"], content, text, 8)

    return app


@pytest.fixture(scope="module")
def grader():

    requests: Counter[str] = Counter()
    with served(_app(requests, set(), threading.Lock())) as url:
        yield url, requests


def test_grade_over_http_retries_counts_parse_failures_and_caches(grader, tmp_path):
    url, requests = grader
    cache = tmp_path / "http-cache.jsonl"

    def runner() -> JudgeRunner:
        judge = OpenAIJudge("a", base_url=url, api_key=KEY, backoff=0.001, concurrency=4)
        return JudgeRunner(judge, JudgmentCache(cache))

    items = _items(11)
    before = requests["calls"]
    r1 = runner()
    out = grade(r1, items)
    # g1, g5, g9 were refused once each (429) and then answered
    assert requests["calls"] - before == 11 + 3 and r1.provenance()["retries"] == 3
    # "GRADE: 0.70" has two decimals: a parse failure, never a score
    assert [j.item_id for j in out if j.failure] == ["q7"] and r1.parse_failures == 1
    assert {j.item_id: j.scores["score"] for j in out if j.scores} == {f"q{i}": i for i in range(11) if i != 7}
    assert r1.provenance()["judge"]["model"] == "a"

    r2 = runner()
    before = requests["calls"]
    out2 = grade(r2, items)
    assert requests["calls"] == before and r2.provenance()["calls"] == 0 and r2.parse_failures == 1
    assert [j.scores for j in out2] == [j.scores for j in out]


def test_a_context_caption_may_be_a_list_of_captions(tmp_path):
    """Some copies of LLaVA-Bench's context.jsonl hold several captions of one image in a list: they
    reach the judge one per line; a list with a non-string is refused naming the file and line."""
    from mmgpt_eval.data.judged_benchmarks import load_llava_bench

    p = make_llava_bench(tmp_path, n_images=1, per_image=1)
    ctx = json.loads(p["context"].read_text())
    ctx["caption"] = ["A red square.", "Two shapes."]
    p["context"].write_text(json.dumps(ctx) + "\n")
    (sample,) = load_llava_bench(p["questions"], p["answers"], p["context"], p["images"])
    assert sample.meta["caption"] == "A red square.\nTwo shapes."
    ctx["caption"] = ["A red square.", 3]
    p["context"].write_text(json.dumps(ctx) + "\n")
    with pytest.raises(UserError, match=r"context.jsonl:1: .*'caption' must be a non-empty string"):
        load_llava_bench(p["questions"], p["answers"], p["context"], p["images"])


JUDGE_FILE = '''
import json
from pathlib import Path

TABLE = json.loads(Path(__file__).with_name("table.json").read_text())


def reply(messages, repeat):
    """The scripted reply for the question the judge is asked about (the longest that appears)."""
    text = "\\n".join(m["content"] for m in messages if isinstance(m.get("content"), str))
    grade = "GRADE:" in text
    hits = [q for q in TABLE if q in text]
    q = max(hits, key=len)
    return TABLE[q]["grade" if grade else "relative"]
'''


def test_judging_the_tasks_gives_their_scores_and_per_group_breakdowns(data_root, run_dir, tmp_path, capsys):
    """`mmgpt-eval judge` over a real run of both tasks with a scripted judge whose replies are known:
    llava-bench's relative score overall and per category (100 x mean candidate / mean reference), MM-Vet's
    0-1 grade overall and per capability (an item counts toward each of its capabilities)."""
    import shutil

    from mmgpt_eval.judge_results import read_judge

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    questions = _jsonl(data_root / "llava-bench" / "questions.jsonl")
    doc = json.loads((data_root / "mmvet" / "mm-vet.json").read_text())
    table, rel, grades = {}, {}, {}
    for k, q in enumerate(questions):
        ref, cand = 6 + k % 3, 1 + (3 * k) % 9
        rel[str(q["question_id"])] = (q["category"], ref, cand)
        table[q["text"]] = {"relative": f"Fine.\nSCORES: reference={ref}; candidate={cand}"}
    for k, (qid, q) in enumerate(sorted(doc.items())):
        g = (3 * k + 1) % 11
        grades[qid] = (q["capability"], g / 10)
        table[q["question"]] = {"grade": f"Close enough.\nGRADE: {g / 10:.1f}"}
    (tmp_path / "table.json").write_text(json.dumps(table))
    (tmp_path / "scripted.py").write_text(JUDGE_FILE)
    spec = f"python:{tmp_path / 'scripted.py'}:reply"
    assert main(["-q", "judge", str(run), "--judge", spec, "--judge-repeats", "2"]) == 0, capsys.readouterr().err
    res = read_judge(run)
    assert res is not None and set(res.tasks) == {"llava-bench", "mmvet"}

    lb = res.tasks["llava-bench"]
    expect = 100 * np.mean([c for _, _, c in rel.values()]) / np.mean([r for _, r, _ in rel.values()])
    assert lb.metrics["relative_score"] == pytest.approx(expect)
    for cat in {c for c, _, _ in rel.values()}:
        sub = [(r, c) for k, r, c in rel.values() if k == cat]
        want = 100 * np.mean([c for _, c in sub]) / np.mean([r for r, _ in sub])
        assert lb.breakdown[cat]["relative_score"] == pytest.approx(want)

    mv = res.tasks["mmvet"]
    assert mv.metrics["grade_score"] == pytest.approx(np.mean([g for _, g in grades.values()]))
    lo, hi = mv.intervals["grade_score"]
    assert lo <= mv.metrics["grade_score"] <= hi
    caps = {c for cs, _ in grades.values() for c in cs}
    assert set(mv.breakdown) == caps
    for cap in caps:
        want = np.mean([g for cs, g in grades.values() if cap in cs])
        assert mv.breakdown[cap]["grade_score"] == pytest.approx(want)
    assert mv.counts.get("parse_failures", 0) == 0 and lb.counts.get("parse_failures", 0) == 0
    assert res.cost["calls"] == 2 * (len(questions) + len(doc))  # two repeats, nothing failed

    # judging one task again keeps the other's judging (same judge); another judge drops it, saying so
    assert main(["-q", "judge", str(run), "--judge", spec, "--judge-repeats", "2", "--tasks", "mmvet"]) == 0
    again = read_judge(run)
    assert again is not None and again.tasks["llava-bench"].to_dict() == lb.to_dict()
    assert again.cost["calls"] == 0  # everything came from the cache
    (tmp_path / "other.py").write_text(JUDGE_FILE)  # another file: another judge identity
    capsys.readouterr()
    other = f"python:{tmp_path / 'other.py'}:reply"
    assert main(["judge", str(run), "--judge", other, "--judge-repeats", "2", "--tasks", "mmvet"]) == 0
    assert "llava-bench: its earlier judging is dropped" in capsys.readouterr().err
    last = read_judge(run)
    assert last is not None and set(last.tasks) == {"mmvet"}
