"""judge.json: the typed round trip, the refusals (one UserError naming the field), and the check that
the judged per-sample logs are still the ones in the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmgpt_eval.errors import UserError
from mmgpt_eval.io import sha256_file
from mmgpt_eval.judge_results import JUDGE_FILE, JudgeResults, TaskJudgment, read_judge


def _judged(run: Path) -> JudgeResults:
    (run / "samples").mkdir(parents=True)
    (run / "judge").mkdir()
    log = run / "samples" / "dialog.jsonl"
    log.write_text('{"header": true}\n{"id": "c1"}\n')
    (run / "judge" / "dialog.jsonl").write_text('{"id": "c1"}\n')
    return JudgeResults(
        judge={"backend": "callable", "model": "scripted"},
        repeats=2,
        baseline={"run_dir": "../base", "label": "base"},
        tasks={
            "dialog": TaskJudgment(
                samples_file="samples/dialog.jsonl",
                samples_sha256=sha256_file(log),
                judgments_file="judge/dialog.jsonl",
                n_items=1,
                metrics={"win_rate": 0.75, "rubric_overall": 6.5, "alpha_helpfulness": None},
                intervals={"win_rate": (0.5, 1.0)},
                counts={"win": 1, "tie": 1, "loss": 0, "parse_failures": 0},
                breakdown={"chitchat": {"rubric_overall": 6.5}},
                notes=["a note"],
            )
        },
    )


def test_round_trip(tmp_path):
    res = _judged(tmp_path)
    res.write(tmp_path)
    back = read_judge(tmp_path)
    assert back is not None and back.to_dict() == res.to_dict()
    assert back.tasks["dialog"].intervals["win_rate"] == (0.5, 1.0)
    assert read_judge(tmp_path / "elsewhere") is None  # a run that was not judged


def test_a_changed_log_is_refused(tmp_path):
    _judged(tmp_path).write(tmp_path)
    with (tmp_path / "samples" / "dialog.jsonl").open("a") as f:
        f.write('{"id": "c2"}\n')
    with pytest.raises(UserError, match="changed after it was judged.*mmgpt-eval judge"):
        read_judge(tmp_path)
    assert read_judge(tmp_path, check_logs=False) is not None


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.update(schema_version=9), "schema_version 9"),
        (lambda d: d.update(repeats=0), "repeats"),
        (lambda d: d["cost"].update(calls=-1), "cost"),
        (lambda d: d["tasks"]["dialog"]["metrics"].update(win_rate="high"), "tasks.dialog.metrics.win_rate"),
        (lambda d: d["tasks"]["dialog"]["intervals"].update(win_rate=[1, 0]), "low is above high"),
        (lambda d: d["tasks"]["dialog"].update(samples_file="../other.jsonl"), "inside the run folder"),
        (lambda d: d["tasks"]["dialog"]["counts"].update(win=True), "counts"),
        (lambda d: d.update(baseline={"run_dir": 3}), "baseline"),
    ],
)
def test_bad_fields_are_one_line_naming_the_field(tmp_path, edit, words):
    _judged(tmp_path).write(tmp_path)
    d = json.loads((tmp_path / JUDGE_FILE).read_text())
    edit(d)
    (tmp_path / JUDGE_FILE).write_text(json.dumps(d))
    with pytest.raises(UserError) as e:
        read_judge(tmp_path)
    assert words in str(e.value) and JUDGE_FILE in str(e.value) and "\n" not in str(e.value)


def test_judgment_lines_round_trip_and_bad_lines_name_file_and_line(tmp_path):
    from mmgpt_eval.judge_results import JudgmentLine, iter_judgments

    res = _judged(tmp_path)
    lines = [
        JudgmentLine("c1", "rubric", "candidate", 0, 0, {"helpfulness": 7}, None, None, None, "ok\nHelpfulness: 7"),
        JudgmentLine("c1", "pairwise", "candidate", 1, 1, None, "tie", ("A", None), None, "A"),
    ]
    (tmp_path / "judge" / "dialog.jsonl").write_text("".join(json.dumps(x.to_dict()) + "\n" for x in lines))
    res.write(tmp_path)
    back = read_judge(tmp_path)
    assert list(iter_judgments(back, "dialog")) == lines
    (tmp_path / "judge" / "dialog.jsonl").write_text(json.dumps({**lines[0].to_dict(), "mode": "vibes"}) + "\n")
    with pytest.raises(UserError, match=r"judge/dialog.jsonl:1: judgment mode must be one of"):
        list(iter_judgments(back, "dialog"))


def test_same_judging_compares_the_judge_the_shared_templates_and_the_repeats(tmp_path):
    import dataclasses

    from mmgpt_eval.judge_results import judge_name, same_judging

    a = _judged(tmp_path)
    a.judge = {
        "backend": "openai",
        "model": "m",
        "version": "v1",
        "templates": {"rubric-v1": "aa", "pairwise-v1": "bb"},
    }
    b = dataclasses.replace(a, judge={**a.judge, "templates": {"rubric-v1": "aa", "grade-v1": "cc"}})
    assert same_judging(a, b)  # other tasks used other templates too: still the same judging
    assert not same_judging(a, dataclasses.replace(a, judge={**a.judge, "templates": {"rubric-v1": "zz"}}))
    assert not same_judging(a, dataclasses.replace(a, judge={**a.judge, "model": "m2"}))
    assert not same_judging(a, dataclasses.replace(a, repeats=3))
    assert judge_name(a) == "openai m v1"
