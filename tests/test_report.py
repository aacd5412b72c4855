"""The HTML report: structure and numbers, escaping of hostile strings, the size cap, the CLI.

Real runs come from the tiny random model (``real_runs``, built once per session and shared with
test_report_chromium.py); the 10,000-sample size test writes synthetic run folders by hand.
"""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mmgpt_eval.cli import main
from mmgpt_eval.compare import compare_runs, run_label
from mmgpt_eval.report import MAX_BYTES, build_report, fmt_delta, fmt_value, write_report
from mmgpt_eval.results import RunResults

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
SCRIPT_ESC = "&lt;script&gt;alert(1)&lt;/script&gt;"
IMG_ESC = "&lt;img src=x onerror=alert(1)&gt;"
PAYLOAD_TASK = f"easyvqa{SCRIPT}"
FAST = {"n_resamples": 500}  # the bootstrap size does not matter for these tests

TASKS = "easyvqa,counting,dialog"
_CACHE: dict[str, dict[str, Path]] = {}


# ------------------------------------------------------------------------------------------ fixtures
def make_real_runs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny-model runs that differ in generation settings (so outputs differ), plus a gate JSON.

    Cached for the whole session, so the Chromium tests reuse them."""
    if "runs" in _CACHE:
        return _CACHE["runs"]
    import torch

    root = tmp_path_factory.mktemp("report_runs")
    common = [
        "-q",
        "run",
        "--model",
        "tiny",
        "--tasks",
        TASKS,
        "--limit",
        "10",
        "--no-progress",
        "--device",
        "cpu",
        "--dialog-max-new-tokens",
        "8",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from more; on a busy 2-core box they spin (5x slower)
    try:
        assert main(common + ["--output-dir", str(root / "A")]) == 0
        assert main(common + ["--output-dir", str(root / "B"), "--max-new-tokens", "3"]) == 0
    finally:
        torch.set_num_threads(threads)
    policy = root / "gate.toml"
    policy.write_text(
        '[defaults]\nmin_samples = 5\n\n[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\n'
        'direction = "higher"\nmargin = 1.0\n\n[[rule]]\ntask = "dialog"\nmetric = "checks_pass_rate"\n'
        'direction = "higher"\nmargin = 5.0\n'
    )
    rc = main(
        [
            "-q",
            "gate",
            "--baseline",
            str(root / "A"),
            "--candidate",
            str(root / "B"),
            "--policy",
            str(policy),
            "--json",
            str(root / "gate.json"),
        ]
    )
    assert rc in (0, 1, 2) and (root / "gate.json").is_file()
    _CACHE["runs"] = {"A": root / "A", "B": root / "B", "gate": root / "gate.json", "root": root}
    return _CACHE["runs"]


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory):
    return make_real_runs(tmp_path_factory)


def _rewrite_samples(run_dir: Path, task_file: str, fn) -> None:
    p = run_dir / task_file
    lines = p.read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines:
        if not line.strip():
            continue
        obj = json.loads(line)
        if "mmgpt-eval/samples" not in obj:
            obj = fn(obj)
            if obj is None:
                continue
        out.append(json.dumps(obj))  # ASCII: a lone surrogate stays a JSON escape
    p.write_text("\n".join(out) + "\n", encoding="utf-8")


def make_payload_runs(real: dict[str, Path], dest: Path) -> tuple[Path, Path]:
    """Copies of the real runs with XSS payloads in task/metric names, prompts, predictions,
    references, dialogue instructions, breakdown keys, notes and image keys; the candidate loses
    the baseline's correct answers on a few samples so the galleries show them."""
    out = []
    for name in ("A", "B"):
        d = dest / f"payload{name}"
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(real[name], d)
        res = json.loads((d / "results.json").read_text())
        tr = res["tasks"].pop("easyvqa")
        tr["task"] = PAYLOAD_TASK
        tr["notes"] = [f"note {IMG}"]
        tr["breakdown"]["accuracy_by_answer_type"][IMG] = 50.0
        tr["metrics"][IMG] = 1.0
        tr["metric_info"][IMG] = {
            "kind": "corpus-only",
            "higher_is_better": True,
            "scale": 1.0,
            "unit": "",
            "per_sample": None,
            "description": SCRIPT,
        }
        res["tasks"][PAYLOAD_TASK] = tr
        res["run"]["argv"] = ["run", SCRIPT]
        (d / "results.json").write_text(json.dumps(res))

        def vqa(r, name=name):
            i = int(hashlib_digit(r["id"]))
            r["prompt"] = r["prompt"].replace("### Response:", f"{SCRIPT} ### Response:")
            r["prediction"] = f"{SCRIPT} {IMG} answer"
            r["references"] = [IMG, "no", "no"]
            r["images"] = [f"path:/nonexistent/{IMG}.png"] if i % 2 else r["images"]
            r["metrics"]["exact"] = 1 if (name == "A" and i < 5) else 0
            return r

        def dialog(r):
            for ref in r["references"]:
                ref["instruction"] = f"{IMG} {ref['instruction']}"
                ref["reference"] = SCRIPT
            for k, o in r.get("outputs", {}).items():
                o["prediction"] = f"{SCRIPT} turn {k} {IMG} \x00\x10\x1b[31m \ud800 end"
            return r

        def counting(r):
            r["prediction"] = f"{IMG} \x00\x10\x1b[31m \ud800 3"
            return r

        _rewrite_samples(d, "samples/easyvqa.jsonl", vqa)
        _rewrite_samples(d, "samples/dialog.jsonl", dialog)
        _rewrite_samples(d, "samples/counting.jsonl", counting)
        out.append(d)
    return out[0], out[1]


