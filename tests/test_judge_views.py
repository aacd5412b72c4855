"""Where judgments show: the report's "Judged quality" section and the judge's notes beside each
conversation (escaped, inert in real Chromium), the gate's rules on judge metrics (pass, fail,
inconclusive, not judged, another judge, another baseline), and the DataFrames / export of judge
metrics and judgments. Judged runs are hand-made: dialog run folders (tests/fakeruns.py) with a
judge.json and judgments file written through mmgpt_eval.judge_results' own dataclasses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_checks import one_error_line
from fakeruns import make_run
from test_report import IMG, IMG_ESC, SCRIPT, SCRIPT_ESC, _dialog_records, assert_inert

from mmgpt_eval.cli import main
from mmgpt_eval.io import sha256_file
from mmgpt_eval.judge_results import JudgeResults, JudgmentLine, TaskJudgment
from mmgpt_eval.report import build_report
from mmgpt_eval.results import RunResults

N = 4
HOSTILE = f"fine answer {SCRIPT} {IMG}"
JUDGE = {"backend": "openai", "model": "judge-7b", "version": "2026-01", "templates": {"rubric": "ab" * 32}}


def dialog_run(path: Path, vals: list[float], label: str) -> Path:
    return make_run(
        path, {"checks_pass": vals}, task="dialog", kind="continuous", record=_dialog_records(False), label=label
    )


def judge_run(
    run: Path,
    base: Path | None,
    *,
    judge: dict | None = None,
    win_rate: float = 0.625,
    win_iv: tuple[float, float] = (0.55, 0.8),
    delta_iv: tuple[float, float] = (0.2, 1.8),
    rationale: str = HOSTILE,
    ids: list[str] | None = None,
) -> Path:
    """Write RUN/judge.json and RUN/judge/dialog.jsonl: rubric judgments per (item, turn), pairwise per
    item, one parse failure; returns the run folder."""
    lines: list[JudgmentLine] = []
    ids = ids or [str(i) for i in range(N)]
    for i, item in enumerate(ids):
        for turn in (0, 1):
            fail = i == 3 and turn == 1
            lines.append(
                JudgmentLine(
                    id=item,
                    mode="rubric",
                    run="candidate",
                    turn=turn,
                    repeat=0,
                    scores=None if fail else {"helpfulness": 6 + i % 3, "grounding": 5 + turn},
                    outcome=None,
                    verdicts=None,
                    failure="no score in the reply" if fail else None,
                    rationale=f"{rationale} #{i}.{turn}",
                )
            )
        if base is not None:
            lines.append(
                JudgmentLine(
                    id=item,
                    mode="rubric",
                    run="baseline",
                    turn=0,
                    repeat=0,
                    scores={"helpfulness": 3},
                    outcome=None,
                    verdicts=None,
                    failure=None,
                    rationale=f"baseline answer {i} is vague",
                )
            )
            lines.append(
                JudgmentLine(
                    id=item,
                    mode="pairwise",
                    run="candidate",
                    turn=0,
                    repeat=0,
                    scores=None,
                    outcome=("win", "win", "tie", "loss")[i],
                    verdicts=("A", "B"),
                    failure=None,
                    rationale="pairwise reasons",
                )
            )
    (run / "judge").mkdir(exist_ok=True)
    (run / "judge" / "dialog.jsonl").write_text("".join(json.dumps(x.to_dict()) + "\n" for x in lines))
    metrics: dict[str, float | None] = {
        "rubric_overall": 6.75,
        "rubric_helpfulness": 7.0,
        "rubric_grounding": 5.5,
        "parse_failure_rate": 1 / len(lines),
        "alpha_helpfulness": 0.71,
    }
    intervals = {"rubric_overall": (6.1, 7.4)}
    if base is not None:
        metrics.update(
            {"win_rate": win_rate, "position_bias": 0.25, "kappa_pairwise": 0.5, "rubric_overall_delta": 1.0}
        )
        intervals.update({"win_rate": win_iv, "rubric_overall_delta": delta_iv})
    JudgeResults(
        judge=judge or JUDGE,
        repeats=1,
        baseline={"run_dir": str(base), "label": "base"} if base is not None else None,
        cost={"calls": 13, "cached": 2, "retries": 1, "failures": 0, "prompt_tokens": 4321, "completion_tokens": 987},
        tasks={
            "dialog": TaskJudgment(
                samples_file="samples/dialog.jsonl",
                samples_sha256=sha256_file(run / "samples" / "dialog.jsonl"),
                baseline_samples_sha256=sha256_file(base / "samples" / "dialog.jsonl") if base is not None else None,
                judgments_file="judge/dialog.jsonl",
                n_items=N,
                metrics=metrics,
                intervals=intervals,
                counts={"judgments": len(lines), "parse_failures": 1, "win": 2, "tie": 1, "loss": 1},
                baseline_metrics={"rubric_overall": 5.75} if base is not None else {},
                breakdown={"short": {"rubric_overall": 7.25}, "open": {"rubric_overall": 6.25, "win_rate": 0.5}},
                notes=["judged turn by turn"],
            )
        },
        created="2026-12-08T03:00:00+00:00",
    ).write(run)
    return run


@pytest.fixture
def pair(tmp_path):
    base = dialog_run(tmp_path / "base", [1.0, 0.5, 0.0, 1.0], "base")
    cand = dialog_run(tmp_path / "cand", [0.5, 0.5, 1.0, 1.0], "cand")
    judge_run(cand, base)
    return base, cand


# ------------------------------------------------------------------------------------------ report
def test_report_judged_section_and_transcript_notes(pair):
    base, cand = pair
    html = build_report([RunResults.load(cand)], baseline=RunResults.load(base), n_resamples=200)
    assert 'id="judged"' in html and "Judged quality" in html
    sec = html[html.index('id="judged"') : html.index("</section>", html.index('id="judged"'))]
    for text in ("judge-7b", "openai", "2026-01", "ab" * 32, "1 repeat(s)", "base"):  # identity
        assert text in sec, text
    for text in ("rubric_overall", "6.75", "[6.1, 7.4]", "5.75", "+1", "[+0.2, +1.8]", "rubric_grounding"):
        assert text in sec, text
    assert "2 wins · 1 ties · 1 losses · win rate 0.625 [0.55, 0.8]" in sec
    assert "position_bias" in sec and "alpha_helpfulness" in sec and "0.71" in sec and "kappa_pairwise" in sec
    assert "by group" in sec and "7.25" in sec and "6.25" in sec
    assert "parse failures 1 (" in sec and "calls 13" in sec and "prompt tokens 4321" in sec
    # the judge's notes sit beside each answer in the transcripts, escaped
    tr = html[html.index('id="transcripts"') :]
    assert "judge rubric r0: helpfulness 6 · grounding 5" in tr
    assert "judge rubric r0: no score (no score in the reply)" in tr
    assert "judge pairwise r0: win (verdicts A / B)" in tr
    assert SCRIPT_ESC in tr and IMG_ESC in tr
    # the baseline's answers, judged beside the candidate's, show in the baseline's column
    assert "judge rubric r0: helpfulness 3" in tr and "baseline answer 0 is vague" in tr
    row = tr[tr.index("baseline answer 0 is vague") - 3000 : tr.index("baseline answer 0 is vague")]
    assert "<tr>" in row and "fine answer" not in row.rsplit("<tr>", 1)[1]  # before the candidate's cell
    assert_inert(html)
    # an unjudged run has no section
    plain = build_report([RunResults.load(base)], n_resamples=200)
    assert 'id="judged"' not in plain and "judge rubric" not in plain


@pytest.fixture(scope="module")
def real_dialog(tmp_path_factory) -> Path:
    """A real tiny-model dialog run (4 conversations), judged: the ids and turns are the task's own."""
    out = tmp_path_factory.mktemp("judged_real") / "run"
    argv = ["-q", "run", "--model", "tiny", "--tasks", "dialog", "--limit", str(N), "--no-progress"]
    assert (
        main([*argv, "--device", "cpu", "--dialog-max-new-tokens", "8", "--no-report", "--output-dir", str(out)]) == 0
    )
    ids = [json.loads(x)["id"] for x in (out / "samples" / "dialog.jsonl").read_text().splitlines()[1:]]
    assert len(ids) == N
    return judge_run(out, None, ids=ids, rationale="the answer repeats one digit")


