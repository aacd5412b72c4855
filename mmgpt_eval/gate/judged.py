"""Gate rules on judge metrics (``metric = "judge.<name>"``): decided from the candidate's judge.json
(:mod:`mmgpt_eval.judge_results`), with the interval judging stored (95%, over items and judge repeats).

* With ``threshold``: the metric's own interval ``[lo, hi]`` against it. For ``direction = "higher"``
  the rule passes when ``lo >= threshold`` (the whole interval clears it), is a regression when
  ``hi < threshold`` (wholly below) and otherwise inconclusive (the rule's ``inconclusive`` policy
  decides); ``"lower"`` mirrors it.
* Without: the paired difference ``<name>_delta`` (candidate minus baseline, both judged by the same
  judge in one judging) against the rule's margin, as for any metric: a regression when the whole
  interval of the improvement lies below ``-margin``, ``improved`` / ``within margin`` passes,
  otherwise inconclusive.

Before any rule is decided, :func:`check_judged` refuses (one :class:`UserError`) a candidate that was
not judged, a judged task missing, a baseline whose judge.json names another judge, and a candidate
whose pairwise / delta metrics were judged against other baseline answers than the gate's baseline.
The rule's ``confidence`` does not apply: the interval is the stored one (``interval_confidence`` 0.95).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import sha256_file
from ..judge_results import JudgeResults, judge_name, read_judge, same_judging
from .decision import RuleResult, Status
from .policy import GatePolicy, Rule

__all__ = ["check_judged", "judge_rule", "JUDGE_INTERVAL_CONFIDENCE"]

JUDGE_INTERVAL_CONFIDENCE = 0.95
_PAIRED = ("win_rate", "position_bias", "kappa_pairwise")  # metrics that compare with the baseline's answers


def check_judged(policy: GatePolicy, candidate: str | os.PathLike, baseline: str | os.PathLike) -> JudgeResults | None:
    """The candidate's judge.json when a rule names a judge metric (else None), checked against the
    baseline run; any mismatch is a :class:`UserError` naming the first rule it concerns."""
    rules = [r for r in policy.rules if r.judge_metric is not None]
    if not rules:
        return None
    cand = read_judge(candidate)
    first = rules[0]
    if cand is None:
        raise UserError(
            f"rule #{first.index} ({first.label}): the candidate run was not judged (no judge.json); "
            f"judge it first: mmgpt-eval judge {candidate}"
        )
    base = read_judge(baseline)
    if base is not None and not same_judging(base, cand):
        raise UserError(
            f"rule #{first.index} ({first.label}): the candidate was judged by another judge ({judge_name(cand)}) "
            f"than the baseline ({judge_name(base)}); judge both runs with the same judge"
        )
    base_dir = Path(baseline)
    if base_dir.is_file():
        base_dir = base_dir.parent
    for r in rules:
        tj = cand.tasks.get(r.task)
        if tj is None:
            raise UserError(f"rule #{r.index} ({r.label}): task {r.task!r} was not judged in the candidate run")
        name = r.judge_metric or ""
        if name in _PAIRED or r.threshold is None or name.endswith("_delta"):
            if tj.baseline_samples_sha256 is None:
                raise UserError(f"rule #{r.index} ({r.label}): the candidate was judged without a baseline")
            log = base_dir / tj.samples_file
            if not log.is_file() or sha256_file(log) != tj.baseline_samples_sha256:
                raise UserError(
                    f"rule #{r.index} ({r.label}): the candidate was judged against other baseline answers than "
                    f"{base_dir / tj.samples_file}; judge it again with this baseline"
                )
    return cand


def _inconclusive(rule: Rule) -> tuple[Status, str]:
    return {
        "pass": ("pass", "inconclusive"),
        "warn": ("warn", "inconclusive (warning by policy)"),
        "fail": ("regression", "inconclusive (fails by policy)"),
    }[rule.inconclusive]  # type: ignore[return-value]


def judge_rule(rule: Rule, judged: JudgeResults) -> RuleResult:
    """Decide one ``judge.<name>`` rule from ``judged`` (see the module docstring)."""
    name = rule.judge_metric
    if name is None:
        raise UserError(f"{rule.label}: not a judge metric")
    tj = judged.tasks.get(rule.task)
    if tj is None:
        raise UserError(f"{rule.label}: task {rule.task!r} was not judged")
    n = tj.n_items
    if n < rule.min_samples:
        raise UserError(f"{rule.label}: only {n} judged item(s); the rule requires min_samples = {rule.min_samples}")
    key = name if rule.threshold is not None else f"{name}_delta"
    value, iv = tj.metrics.get(key), tj.intervals.get(key)
    if value is None or iv is None:
        what = "a value and an interval" if rule.threshold is not None else "a paired delta and its interval"
        raise UserError(
            f"{rule.label}: judge.json has no {what} for {key!r} (add threshold = ... or judge with a baseline)"
        )
    lo, hi = iv
    inconclusive = False
    common: dict[str, Any] = dict(
        rule=rule,
        kind="judge",
        n=n,
        n_candidate=n,
        ci_low=lo,
        ci_high=hi,
        interval_confidence=JUDGE_INTERVAL_CONFIDENCE,
    )
    if rule.threshold is not None:
        t = rule.threshold
        good, bad = (lo >= t, hi < t) if rule.higher_is_better else (hi <= t, lo > t)
        side = "above" if rule.higher_is_better else "below"
        if bad:
            status: Status = "regression"
            note = f"interval wholly on the wrong side of {t:g}"
        elif good:
            status, note = "pass", f"interval {side} {t:g}"
        else:
            inconclusive = True
            status, note = _inconclusive(rule)
        return RuleResult(
            **common,
            status=status,
            note=note,
            baseline=tj.baseline_metrics.get(name),
            candidate=value,
            bound=hi if rule.higher_is_better else -lo,
            inconclusive=inconclusive,
        )
    base_value = tj.baseline_metrics.get(name)
    margin = rule.margin_for(base_value if base_value is not None else 0.0)
    ilo, ihi = (lo, hi) if rule.higher_is_better else (-hi, -lo)
    if ihi < -margin:
        status, note = "regression", "worse than the margin (95% interval)"
    elif ilo > 0:
        status, note = "pass", "improved"
    elif ilo >= -margin:
        status, note = "pass", "within margin"
    else:
        inconclusive = True
        status, note = _inconclusive(rule)
    return RuleResult(
        **common,
        status=status,
        note=note,
        n_baseline=n,
        baseline=base_value,
        candidate=tj.metrics.get(name),
        delta=value,
        bound=ihi,
        margin=margin,
        inconclusive=inconclusive,
    )