def hashlib_digit(s: str) -> int:
    import hashlib

    return int(hashlib.sha256(str(s).encode()).hexdigest(), 16) % 10


class _Tags(HTMLParser):
    """Collect every start tag with its attributes, and all text nodes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    p.close()
    return p


def assert_inert(html: str) -> None:
    """No script element, no event-handler attribute, no remote or non-PNG resource anywhere."""
    p = parse(html)
    for tag, attrs in p.tags:
        assert tag not in ("script", "iframe", "object", "embed", "base", "form"), tag
        for k, v in attrs:
            assert not k.lower().startswith("on"), (tag, k, v)
            if k in ("src", "srcset"):
                assert tag == "img" and re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]+", v or ""), (tag, k, v)
            if k == "href":
                assert (v or "").startswith("#") or v == "data:,", (tag, k, v)
            assert "javascript:" not in (v or "").lower()
    assert "<script" not in html.lower()
    assert "http://" not in html and "https://" not in html
    assert "@import" not in html and "url(" not in html


# ------------------------------------------------------------------------------------------ structure
def test_report_sections_and_numbers(real_runs, tmp_path):
    a, b = RunResults.load(real_runs["A"]), RunResults.load(real_runs["B"])
    gate = json.loads(real_runs["gate"].read_text())
    html = build_report([b], baseline=a, gate=gate, labels=["cand"], **FAST)
    for sec in ("headline", "summary", "breakdowns", "galleries", "transcripts", "provenance", "gate"):
        assert f'id="{sec}"' in html, sec
    assert "trend" not in re.findall(r'id="(\w+)"', html)  # one run: no trend plot
    assert_inert(html)
    text = " ".join(parse(html).text)
    # every corpus metric of both runs, formatted as in the table
    for r in (a, b):
        for task, tr in r.tasks.items():
            for m, v in tr.metrics.items():
                assert fmt_value(v, tr.metric_info.get(m, {}).get("unit", "")) in text, (task, m)
    # deltas, intervals and p-values from compare_runs
    comps = compare_runs(a, b, n_resamples=500)
    for mc in comps:
        assert fmt_delta(mc.delta, mc.unit) in text
    assert "[95% CI]" in text and ("p=" in text or "p<0.001" in text)
    # breakdowns: easyvqa answer types, counting per true count (table + bar plot), dialogue probes
    assert "accuracy by answer type" in text and "yes/no" in text
    assert "counting accuracy by true count" in text and "accuracy (%) by true count" in text
    assert "dialogue probes per turn" in text and "dialogue probes per instruction kind" in text
    assert html.count("data:image/png;base64,") >= 1
    # galleries, transcripts, provenance, gate
    assert "ranked by accuracy (exact)" in text
    assert "conversation " in text and "grounding probe" in text
    tpl = a.tasks["easyvqa"].template["sha256"][:12]
    assert tpl in text and a.provenance["versions"]["torch"] in text and "peak CPU RSS (MB)" in text
    assert gate["verdict"] in text.lower() or gate["verdict"].upper() in text
    # runs are labelled by what they evaluated: the baseline by its model spec ("tiny"), not its folder
    assert f"baseline: {run_label(a)}" in text and "cand" in text


def test_report_no_baseline_gallery_and_trend(real_runs, tmp_path):
    """Several runs without a baseline: trend plot over checkpoint steps, worst/best galleries."""
    dirs = []
    for i, (src, step) in enumerate((("A", 200), ("B", 100), ("A", 300))):
        d = tmp_path / f"ck{i}"
        shutil.copytree(real_runs[src], d)
        res = json.loads((d / "results.json").read_text())
        res["model"]["checkpoint"] = {
            "path": f"/ck/{step}.pt",
            "format": "mmgpt-trainer",
            "layout": "mmgpt",
            "sha256": f"{step:064d}",
            "lora": {"r": 16, "alpha": 32},
            "metadata": {"step": step},
        }
        (d / "results.json").write_text(json.dumps(res))
        dirs.append(d)
    runs = [RunResults.load(d) for d in dirs]
    html = build_report(runs, **FAST)
    text = " ".join(parse(html).text)
    assert 'id="trend"' in html and "checkpoint step" in text
    assert "100.pt (step 100)" in text  # sorted by step, labelled by the checkpoint and its step
    assert "worst samples" in text and "best samples" in text
    assert f"{300:064d}" in text and "mmgpt-trainer" in text  # checkpoint provenance
    assert_inert(html)
    # without steps, x is the position of the run
    html2 = build_report([RunResults.load(real_runs["A"]), RunResults.load(real_runs["B"])], **FAST)
    assert "run (position)" in html2


def test_report_different_samples(real_runs, tmp_path):
    """Different sample sets: the comparison error is shown (no crash) unless intersect."""
    d = tmp_path / "fewer"
    shutil.copytree(real_runs["B"], d)
    seen = []

    def drop_first(r):
        seen.append(r["id"])
        return None if len(seen) <= 2 else r

    _rewrite_samples(d, "samples/easyvqa.jsonl", drop_first)
    a, b = RunResults.load(real_runs["A"]), RunResults.load(d)
    html = build_report([b], baseline=a, **FAST)
    text = " ".join(parse(html).text)
    # both runs evaluated the model spec "tiny": the candidate's label is made unique
    assert f"No comparison for {run_label(b)} #2" in text and "evaluated different samples" in text
    assert "--intersect" in text
    # the other tasks are still compared
    assert text.count("No comparison for") == 1
    html = build_report([b], baseline=a, intersect=True, **FAST)
    text = " ".join(parse(html).text)
    assert "No comparison for" not in text and "common samples" in text


def test_report_missing_samples_and_images(real_runs, tmp_path):
    d = tmp_path / "nosamples"
    shutil.copytree(real_runs["B"], d)
    (d / "samples" / "counting.jsonl").unlink()
    html = build_report([RunResults.load(d)], baseline=RunResults.load(real_runs["A"]), **FAST)
    text = " ".join(parse(html).text)
    assert "file not found" in text  # shown in the summary / gallery, not raised
    pa, pb = make_payload_runs(real_runs, tmp_path)
    html = build_report([RunResults.load(pb)], baseline=RunResults.load(pa), **FAST)
    assert "image unavailable" in html or "no image" in html


# ------------------------------------------------------------------------------------------ escaping
def test_report_escapes_payloads(real_runs, tmp_path):
    pa, pb = make_payload_runs(real_runs, tmp_path)
    gate = json.loads(real_runs["gate"].read_text())
    gate["rules"][0]["message"] = SCRIPT
    gate["rules"][0]["task"] = PAYLOAD_TASK
    html = build_report([RunResults.load(pb)], baseline=RunResults.load(pa), gate=gate, labels=[f"cand {IMG}"], **FAST)
    assert SCRIPT_ESC in html and IMG_ESC in html
    assert SCRIPT not in html and IMG not in html
    assert_inert(html)
    # rendered as text: the parser sees the payloads as text nodes
    text = "".join(parse(html).text)
    assert SCRIPT in text and IMG in text
    assert f"{SCRIPT} {IMG} answer" in text  # prediction (gallery)
    assert f"{IMG} " in text and "turn t0" in text  # dialogue instruction / answers
    assert "note " + IMG in text and f"cand {IMG}" in text  # notes, labels
    # control characters become visible escapes; a lone surrogate does not break the file
    assert "\\x00\\x10\\x1b[31m" in text and "\x10" not in html and "\ud800" not in html
    out = write_report(tmp_path / "r.html", [RunResults.load(pb)], baseline=RunResults.load(pa), **FAST)
    out.read_bytes().decode("utf-8")  # valid UTF-8


def test_autoescape_is_on_and_no_safe_filter():
    from mmgpt_eval.report.build import _env

    env = _env()
    assert env.autoescape is True
    src = (Path(__import__("mmgpt_eval").__file__).parent / "report" / "report.html.j2").read_text()
    assert "|safe" not in src.replace(" ", "") and "<script" not in src.lower()
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", src)  # no event-handler attributes


# ------------------------------------------------------------------------------------------ size
def _write_synthetic_run(d: Path, n: int, *, candidate: bool, rng: random.Random) -> None:
    """A run folder with a VQA task (named by its alias ``vqa``; image keys, 3,000 question types) and a
    dialog task (3 turns), n samples each; every 50th sample carries a 20,000-character prediction and
    regresses. The task names select the tasks' report views (tables, transcripts)."""
    (d / "samples").mkdir(parents=True)
    long = "word " * 4000
    vqa, dlg = [], []
    for i in range(n):
        regress = candidate and i % 50 == 0
        exact = 0 if regress else int(rng.random() < (0.55 if candidate else 0.5))
        vqa.append(
            {
                "id": f"q{i:05d}",
                "prompt_sha256": "0" * 64,
                "template": "mmgpt",
                "prompt": f"### Image:\n<image>\n\n### Instruction:\nwhat shape is object {i}?\n\n### Response:\n",
                "images": [f"counting:1:{i % 997}"],
                "raw": "",
                "prediction": long if regress else f"circle {i}",
                "references": ["circle"] * 7 + ["square"] * 3,
                "metrics": {"accuracy": float(exact)},
                "meta": {"answer_type": "other"},
            }
        )
        if not candidate and i % 50 == 0:
            vqa[-1]["metrics"]["accuracy"] = 1.0
        turns = [
            {
                "kind": "open",
                "turn_index": t,
                "words": 5,
                "checks_pass": bool(rng.random() < 0.5),
                "collapsed": False,
                "truncated": False,
            }
            for t in range(3)
        ]
        cp = sum(t["checks_pass"] for t in turns) / 3
        big = i % 50 == 0  # long prompts / references on a few samples keep the files small
        dlg.append(
            {
                "id": f"d{i:05d}",
                "prompt_sha256": "0" * 64,
                "template": "mmgpt",
                "prompt": "p" * (3000 if big else 100),
                "images": [],
                "raw": "",
                "prediction": "x",
                "references": [
                    {
                        "instruction": f"instruction {t} " * (50 if big else 2),
                        "kind": "open",
                        "reference": "r" * (2000 if big else 20),
                        "checks": {},
                    }
                    for t in range(3)
                ],
                "metrics": {"checks_pass": cp, "turns": turns},
                "meta": {},
                "outputs": {
                    f"t{t}": {"prompt": "p", "prediction": (long if regress else "answer " * 5)} for t in range(3)
                },
            }
        )
    for name, recs in (("vqa", vqa), ("dialog", dlg)):
        with open(d / "samples" / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.write(json.dumps({"mmgpt-eval/samples": {"version": 1, "task": name}}) + "\n")
            for r in recs:
                f.write(json.dumps(r) + "\n")

    def tr(name: str, metric: str, key: str, value: float, breakdown: dict, kind: str) -> dict:
        return {
            "task": name,
            "version": "1",
            "metrics": {metric: value},
            "metric_info": {
                metric: {
                    "kind": kind,
                    "higher_is_better": True,
                    "scale": 100.0,
                    "unit": "%",
                    "per_sample": key,
                    "description": "synthetic",
                }
            },
            "primary_metric": metric,
            "n_samples": n,
            "n_available": n,
            "limit": None,
            "subset": "all",
            "template": {"name": "mmgpt", "sha256": "f" * 64},
            "generation": {"max_new_tokens": 10},
            "breakdown": breakdown,
            "notes": ["n" * 5000],
            "timing": {"samples_per_s": 10.0},
            "samples_file": f"samples/{name}.jsonl",
            "fingerprint": "e" * 64,
        }

    acc = 100.0 * sum(r["metrics"]["accuracy"] for r in vqa) / n
    chk = 100.0 * sum(r["metrics"]["checks_pass"] for r in dlg) / n
    qtypes = {f"what is the type {k}": rng.random() * 100 for k in range(3000)}
    res = {
        "schema": "mmgpt-eval/results",
        "schema_version": 1,
        "created": "2026-01-01T00:00:00+00:00",
        "run": {"argv": ["run"] * 5000, "seed": 0},
        "model": {"model_spec": {"name": "synthetic"}},
        "tasks": {
            "vqa": tr(
                "vqa",
                "accuracy",
                "accuracy",
                acc,
                {"perAnswerType": {"other": acc}, "perQuestionType": qtypes},
                "continuous",
            ),
            "dialog": tr(
                "dialog",
                "checks_pass_rate",
                "checks_pass",
                chk,
                {
                    "pooled_turns": {
                        "by_turn": {str(t): {"n": n, "checks_pass_rate": 50.0} for t in range(3)},
                        "by_kind": {"open": {"n": 3 * n, "checks_pass_rate": 50.0}},
                    }
                },
                "continuous",
            ),
        },
        "provenance": {"versions": {"torch": "x"}, "git": {"hash": "a" * 40, "dirty": False}},
        "baseline": None,
    }
    (d / "results.json").write_text(json.dumps(res))


def test_report_size_10k_samples(tmp_path):
    rng = random.Random(0)
    n = 10_000
    _write_synthetic_run(tmp_path / "base", n, candidate=False, rng=rng)
    _write_synthetic_run(tmp_path / "cand", n, candidate=True, rng=rng)
    base, cand = RunResults.load(tmp_path / "base"), RunResults.load(tmp_path / "cand")
    t = time.time()
    out = write_report(tmp_path / "big.html", [cand], baseline=base, n_resamples=200)
    elapsed = time.time() - t
    size = out.stat().st_size
    print(f"10k-sample report: {size / 1e6:.2f} MB in {elapsed:.1f} s")
    assert size < 20_000_000 and size <= MAX_BYTES
    html = out.read_text(encoding="utf-8")
    text = " ".join(parse(html).text)
    assert "characters omitted" in text  # long texts truncated with a marker
    assert "more rows not shown" in text  # 3,000 question types summarised
    assert "VQA accuracy per question type" in text and "VQA accuracy per answer type" in text
    assert "dialogue probes per turn" in text and 'id="transcripts"' in html  # the dialog task's views
    assert html.count('class="card ') <= 2 * 12 * 2  # galleries capped (2 tasks x 2 directions x 12)
    assert "largest regressions (12 of " in text  # the cap is announced
    # the hard ceiling: a tiny budget forces smaller galleries, and says so
    small = build_report([cand], baseline=base, n_resamples=200, max_bytes=len(html.encode()) // 2)
    assert "galleries were cut" in small and len(small) < len(html)


# ------------------------------------------------------------------------------------------ CLI
def test_cli_report(real_runs, tmp_path, capsys):
    out = tmp_path / "sub" / "report.html"
    rc = main(
        [
            "report",
            str(real_runs["B"]),
            str(real_runs["A"] / "results.json"),
            "-o",
            str(out),
            "--baseline",
            str(real_runs["A"]),
            "--gate",
            str(real_runs["gate"]),
            "--labels",
            "cand,again",
            "--max-gallery",
            "3",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    assert 'id="gate"' in html and 'id="trend"' in html and "cand" in html and "again" in html
    assert_inert(html)


@pytest.mark.parametrize("case", ["missing", "not_results", "bad_json", "labels", "gate", "baseline", "outdir"])
def test_cli_report_errors(real_runs, tmp_path, capsys, case):
    out = tmp_path / "r.html"
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"schema": "something-else"}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    args = {
        "missing": [str(tmp_path / "nope"), "-o", str(out)],
        "not_results": [str(other), "-o", str(out)],
        "bad_json": [str(bad), "-o", str(out)],
        "labels": [str(real_runs["A"]), "-o", str(out), "--labels", "a,b"],
        "gate": [str(real_runs["A"]), "-o", str(out), "--gate", str(other)],
        "baseline": [str(real_runs["A"]), "-o", str(out), "--baseline", str(tmp_path / "nope")],
        "outdir": [str(real_runs["A"]), "-o", str(tmp_path)],
    }[case]
    rc = main(["report", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("mmgpt-eval: error:") and "\n" not in err and "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".r.html.*"))  # no temporary file left behind


def test_build_report_api_errors(real_runs):
    from mmgpt_eval.errors import UserError

    a = RunResults.load(real_runs["A"])
    with pytest.raises(UserError):
        build_report([])
    with pytest.raises(UserError):
        build_report([a], labels=["x", "y"])
    r = copy.copy(a)
    html = build_report([a, r], labels=["same", "same"], **FAST)  # duplicate labels are made unique
    assert "same #2" in html


# ------------------------------------------------------------------------------------------ task views
TASK_WORDS = ("easyvqa", "easy-vqa", "vqav2", "okvqa", "ok-vqa", "coco", "counting", "dialog")
# breakdown keys of particular tasks: the report must not special-case task data either
TASK_KEYS = (
    "pooled_turns",
    "accuracy_by_true_count",
    "mae_by_true_count",
    "n_by_true_count",
    "accuracy_by_answer_type",
    "n_by_answer_type",
    "perAnswerType",
    "perQuestionType",
)
_PROSE_RE = re.compile(r"(?<![a-z0-9])(" + "|".join(map(re.escape, TASK_WORDS)) + r")(?![a-z0-9])", re.I)


def _ident_hits(name: str) -> list[str]:
    """An identifier names a task when one of its parts (snake_case / camelCase) starts with a task name."""
    parts = [p.lower() for p in re.split(r"_|(?<=[a-z0-9])(?=[A-Z])", name) if p]
    hits = [name for p in parts if any(p.startswith(w.replace("-", "")) for w in TASK_WORDS)]
    return hits + [name for k in TASK_KEYS if k.lower() in name.lower()]


def _text_hits(text: str) -> list[str]:
    """Strings, comments and template text: a task name as a word ("dialogue" is prose, not "dialog")."""
    return [m.group(0) for m in _PROSE_RE.finditer(text)] + [k for k in TASK_KEYS if k in text]


def _py_task_names(src: str) -> tuple[list[str], int]:
    """(task names found, tokens scanned) in Python source: identifiers, string literals, comments."""
    import io
    import tokenize

    hits, n = [], 0
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        n += 1
        if tok.type == tokenize.NAME:
            hits += _ident_hits(tok.string)
        elif tok.type in (tokenize.STRING, tokenize.COMMENT):
            hits += _text_hits(tok.string)
    return hits, n


def _j2_task_names(src: str) -> tuple[list[str], int]:
    """The same for a jinja2 template: names, string literals, comments and the HTML/CSS text."""
    from jinja2 import Environment

    hits, n = [], 0
    for _, kind, value in Environment().lex(src):
        n += 1
        if kind == "name":
            hits += _ident_hits(value)
        elif kind in ("string", "comment", "data"):
            hits += _text_hits(value)
    return hits, n


def test_report_names_no_task():
    """No module of mmgpt_eval/report/ nor its template knows a task: task-specific views come from the
    tasks' hooks. The checker itself must flag the old report's code (controls), so it cannot pass by
    scanning nothing."""
    import mmgpt_eval.report as rep

    # controls: lines of the old report.py and template constructs that special-cased tasks
    for bad in (
        "def _dialog_tables(cols, pooled):\n    pass\n",
        '_DIALOG_COLS = [("n", "n", "")]\n',
        'x = _dict_table("counting accuracy by true count", tcols, accs)\n',
        'ok = any("perAnswerType" in b for b in bds)\n',
        'ok = task == "easyvqa"  # easy-VQA\n',
        "def _is_dialog(records):\n    return True\n",
    ):
        assert _py_task_names(bad)[0], bad
    assert _j2_task_names('{% if b.task == "counting" %}x{% endif %}')[0]
    assert _j2_task_names('<h3 class="dialog-turn">x</h3>')[0]
    assert _j2_task_names("{{ b.pooled_turns }}")[0]
    assert not _j2_task_names("<h2>Dialogue transcripts</h2><p>conversations side by side</p>")[0]
    assert not _py_task_names('"""Transcripts of dialogues side by side."""\ncount = 1\n')[0]

    folder = Path(rep.__file__).parent
    modules = sorted(folder.glob("*.py"))
    assert len(modules) >= 8 and (folder / "__init__.py") in modules
    found: dict[str, list[str]] = {}
    scanned = 0
    for py in modules:
        hits, n = _py_task_names(py.read_text(encoding="utf-8"))
        scanned += n
        if hits:
            found[py.name] = sorted(set(hits))
    tpl = folder / "report.html.j2"
    hits, n = _j2_task_names(tpl.read_text(encoding="utf-8"))
    scanned += n
    if hits:
        found[tpl.name] = sorted(set(hits))
    assert scanned > 3000  # really read the package
    assert not found, found
    assert not (folder.parent / "report.py").exists() and not (folder.parent / "report.html.j2").exists()


def _dialog_records(old_probe_names: bool):
    """Per-sample record fields of a 2-turn dialogue with a blank-image probe."""

    def record(i: int) -> dict:
        turns = [
            {
                "kind": "short",
                "turn_index": 0,
                "words": 2,
                "checks_pass": i % 2 == 0,
                "short_answer_match": i % 2 == 0,
                "collapsed": None,
                "truncated": False,
            },
            {"kind": "open", "turn_index": 1, "words": 12, "checks_pass": True, "collapsed": True, "truncated": i == 0},
        ]
        return {
            "references": [
                {"instruction": f"what colour? {i}", "kind": "short", "reference": "red"},
                {"instruction": "describe it", "kind": "open", "reference": None},
            ],
            "outputs": {
                "t0": {"prediction": f"red {i}"},
                "t1": {"prediction": f"a red square {i}"},
                "blank": {"prediction": f"nothing {i}"},
            },
            "metrics": {"turns": turns},
        }

    return record


def _pooled(collapse: float, old: bool) -> dict:
    """A pooled_turns breakdown as metrics/dialog.py writes it (``old``: the names before turn_)."""
    p = "" if old else "turn_"

    def summary(n: int) -> dict:
        return {
            "n": n,
            "checks_pass_rate": 50.0,
            f"{p}collapse_rate": collapse,
            f"{p}eos_rate": 25.0,
            f"{p}empty_rate": 0.0,
            f"{p}truncation_rate": 12.5,
            f"{p}template_leak_rate": 0.0,
            "words": {"mean": 7.0, "median": 7.0},
        }

    return {
        "overall": summary(8),
        "by_kind": {"short": summary(4), "open": summary(4)},
        "by_turn": {"0": summary(4), "1": summary(4)},
        "grounding": {"n": 4, "changed_blank_rate": 75.0, "changed_other_rate": None, "grounding_rate": 75.0},
    }


def test_report_task_tables_and_transcripts_from_hooks(tmp_path):
    """Runs of the counting and dialog tasks get their tasks' tables, plot and transcripts; a dialog run
    written before the pooled rates were renamed (collapse_rate ...) shows them like a new one."""
    from fakeruns import make_run

    counting = {
        "accuracy_by_true_count": {"10": 40.0, "2": 75.0, "0": 100.0},
        "n_by_true_count": {"10": 5, "2": 4, "0": 3},
        "mae_by_true_count": {"10": 1.5, "2": 0.25, "0": 0.0},
        "source": "procedural",
    }
    dlg_old = make_run(
        tmp_path / "old",
        {"checks_pass": [1.0, 0.5, 0.0, 1.0]},
        task="dialog",
        kind="continuous",
        breakdown={"pooled_turns": _pooled(12.5, old=True)},
        record=_dialog_records(True),
        label="before",
    )
    dlg_new = make_run(
        tmp_path / "new",
        {"checks_pass": [0.5, 0.5, 1.0, 1.0]},
        task="dialog",
        kind="continuous",
        breakdown={"pooled_turns": _pooled(37.5, old=False)},
        record=_dialog_records(False),
        label="after",
    )
    html = build_report([RunResults.load(dlg_new)], baseline=RunResults.load(dlg_old), **FAST)
    text = " ".join(parse(html).text)
    for title in (
        "dialogue probes per turn",
        "dialogue probes per instruction kind",
        "grounding probe (answers",
        "all turns pooled",
    ):
        assert title in text, title
    assert "12.5%" in text and "37.5%" in text  # collapse: the old key and the new one
    assert "turn_collapse_rate" in text and "collapse_rate —" not in text
    assert not re.search(r">collapse_rate<", html)  # old names are read as the new ones, not a row of their own
    assert 'id="transcripts"' in html and "conversation 0" in text
    assert "what colour? 0" in text and "red 0" in text and "a red square 0" in text
    assert "✓ checks pass" in text and "! collapsed" in text and "12 words" in text
    assert "grounding probe" in text and "same question, blank image" in text and "nothing 0" in text
    assert "baseline: before" in text and "after" in text  # --label names the runs
    assert_inert(html)

    cnt = make_run(tmp_path / "cnt", {"exact": [1.0, 0.0, 1.0]}, task="counting", breakdown=counting)
    html = build_report([RunResults.load(cnt)], **FAST)
    text = " ".join(parse(html).text)
    assert "counting accuracy by true count" in text and "counting MAE by true count (parsable answers)" in text
    assert "accuracy (%) by true count" in text and 'alt="accuracy (%) by true count"' in html  # the bar plot
    flat = " ".join(text.split())
    assert re.search(r"0 3 100% .*2 4 75% .*10 5 40%", flat)  # true counts in numeric order, n of the first run
    assert "other breakdown values" in text and "procedural" in text  # the rest, generically
    assert 'id="transcripts"' not in html


def test_report_unknown_task_is_generic(tmp_path):
    """A task whose plugin is not installed: its breakdown generically, no transcripts, no error."""
    from fakeruns import make_run

    d = make_run(
        tmp_path / "x",
        {"acc": [1.0, 0.0]},
        task="not_installed_task",
        breakdown={"accuracy_by_true_count": {"1": 50.0}, "pooled_turns": {"by_turn": {"0": {"n": 1}}}},
        record=_dialog_records(False),
    )
    html = build_report([RunResults.load(d)], **FAST)
    text = " ".join(parse(html).text)
    assert "accuracy_by_true_count" in text and "counting accuracy by true count" not in text
    assert "dialogue probes per turn" not in text and 'id="transcripts"' not in html
    assert "worst samples" in text and "p0" in text  # the gallery shows the record's prediction


def test_report_hook_errors_fall_back(tmp_path, monkeypatch):
    """A task hook that raises or returns junk: the generic view and a note, never a failed report."""
    from fakeruns import make_run

    import mmgpt_eval.report.hooks as hooks
    from mmgpt_eval.taskapi import Task
    from mmgpt_eval.taskapi.reporting import ReportHooks, ReportTables, Table, Transcript, Turn

    class BoomView(ReportHooks):
        def report_tables(self, columns):
            raise RuntimeError("hook broke")

        def transcript(self, record):
            raise RuntimeError("no")

    class JunkView(ReportHooks):
        def report_tables(self, columns):
            return ReportTables(
                tables=["x", Table("ok table", ["a", 1], [["v", None, 3], "row?"])], plots=[5], consumed="nope"
            )

        def transcript(self, record):
            return Transcript([Turn(5), Turn("t0", instruction={"x": 1}, flags=["f"])], extras=[None])

    class Boom(Task):
        name = "boom"
        view = BoomView()

    class Junk(Task):
        name = "junk"
        view = JunkView()

    monkeypatch.setattr(hooks, "task_classes", lambda: {"boom": Boom, "junk": Junk})
    bd = {"accuracy_by_answer_type": {"a": 1.0}}
    for name in ("boom", "junk"):
        d = make_run(tmp_path / name, {"acc": [1.0, 0.0]}, task=name, breakdown=bd, record=_dialog_records(False))
        html = build_report([RunResults.load(d)], **FAST)
        text = " ".join(parse(html).text)
        assert "accuracy_by_answer_type" in text  # shown generically
        if name == "boom":
            assert "task-specific tables failed (RuntimeError: hook broke)" in text and 'id="transcripts"' not in html
        else:
            assert "ok table" in text and 'id="transcripts"' in html and '{"x": 1}' in text


def _hostile_breakdowns() -> list:
    nan = float("nan")
    return [
        {},
        {"pooled_turns": 5},
        {"pooled_turns": {"by_turn": [1], "by_kind": {"open": "x"}, "overall": [1], "grounding": 3}},
        {
            "pooled_turns": {
                "by_turn": {"a": {"words": "many", "turn_collapse_rate": nan}, "1": None},
                "overall": {"collapse_rate": {"x": 1}, "n": None},
            }
        },
        {"accuracy_by_true_count": [1, 2], "n_by_true_count": "x", "mae_by_true_count": {"1": "?"}},
        {"accuracy_by_true_count": {"x": nan, "2": "7", "-1": 1e308, "": None}},
        {"accuracy_by_answer_type": {"a": {"b": 1}}, "n_by_answer_type": 3},
        {"perAnswerType": "x", "perQuestionType": {str(i): i for i in range(5000)}},
        {SCRIPT: {IMG: IMG}},
    ]


def _hostile_records() -> list:
    from mmgpt_eval.records import SampleRecord

    base = {"id": "1"}
    variants = [
        {},
        {"outputs": ["t0"]},
        {"outputs": {"t0": "x", "t1": {"prediction": 5}}},
        {"outputs": {"t0": {}}, "references": "r", "metrics": {"turns": "x"}},
        {
            "outputs": {"t0": {}, "t2": {}},
            "references": [None, 5, {"instruction": [1], "kind": None}],
            "metrics": {"turns": [None, {"checks_pass": "yes", "words": "x", "collapsed": 1}]},
        },
        {"outputs": {"t9999999999999999999": {}, "blank": None}, "references": [{}] * 3},
    ]
    return [SampleRecord.from_dict({**base, **v}) for v in variants]


def test_task_hooks_tolerate_hostile_data():
    """Every installed task's hooks, on malformed breakdowns and records: no exception, the promised types."""
    from mmgpt_eval.taskapi.reporting import Column, ReportTables, Transcript
    from mmgpt_eval.taskregistry import discover

    classes = discover()
    assert {"easyvqa", "vqav2", "okvqa", "counting", "dialog"} <= set(classes)
    bds = _hostile_breakdowns()
    for name, cls in classes.items():
        view = cls.view
        for bd in bds:
            cols = [Column("a", bd, True), Column("b", {}), Column("c", bds[-1])]
            got = view.report_tables(cols)
            assert isinstance(got, ReportTables), name
            for t in got.tables:
                assert all(isinstance(c, str) for row in t.rows for c in row), (name, t.title)
        assert isinstance(view.report_tables([]), ReportTables)
        for rec in _hostile_records():
            tr = view.transcript(rec)
            assert tr is None or isinstance(tr, Transcript), name
    # and the real views appear for well-formed data
    assert classes["vqav2"].view.report_tables([Column("a", {"perAnswerType": {"yes/no": 50.0}})]).tables
    assert classes["okvqa"].view.report_tables([Column("a", {"perQuestionType": {"what": 50.0}})]).consumed == {
        "perQuestionType"
    }


def test_report_labels_and_trend_from_trainer_metadata(tmp_path):
    """Default labels say what was evaluated (the checkpoint's name); the trend's x is the step our
    trainer writes into mmgpt_eval.json (beside PEFT adapters), else the epoch, else the position."""
    from fakeruns import make_run

    def ck(name: str, meta: dict) -> dict:
        return {"path": f"/runs/x/{name}", "format": "peft", "metadata": meta}

    runs = []
    for i, step in enumerate((300, 100, 200)):
        runs.append(
            make_run(
                tmp_path / f"out{i}",
                {"accuracy": [1.0, float(i % 2), 0.0]},
                checkpoint=ck(f"ckpt-{step}", {"mmgpt_eval": {"format": "mmgpt-eval-peft", "step": step}, "epoch": 9}),
            )
        )
    base = make_run(tmp_path / "baseline", {"accuracy": [0.0, 0.0, 1.0]})
    html = build_report([RunResults.load(d) for d in runs], baseline=RunResults.load(base), **FAST)
    text = " ".join(parse(html).text)
    assert "checkpoint step" in text and "ckpt-100 (step 100)" in text and "ckpt-300 (step 300)" in text
    assert "baseline: fake" in text  # the baseline's model spec, not its folder ("baseline")
    assert ">ckpt-300<" in html and ">out0<" not in html and "baseline: baseline" not in text
    assert "200 / 9" in text  # provenance: checkpoint step / epoch
    # epoch only: the epoch; nothing: the runs' order
    runs = [
        make_run(tmp_path / f"ep{i}", {"accuracy": [1.0, 0.0, 0.0]}, checkpoint=ck(f"e{e}", {"epoch": e}))
        for i, e in enumerate((2, 1))
    ]
    text = " ".join(parse(build_report([RunResults.load(d) for d in runs], **FAST)).text)
    assert "checkpoint epoch" in text and "e1 (epoch 1)" in text
    runs = [make_run(tmp_path / f"pos{i}", {"accuracy": [1.0, 0.0, 0.0]}, label=f"model {i}") for i in range(2)]
    text = " ".join(parse(build_report([RunResults.load(d) for d in runs], **FAST)).text)
    assert "run (position)" in text and "model 0" in text and "model 1" in text
    # explicit labels win
    text = " ".join(parse(build_report([RunResults.load(d) for d in runs], labels=["x1", "x2"], **FAST)).text)
    assert "x1" in text and "model 0" not in text
