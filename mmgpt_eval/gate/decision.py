"""The gate's decision: one :class:`RuleResult` per rule, a verdict and an exit code.

Decision rule
-------------
For each rule, orient the paired difference so that positive means *better*::

    improvement = candidate - baseline   (direction = "higher")
    improvement = baseline - candidate   (direction = "lower", e.g. MAE)

and take ``margin`` (absolute, in the metric's own units; or ``margin_relative * |baseline|``).
From the paired bootstrap distribution of the improvement (see :mod:`mmgpt_eval.stats`),
take its ``confidence``-quantile ``U``: a one-sided upper confidence bound on the improvement,
equivalently (with the sign flipped) the one-sided *lower* confidence bound on how much worse
the candidate is. Then::

    REGRESSION  iff  U < -margin

i.e. even the optimistic end of the one-sided interval says the candidate is worse than the
baseline by more than the margin: the candidate is worse than the margin *with the stated
confidence*. The burden of proof is on "regression", not on "no regression":

* a clearly worse candidate (whole interval below ``-margin``) fails;
* an identical candidate (improvement exactly 0 in every resample) passes;
* a slightly worse candidate whose interval lies inside ``(-margin, ...)`` passes;
* a noisy, slightly worse candidate whose interval straddles ``-margin`` is *inconclusive*: it
  is not proven worse than the margin, and not proven within it either. What happens then is
  the rule's ``inconclusive`` policy: ``"pass"`` (default; status ``pass`` with the note
  "inconclusive"), ``"warn"`` (status ``warn``: exit code 0, shown as a warning) or ``"fail"``
  (status ``regression``: exit code 1, noted "inconclusive (fails by policy)"). Growing the
  evaluation set (more samples) tightens the interval and makes the case rarer.

Inconclusive, precisely: with ``[L, U]`` the two-sided ``2*confidence - 1`` interval of the
improvement, ``L < -margin <= U`` -- the interval crosses (or, at ``U``, touches) ``-margin``.

Equivalently, with the two-sided ``2*confidence - 1`` interval ``[L, U]`` of the improvement
(the 90 % interval for ``confidence = 0.95``; that is why confidence must lie in (0.5, 1)),
a regression is "the whole interval lies below ``-margin``". The report shows that interval.
Passing rules carry a note: ``improved`` (``L > 0``: better with the stated confidence),
``within margin`` (``L >= -margin``: proven not worse than the margin, the classical
non-inferiority conclusion) or ``inconclusive`` (``L < -margin <= U``).

Before deciding, a rule must have at least ``min_samples`` paired samples; fewer is an error
(exit 2), because a tiny set makes every interval so wide that nothing could ever fail and a
green gate would be meaningless. Missing task/metric in either run is an error when the rule is
``required`` (the default) and a skip otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal

from ..compare import pair_ids
from ..errors import UserError
from ..stats import compare_metric
from .policy import GatePolicy, Rule
from .samples import Fetch, MetricSamples, validated_arrays

__all__ = ["RuleResult", "GateResult", "evaluate_gate", "EXIT_PASS", "EXIT_REGRESSION", "EXIT_ERROR"]

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_ERROR = 2

Status = Literal["pass", "warn", "regression", "error", "skipped"]
STATUSES: tuple[Status, ...] = ("pass", "warn", "regression", "error", "skipped")


@dataclass(frozen=True)
class RuleResult:
    """Outcome of one rule. Numbers are in the metric's reported units (after ``scale``).

    ``delta = candidate - baseline``; ``[ci_low, ci_high]`` is its two-sided
    ``2*confidence - 1`` paired-bootstrap interval; ``bound`` is the one-sided
    ``confidence`` upper bound of the *improvement* (``ci_high`` for higher-is-better,
    ``-ci_low`` for lower-is-better) and the rule is a regression iff ``bound < -margin``.
    ``inconclusive`` is True when the interval crosses the margin (then the status follows the
    rule's ``inconclusive`` policy: ``pass``, ``warn`` or ``regression``).
    Fields stay ``None`` when an error stopped the rule before they were computed.
    """

    rule: Rule
    status: Status
    message: str = ""
    note: str = ""
    kind: str | None = None
    n: int = 0
    n_baseline: int = 0
    n_candidate: int = 0
    n_only_baseline: int = 0
    n_only_candidate: int = 0
    baseline: float | None = None
    candidate: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    interval_confidence: float | None = None
    bound: float | None = None
    margin: float | None = None
    p_value: float | None = None
    test: str | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    baseline_corpus_value: float | None = None
    candidate_corpus_value: float | None = None
    inconclusive: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rule"] = self.rule.to_dict()
        d["task"], d["metric"] = self.rule.task, self.rule.metric
        d["inconclusive_action"] = self.rule.inconclusive if self.inconclusive else None
        return d


@dataclass(frozen=True)
class GateResult:
    """All rule outcomes plus the overall verdict and exit code."""

    results: tuple[RuleResult, ...]
    policy: GatePolicy
    intersect: bool = False

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def verdict(self) -> Literal["pass", "regression", "error"]:
        if self.count("error"):
            return "error"
        if self.count("regression"):
            return "regression"
        return "pass"

    @property
    def exit_code(self) -> int:
        """0 pass, 1 at least one regression, 2 at least one error (errors take precedence)."""
        return {"pass": EXIT_PASS, "regression": EXIT_REGRESSION, "error": EXIT_ERROR}[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "counts": {s: self.count(s) for s in STATUSES},
            "warnings": self.count("warn"),
            "inconclusive": sum(1 for r in self.results if r.inconclusive),
            "intersect": self.intersect,
            "policy": self.policy.to_dict(),
            "rules": [r.to_dict() for r in self.results],
        }


def _evaluate_rule(rule: Rule, fetch: Fetch, policy: GatePolicy, intersect: bool) -> RuleResult:
    label = rule.label
    got: dict[str, MetricSamples] = {}
    missing: list[str] = []
    for which in ("baseline", "candidate"):
        try:
            raw = fetch(rule.task, rule.metric, which)
        except KeyError:
            missing.append(which)
            continue
        got[which] = MetricSamples.coerce(raw, label)
    if missing:
        runs = " and ".join(f"the {w} run" for w in missing)
        msg = f"{runs} has no metric {rule.metric!r} for task {rule.task!r}"
        if rule.required:
            return RuleResult(rule, "error", message=msg + " (required rule)")
        return RuleResult(rule, "skipped", message=msg + " (rule not required)")

    base, cand = got["baseline"], got["candidate"]
    b_ids, b_vals = validated_arrays(base, label, "baseline")
    c_ids, c_vals = validated_arrays(cand, label, "candidate")
    if base.kind != cand.kind:
        raise UserError(f"{label}: metric kind differs between runs (baseline {base.kind!r}, candidate {cand.kind!r})")
    if base.scale != cand.scale:
        raise UserError(f"{label}: scale differs between runs (baseline {base.scale:g}, candidate {cand.scale:g})")

    b_index = {v: i for i, v in enumerate(b_ids)}
    c_index = {v: i for i, v in enumerate(c_ids)}
    pairing = pair_ids(b_ids, c_ids)
    only_b, only_c = pairing.only_a, pairing.only_b
    message = ""
    if only_b or only_c:
        detail = (
            f"{len(only_b)} sample id(s) only in baseline"
            + (f" (e.g. {only_b[0]!r})" if only_b else "")
            + f", {len(only_c)} only in candidate"
            + (f" (e.g. {only_c[0]!r})" if only_c else "")
        )
        if not intersect:
            raise UserError(
                f"{label}: the runs were not evaluated on the same samples: {detail}; "
                "re-run on the same set, or allow comparing on the common samples (intersect)"
            )
        message = f"compared on the {len(b_index) - len(only_b)} common samples: {detail}"
    # Canonical order (sorted ids) so the bootstrap does not depend on the runs' sample order.
    common = pairing.common
    n = len(common)
    if n < rule.min_samples:
        raise UserError(
            f"{label}: only {n} paired sample(s) to compare; the rule requires min_samples = {rule.min_samples}"
        )
    a = b_vals[[b_index[v] for v in common]]
    b = c_vals[[c_index[v] for v in common]]

    comp = compare_metric(
        a,
        b,
        base.kind,
        rule.higher_is_better,
        name=label,
        confidence=2.0 * rule.confidence - 1.0,
        n_resamples=policy.n_resamples,
        seed=policy.seed,
    )
    scale = float(base.scale)
    baseline_value, candidate_value = scale * comp.baseline, scale * comp.candidate
    delta, ci_low, ci_high = scale * comp.delta, scale * comp.ci_low, scale * comp.ci_high
    margin = rule.margin_for(baseline_value)
    # Improvement = delta oriented so that positive is better; [lo, hi] its two-sided
    # (2c - 1) interval, so hi is the one-sided c upper bound and lo the one-sided c lower bound.
    lo, hi = (ci_low, ci_high) if rule.higher_is_better else (-ci_high, -ci_low)
    inconclusive = False
    if hi < -margin:
        status: Status = "regression"
        note = f"worse than the margin with {100 * rule.confidence:.4g}% confidence"
    elif lo > 0:
        status, note = "pass", "improved"
    elif lo >= -margin:
        status, note = "pass", "within margin"
    else:  # lo < -margin <= hi: the interval crosses the margin
        inconclusive = True
        by_policy: dict[str, tuple[Status, str]] = {
            "pass": ("pass", "inconclusive"),
            "warn": ("warn", "inconclusive (warning by policy)"),
            "fail": ("regression", "inconclusive (fails by policy)"),
        }
        status, note = by_policy[rule.inconclusive]
    return RuleResult(
        rule=rule,
        status=status,
        message=message,
        note=note,
        kind=base.kind,
        n=n,
        n_baseline=len(b_ids),
        n_candidate=len(c_ids),
        n_only_baseline=len(only_b),
        n_only_candidate=len(only_c),
        baseline=baseline_value,
        candidate=candidate_value,
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        interval_confidence=comp.confidence,
        bound=hi,
        margin=margin,
        p_value=comp.p_value,
        test=comp.test,
        secondary=dict(comp.secondary),
        baseline_corpus_value=None if base.corpus_value is None else float(base.corpus_value),
        candidate_corpus_value=None if cand.corpus_value is None else float(cand.corpus_value),
        inconclusive=inconclusive,
    )


def evaluate_gate(
    policy: GatePolicy,
    fetch: Fetch,
    *,
    intersect: bool = False,
    judge_rule: Callable[[Rule], RuleResult] | None = None,
) -> GateResult:
    """Apply every rule of ``policy`` to the data ``fetch`` provides; see the module docstring.

    Each rule is evaluated independently: a :class:`UserError` (from validation here or raised
    by ``fetch``) marks that rule as an error and the others still run, so the report shows
    everything at once. With ``intersect=True`` runs whose sample ids differ are compared on
    the common ids (the counts are recorded in each :class:`RuleResult`); otherwise differing
    ids are an error. A rule on a judge metric (``judge.<name>``) is decided by ``judge_rule``
    (:func:`mmgpt_eval.gate.judged.judge_rule` bound to the candidate's judge.json); without one it
    is an error.
    """
    results: list[RuleResult] = []
    for rule in policy.rules:
        try:
            if rule.judge_metric is not None:
                if judge_rule is None:
                    raise UserError(f"{rule.label}: a judge metric, but no judge.json was given")
                results.append(judge_rule(rule))
                continue
            results.append(_evaluate_rule(rule, fetch, policy, intersect))
        except UserError as e:
            msg = str(e)
            prefix = f"{rule.label}: "  # the result already names the rule
            results.append(RuleResult(rule, "error", message=msg[len(prefix) :] if msg.startswith(prefix) else msg))
    return GateResult(results=tuple(results), policy=policy, intersect=intersect)
