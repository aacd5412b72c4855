"""The consistency check between a stored mean-type metric and its per-sample values
(mmgpt_eval.agreement, results.check_run, the gate): never rejects a genuine run, catches edits."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mmgpt_eval.agreement import disagreement, stored_decimals
from mmgpt_eval.errors import UserError
from mmgpt_eval.results import RunResults, check_run
from fakeruns import make_run

SIZES = (1, 7, 100, 999, 9673, 50_000, 214_354)


@pytest.mark.parametrize(
    "value,decimals",
    [
        (0.2, 1),
        (20.0, 0),
        (31.25, 2),
        (0.0, 0),
        (99.15, 2),
        (1e-05, 5),
        (0.1964, 4),
        (100.0, 0),
        (-0.5, 1),
        (12.3456, 4),
    ],
)
def test_stored_decimals(value, decimals):
    assert stored_decimals(value) == decimals


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("d", (0, 1, 2, 3, 4, 6))
def test_genuine_binary_runs_near_0_and_100_always_agree(n, d):
    """Every count of correct answers near both ends (and in the middle), stored as the tasks store it."""
    counts = {0, 1, 2, 3, 19, n // 2, n - 19, n - 3, n - 2, n - 1, n}
    for k in sorted(c for c in counts if 0 <= c <= n):
        values = [1] * k + [0] * (n - k)
        stored = round(100 * sum(values) / len(values), d)
        assert disagreement(stored, values, 100.0) is None, (n, d, k, stored)


@pytest.mark.parametrize("n", (3, 101, 9673, 214_354))
def test_genuine_continuous_runs_agree_in_any_summation_order(n):
    """VQA-style accuracies (multiples of 0.3 and 1/3 capped at 1) summed in the task's order; the check
    sums exactly in another order."""
    rng = random.Random(n)
    values = [min(1.0, rng.choice((0, 0, 0, 1, 2, 3)) * rng.choice((0.3, 1 / 3))) for _ in range(n)]
    for d in (2, 4):
        stored = round(100 * float(sum(values)) / len(values), d)
        assert disagreement(stored, values, 100.0) is None
        assert disagreement(stored, list(reversed(values)), 100.0) is None
    small = [v * 1e-3 for v in values]  # a continuous metric near 0 on scale 1
    assert disagreement(round(sum(small) / len(small), 4), small, 1.0) is None


def test_the_issue_case_base_reports_0_2():
    """19 of 9,673 correct: 0.196423 % stored as 0.2 (2 decimals) is genuine."""
    values = [1] * 19 + [0] * 9654
    assert disagreement(0.2, values, 100.0) is None
    assert disagreement(0.3, values, 100.0) == pytest.approx(0.196423, abs=1e-6)  # but an edit is caught


@pytest.mark.parametrize("n", (100, 999, 9673))
def test_one_changed_sample_or_stored_value_is_caught_at_2_decimals(n):
    """With n < 10,000 one flipped 0/1 answer moves a 2-decimal percentage by more than its last digit."""
    values = [1] * (n // 3) + [0] * (n - n // 3)
    stored = round(100 * sum(values) / n, 2)
    flipped = list(values)
    flipped[-1] = 1
    assert disagreement(stored, flipped, 100.0) is not None
    assert disagreement(round(stored + 0.02, 2), values, 100.0) is not None
    assert disagreement(round(stored - 0.02, 2), values, 100.0) is not None
    assert disagreement(stored * 100, values, 1.0) is not None  # percent where a fraction is declared
    assert disagreement(stored / 100, values, 100.0) is not None  # a fraction where percent is declared


def test_nothing_to_compare():
    assert disagreement(5.0, [], 100.0) is None
    assert disagreement(float("nan"), [1, 0], 100.0) is None
    assert disagreement(None, [1, 0], 100.0) is None  # type: ignore[arg-type]


# --------------------------------------------------------------------------- run folders
def _genuine(out: Path, correct: int, n: int, decimals: int = 2) -> Path:
    """A run whose accuracy is stored the way easyvqa stores it (x100, ``decimals`` decimals)."""
    make_run(out, {"accuracy": [1] * correct + [0] * (n - correct)})
    p = out / "results.json"
    d = json.loads(p.read_text())
    d["tasks"]["easyvqa"]["metrics"]["accuracy"] = round(100 * correct / n, decimals)
    p.write_text(json.dumps(d))
    return out


def _edit_metric(run: Path, value: float) -> None:
    p = run / "results.json"
    d = json.loads(p.read_text())
    d["tasks"]["easyvqa"]["metrics"]["accuracy"] = value
    p.write_text(json.dumps(d))


def _flip(run: Path, index: int) -> None:
    p = run / "samples" / "easyvqa.jsonl"
    lines = p.read_text().splitlines()
    rec = json.loads(lines[index + 1])
    rec["metrics"]["accuracy"] = 1 - rec["metrics"]["accuracy"]
    lines[index + 1] = json.dumps(rec)
    p.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("correct,n", [(19, 9673), (9591, 9673), (0, 500), (500, 500), (1, 3)])
def test_check_run_accepts_genuine_runs(tmp_path, correct, n):
    check_run(RunResults.load(_genuine(tmp_path / "r", correct, n)))


def test_check_run_refuses_an_edited_metric_or_log(tmp_path):
    run = _genuine(tmp_path / "r", 19, 9673)
    _edit_metric(run, 0.35)
    with pytest.raises(UserError, match=r"easyvqa/accuracy: the results report 0.35 but the per-sample values"):
        check_run(RunResults.load(run))
    run = _genuine(tmp_path / "s", 9591, 9673)  # 99.15 %
    _flip(run, 0)
    with pytest.raises(UserError, match="disagree beyond the stored precision"):
        check_run(RunResults.load(run))


def test_gate_cli_accepts_genuine_near_zero_baseline_and_refuses_an_edit(tmp_path):
    from mmgpt_eval.cli import main

    base = _genuine(tmp_path / "base", 19, 9673)
    cand = _genuine(tmp_path / "cand", 9591, 9673)
    policy = tmp_path / "gate.toml"
    policy.write_text('[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\ndirection = "higher"\nmargin = 1.0\n')
    assert main(["gate", "--baseline", str(base), "--candidate", str(cand), "--policy", str(policy)]) == 0
    _edit_metric(cand, 99.5)
    assert main(["gate", "--baseline", str(base), "--candidate", str(cand), "--policy", str(policy)]) == 2