def test_report_of_a_real_judged_dialog_run(real_dialog, tmp_path):
    out = tmp_path / "report.html"
    assert main(["-q", "report", str(real_dialog), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert 'id="judged"' in html and "judge-7b" in html and "baseline: none" in html
    tr = html[html.index('id="transcripts"') :]
    # every shown conversation's two turns carry their judgments (ids and turns match the task's own)
    n_conv = tr.count("<summary>conversation ")
    assert n_conv >= 2 and tr.count('class="judgment"') >= 2 * n_conv - 1
    assert "the answer repeats one digit #0.0" in tr and "the answer repeats one digit #0.1" in tr
    assert_inert(html)


def test_report_says_when_runs_had_different_judges(pair, tmp_path):
    base, cand = pair
    other = judge_run(
        dialog_run(tmp_path / "other", [1.0, 1.0, 1.0, 0.5], "other"),
        base,
        judge={"backend": "local", "model": "tiny-judge"},
    )
    html = build_report(
        [RunResults.load(cand), RunResults.load(other)], baseline=RunResults.load(base), n_resamples=200
    )
    assert "judged by different judges" in html and "tiny-judge" in html and "judge-7b" in html
    html = build_report([RunResults.load(cand)], baseline=RunResults.load(base), n_resamples=200)
    assert "judged by different judges" not in html


def test_report_refuses_a_stale_judge_json(pair, tmp_path, capsys, monkeypatch):
    base, cand = pair
    d = json.loads((cand / "judge.json").read_text())
    d["tasks"]["dialog"]["samples_sha256"] = "0" * 64  # the log changed after judging
    (cand / "judge.json").write_text(json.dumps(d))
    one_error_line(
        tmp_path,
        ["report", str(cand), "--baseline", str(base), "-o", str(tmp_path / "r.html")],
        capsys,
        monkeypatch,
        ["changed after it was judged", "mmgpt-eval judge"],
    )


@pytest.mark.chromium
def test_judge_rationale_inert_in_chromium(pair, tmp_path):
    from test_report_chromium import _chromium, noisy_events, opened_page

    chromium = _chromium()
    base, cand = pair
    html = build_report([RunResults.load(cand)], baseline=RunResults.load(base), n_resamples=200)
    start = html.index('<meta http-equiv="Content-Security-Policy"')  # escaping alone must protect the page
    html = html[:start] + html[html.index(">", start) + 1 :]
    page = tmp_path / "judged.html"
    page.write_text(html, encoding="utf-8")
    with opened_page(chromium, page, tmp_path / "profile") as (cdp, sid, js):
        counts = js(
            "[document.querySelectorAll('script').length, Array.from(document.querySelectorAll('*'))"
            ".filter(e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length,"
            "document.querySelectorAll('#judged table.judged-metrics tr').length,"
            "document.querySelectorAll('.judgment').length]"
        )
        text = js("document.body.innerText")
        events = list(cdp.events)
    bad = noisy_events(events)
    assert not bad, json.dumps(bad)[:2000]
    n_scripts, n_handlers, n_metric_rows, n_judgments = counts
    assert n_scripts == 0 and n_handlers == 0
    assert n_metric_rows >= 9 and n_judgments >= 8  # the section and the notes rendered
    assert f"{HOSTILE} #0.0" in text  # the payload is visible text
    assert "Judged quality" in text and "win rate 0.625" in text


# ------------------------------------------------------------------------------------------ gate
def _policy(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "gate.toml"
    p.write_text('[defaults]\nmin_samples = 4\n\n[[rule]]\ntask = "dialog"\n' + body)
    return p


def _gate(base: Path, cand: Path, policy: Path, tmp_path: Path) -> tuple[int, dict]:
    out, junit = tmp_path / "verdict.json", tmp_path / "junit.xml"
    argv = ["-q", "gate", "--baseline", str(base), "--candidate", str(cand), "--policy", str(policy)]
    rc = main([*argv, "--json", str(out), "--junit", str(junit)])
    return rc, {**json.loads(out.read_text()), "junit": junit.read_text()}


WIN = 'metric = "judge.win_rate"\ndirection = "higher"\nthreshold = 0.5\n'


@pytest.mark.parametrize(
    "win_iv, inconclusive, rc, status, note",
    [
        ((0.55, 0.8), "warn", 0, "pass", "interval above 0.5"),
        ((0.2, 0.45), "pass", 1, "regression", "interval wholly on the wrong side of 0.5"),
        ((0.4, 0.7), "warn", 0, "warn", "inconclusive (warning by policy)"),
        ((0.4, 0.7), "fail", 1, "regression", "inconclusive (fails by policy)"),
        ((0.4, 0.7), "pass", 0, "pass", "inconclusive"),
    ],
)
def test_gate_judge_threshold(tmp_path, capsys, win_iv, inconclusive, rc, status, note):
    base = dialog_run(tmp_path / "base", [1.0, 0.5, 0.0, 1.0], "base")
    cand = judge_run(dialog_run(tmp_path / "cand", [0.5, 0.5, 1.0, 1.0], "cand"), base, win_iv=win_iv)
    got_rc, v = _gate(base, cand, _policy(tmp_path, WIN + f'inconclusive = "{inconclusive}"\n'), tmp_path)
    r = v["rules"][0]
    assert (got_rc, r["status"], r["note"]) == (rc, status, note)
    assert (r["ci_low"], r["ci_high"], r["candidate"], r["n"]) == (win_iv[0], win_iv[1], 0.625, N)
    md = capsys.readouterr().out  # the Markdown summary: the rule with its interval and threshold
    assert (
        f"| dialog | judge.win\\_rate | — | 0.625 | — | \\[{win_iv[0]:g}, {win_iv[1]:g}\\] (95%) | interval \\< 0.5 |"
        in md
    )
    assert f"candidate 0.625, 95% interval [{win_iv[0]:g}, {win_iv[1]:g}], threshold 0.5" in v["junit"]
    page = build_report([RunResults.load(cand)], baseline=RunResults.load(base), gate=v, n_resamples=200)
    gate_sec = page[page.index('<section id="gate">') :]
    assert (
        "judge.win_rate" in gate_sec
        and "threshold 0.5" in gate_sec
        and f"[+{win_iv[0]:g}, +{win_iv[1]:g}] (95%)" in gate_sec
    )


@pytest.mark.parametrize(
    "delta_iv, rc, note",
    [((0.2, 1.8), 0, "improved"), ((-2.5, -1.1), 1, "worse than"), ((-1.5, 0.3), 0, "inconclusive")],
)
def test_gate_judge_delta_against_margin(tmp_path, delta_iv, rc, note):
    base = dialog_run(tmp_path / "base", [1.0, 0.5, 0.0, 1.0], "base")
    cand = judge_run(dialog_run(tmp_path / "cand", [0.5, 0.5, 1.0, 1.0], "cand"), base, delta_iv=delta_iv)
    got_rc, v = _gate(
        base, cand, _policy(tmp_path, 'metric = "judge.rubric_overall"\ndirection = "higher"\nmargin = 1.0\n'), tmp_path
    )
    r = v["rules"][0]
    assert got_rc == rc and r["note"].startswith(note)
    assert (r["baseline"], r["candidate"], r["delta"], r["margin"]) == (5.75, 6.75, 1.0, 1.0)


def test_gate_judge_refusals(tmp_path, capsys, monkeypatch):
    base = dialog_run(tmp_path / "base", [1.0, 0.5, 0.0, 1.0], "base")
    cand = dialog_run(tmp_path / "cand", [0.5, 0.5, 1.0, 1.0], "cand")
    policy = _policy(tmp_path, WIN)
    argv = ["gate", "--baseline", str(base), "--candidate", str(cand), "--policy", str(policy)]
    one_error_line(tmp_path, argv, capsys, monkeypatch, ["judge.win_rate", "was not judged", "mmgpt-eval judge"])
    judge_run(cand, base)
    judge_run(base, None, judge={"backend": "openai", "model": "another-judge"})
    one_error_line(tmp_path, argv, capsys, monkeypatch, ["another judge", "another-judge", "judge-7b"])
    (base / "judge.json").unlink()
    assert main(["-q", *argv]) == 0  # same baseline, one judge: decided
    other = dialog_run(tmp_path / "other", [0.0, 0.0, 0.0, 0.5], "other")
    argv[2] = str(other)
    one_error_line(tmp_path, argv, capsys, monkeypatch, ["judged against other baseline answers"])
    argv[2] = str(base)
    (tmp_path / "bad.toml").write_text(
        '[[rule]]\ntask = "dialog"\nmetric = "checks_pass"\ndirection = "higher"\nthreshold = 0.5\n'
    )
    argv[-1] = str(tmp_path / "bad.toml")
    one_error_line(tmp_path, argv, capsys, monkeypatch, ["threshold applies to judge metrics only"])
    policy.write_text('[[rule]]\ntask = "counting"\nmin_samples = 1\n' + WIN)
    argv[-1] = str(policy)
    one_error_line(tmp_path, argv, capsys, monkeypatch, ["'counting' was not judged"])


# ------------------------------------------------------------------------------------------ frames / export
def test_frames_judge_metrics_and_judgments(pair):
    from mmgpt_eval.frames import JUDGMENT_COLUMNS, judgments_frame, metrics_frame

    base, cand = pair
    m = metrics_frame([str(cand), str(base)])
    j = m[m["source"] == "judge"].set_index("metric")
    assert (m[m["source"] == "results"]["metric"] == "checks_pass").all()
    assert set(j.index) == {
        "judge.rubric_overall",
        "judge.rubric_helpfulness",
        "judge.rubric_grounding",
        "judge.parse_failure_rate",
        "judge.alpha_helpfulness",
        "judge.win_rate",
        "judge.position_bias",
        "judge.kappa_pairwise",
    }
    ro = j.loc["judge.rubric_overall"]
    assert (ro["value"], ro["value_ci_low"], ro["value_ci_high"], ro["baseline_value"], ro["delta"]) == (
        6.75,
        6.1,
        7.4,
        5.75,
        1.0,
    )
    assert (ro["ci_low"], ro["ci_high"], ro["n_samples"], ro["kind"], ro["run"]) == (0.2, 1.8, N, "judge", "cand")
    assert not j.loc["judge.position_bias"]["higher_is_better"] and j.loc["judge.win_rate"]["higher_is_better"]
    assert "source" not in metrics_frame(str(base)).columns  # an unjudged run: the frame as before

    f = judgments_frame(str(cand))
    assert len(f) == N * 4 and list(f.columns) == [*JUDGMENT_COLUMNS, "score_helpfulness", "score_grounding"]
    assert JUDGMENT_COLUMNS[4:9] == ["id", "mode", "answers", "turn", "repeat"]
    rub = f[(f["mode"] == "rubric") & (f["answers"] == "candidate")]
    assert rub["score_helpfulness"].tolist()[:7] == [6.0, 6.0, 7.0, 7.0, 8.0, 8.0, 6.0]
    assert rub["failure"].notna().sum() == 1 and rub["score_grounding"].isna().sum() == 1
    assert f[f["mode"] == "pairwise"]["outcome"].tolist() == ["win", "win", "tie", "loss"]
    assert json.loads(f[f["mode"] == "pairwise"]["verdicts"].iloc[0]) == ["A", "B"]
    assert len(judgments_frame(str(base))) == 0


def test_export_writes_judgments(pair, tmp_path, capsys, monkeypatch):
    import pandas as pd

    base, cand = pair
    out = tmp_path / "exp"
    assert main(["-q", "export", str(cand), "-o", str(out)]) == 0
    j = pd.read_csv(out / "judgments.csv")
    assert len(j) == N * 4 and j["rationale"].iloc[0] == f"{HOSTILE} #0.0"
    m = pd.read_csv(out / "metrics.csv")
    assert m.loc[m["metric"] == "judge.win_rate", "value"].item() == 0.625
    d = json.loads((cand / "judge.json").read_text())
    d["tasks"]["dialog"]["samples_sha256"] = "0" * 64
    (cand / "judge.json").write_text(json.dumps(d))
    one_error_line(
        tmp_path,
        ["export", str(cand), "-o", str(tmp_path / "exp2")],
        capsys,
        monkeypatch,
        ["changed after it was judged"],
    )


def test_readme_judge_rule_is_a_valid_policy():
    import re
    import tomllib

    from mmgpt_eval.gate import parse_policy

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r'```toml\n\s*(\[\[rule\]\]\n[^`]*metric = "judge\.[^`]*)```', text)
    assert block is not None, "README's gate section shows a rule on a judge metric"
    body = "\n".join(line.strip() for line in block.group(1).splitlines())
    (rule,) = parse_policy(tomllib.loads(body)).rules
    assert (rule.judge_metric, rule.threshold, rule.inconclusive) == ("win_rate", 0.5, "warn")


def test_mlflow_gets_the_judge_metrics(pair, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from mmgpt_eval.trackers import log_to_trackers, parse_targets

    base, cand = pair
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "judged")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    log_to_trackers(parse_targets(f"mlflow:file:{store}"), RunResults.load(cand), cand)
    client = MlflowClient(tracking_uri=store.as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("judged").experiment_id])
    m = run.data.metrics
    assert m["dialog/checks_pass"] == 75.0 and m["dialog/judge.win_rate"] == 0.625
    assert m["dialog/judge.rubric_overall_delta"] == 1.0 and "dialog/judge.rubric_overall" in m
    d = json.loads((cand / "judge.json").read_text())
    d["tasks"]["dialog"]["samples_sha256"] = "0" * 64  # stale: the run's own metrics still go, the judge's not
    (cand / "judge.json").write_text(json.dumps(d))
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "stale")
    log_to_trackers(parse_targets(f"mlflow:file:{store}"), RunResults.load(cand), cand)
    (run,) = client.search_runs([client.get_experiment_by_name("stale").experiment_id])
    assert run.data.metrics == {"dialog/checks_pass": 75.0}
