"""CI regression gate: did the candidate run get worse than the baseline run, beyond noise?

The gate compares two runs (a *baseline*, e.g. the last released checkpoint, and a
*candidate*, e.g. a new LoRA checkpoint) that were evaluated on the same samples, one rule per
``(task, metric)`` from a policy file, and ends with an exit code for CI:
``0`` pass, ``1`` at least one regression, ``2`` an error (bad policy, missing required
metric, too few samples, mismatched sample ids, bad values). Errors win over regressions: a
gate that could not check everything must not look like a plain regression or a pass.

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
* a noisy, slightly worse candidate whose interval straddles ``-margin`` passes: it is *not
  proven* worse than the margin. The result notes this as "inconclusive" so a reviewer can
  still see it. Growing the evaluation set (more samples) tightens the interval.

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

Policy file (TOML)::

    [defaults]                 # all optional; built-in values in brackets
    confidence = 0.95          # one-sided confidence [0.95], in (0.5, 1)
    min_samples = 50           # [50]
    margin = 1.0               # absolute, metric units [0.0]; or margin_relative (not both)
    required = true            # [true]
    n_resamples = 10000        # bootstrap resamples [10000], >= 100
    seed = 0                   # bootstrap seed [0]

    [[rule]]
    task = "easyvqa"
    metric = "accuracy"
    direction = "higher"        # or "lower"; required
    margin = 1.0                # absolute ... or
    # margin_relative = 0.02    # ... relative to the baseline value; at most one of the two
    confidence = 0.95
    min_samples = 100
    required = true

A rule without either margin takes the defaults' margin; exactly one kind of margin applies.

Data interface
--------------
:func:`evaluate_gate` takes a callable ``fetch(task, metric, which)`` with ``which`` in
``("baseline", "candidate")`` that returns a :class:`MetricSamples` (or the plain tuple
``(ids, values, kind, corpus_value)``) and raises ``KeyError`` when that run has no such
task/metric. Malformed data should be reported by raising :class:`UserError`; it becomes an
error for that rule (other rules are still evaluated). Other exceptions propagate.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import UserError
from .io import read_toml
from .stats import KINDS, compare_metric

__all__ = [
    "Rule",
    "GatePolicy",
    "MetricSamples",
    "RuleResult",
    "GateResult",
    "Fetch",
    "FetchResult",
    "load_policy",
    "parse_policy",
    "evaluate_gate",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "EXIT_ERROR",
]

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_ERROR = 2

Direction = Literal["higher", "lower"]
Which = Literal["baseline", "candidate"]
Status = Literal["pass", "regression", "error", "skipped"]

BUILTIN_DEFAULTS: dict[str, Any] = {
    "confidence": 0.95,
    "min_samples": 50,
    "margin": 0.0,
    "required": True,
    "n_resamples": 10000,
    "seed": 0,
}
_TOP_KEYS = ("defaults", "rule")
_DEFAULT_KEYS = ("confidence", "min_samples", "margin", "margin_relative", "required", "n_resamples", "seed")
_RULE_KEYS = ("task", "metric", "direction", "margin", "margin_relative", "confidence", "min_samples", "required")
_MIN_RESAMPLES = 100


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One gate rule, with every default already applied.

    Exactly one of ``margin`` (absolute) and ``margin_relative`` is set. ``index`` is the
    rule's 1-based position among the ``[[rule]]`` tables of the policy file.
    """

    index: int
    task: str
    metric: str
    direction: Direction
    confidence: float
    min_samples: int
    required: bool
    margin: float | None = None
    margin_relative: float | None = None

    @property
    def label(self) -> str:
        return f"{self.task}/{self.metric}"

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def margin_for(self, baseline_value: float) -> float:
        """The absolute margin in metric units (relative margins scale ``|baseline_value|``)."""
        if self.margin is not None:
            return self.margin
        assert self.margin_relative is not None
        return self.margin_relative * abs(baseline_value)

    def describe_margin(self) -> str:
        if self.margin is not None:
            return f"{_fmt(self.margin)}"
        return f"{_fmt(100.0 * (self.margin_relative or 0.0))}% of baseline"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GatePolicy:
    """A parsed policy file: the rules plus the bootstrap settings shared by all of them."""

    rules: tuple[Rule, ...]
    n_resamples: int = 10000
    seed: int = 0
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "rules": [r.to_dict() for r in self.rules],
        }


def load_policy(path: str | os.PathLike) -> GatePolicy:
    """Read and validate a policy TOML file; every problem is a :class:`UserError` naming it."""
    data = read_toml(path)  # missing file / malformed TOML -> UserError with the path
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:  # pragma: no cover - read_toml just read it
        text = ""
    return parse_policy(data, source=os.fspath(path), text=text)


def _header_lines(text: str | None, pattern: str) -> list[int]:
    """1-based line numbers of TOML table headers matching ``pattern`` (best effort)."""
    if not text:
        return []
    rx = re.compile(pattern)
    return [i for i, line in enumerate(text.splitlines(), start=1) if rx.match(line)]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Section:
    """Validation context for one table: turns problems into UserErrors naming file and table."""

    def __init__(self, source: str | None, where: str, line: int | None):
        self.source, self.where, self.line = source, where, line

    def error(self, message: str) -> UserError:
        return UserError(f"{self.where}: {message}", self.source, self.line)

    def check_keys(self, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
        unknown = sorted(k for k in table if k not in allowed)
        if unknown:
            raise self.error(
                f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"(allowed: {', '.join(allowed)})"
            )

    def confidence(self, v: Any) -> float:
        if not _is_number(v) or not (0.5 < float(v) < 1.0):
            raise self.error(f"confidence must be a number strictly between 0.5 and 1 (e.g. 0.95), got {v!r}")
        return float(v)

    def margin(self, key: str, v: Any) -> float:
        if not _is_number(v) or not math.isfinite(float(v)) or float(v) < 0:
            raise self.error(f"{key} must be a non-negative number, got {v!r}")
        return float(v)

    def positive_int(self, key: str, v: Any, minimum: int = 1) -> int:
        if not _is_int(v) or v < minimum:
            raise self.error(f"{key} must be an integer >= {minimum}, got {v!r}")
        return int(v)

    def boolean(self, key: str, v: Any) -> bool:
        if not isinstance(v, bool):
            raise self.error(f"{key} must be true or false, got {v!r}")
        return v

    def margins(self, table: Mapping[str, Any]) -> tuple[float | None, float | None] | None:
        """``(margin, margin_relative)`` if the table sets one of them, else None."""
        has_abs, has_rel = "margin" in table, "margin_relative" in table
        if has_abs and has_rel:
            raise self.error("both margin and margin_relative are set; use exactly one")
        if has_abs:
            return self.margin("margin", table["margin"]), None
        if has_rel:
            return None, self.margin("margin_relative", table["margin_relative"])
        return None


def parse_policy(data: Mapping[str, Any], source: str | None = None, *, text: str | None = None) -> GatePolicy:
    """Validate a parsed policy mapping (as from ``tomllib``) into a :class:`GatePolicy`.

    ``source`` names the file in error messages; ``text`` (the raw TOML) lets errors point at
    the line of the offending ``[[rule]]`` header.
    """
    top = _Section(source, "policy", None)
    if not isinstance(data, Mapping):
        raise top.error("expected a TOML table at the top level")
    top.check_keys(data, _TOP_KEYS)

    default_lines = _header_lines(text, r"^\s*\[\s*defaults\s*\]")
    dsec = _Section(source, "[defaults]", default_lines[0] if default_lines else None)
    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, Mapping):
        raise dsec.error("must be a table")
    dsec.check_keys(raw_defaults, _DEFAULT_KEYS)
    d_conf = dsec.confidence(raw_defaults.get("confidence", BUILTIN_DEFAULTS["confidence"]))
    d_min = dsec.positive_int("min_samples", raw_defaults.get("min_samples", BUILTIN_DEFAULTS["min_samples"]))
    d_req = dsec.boolean("required", raw_defaults.get("required", BUILTIN_DEFAULTS["required"]))
    n_resamples = dsec.positive_int(
        "n_resamples", raw_defaults.get("n_resamples", BUILTIN_DEFAULTS["n_resamples"]), _MIN_RESAMPLES
    )
    seed = dsec.positive_int("seed", raw_defaults.get("seed", BUILTIN_DEFAULTS["seed"]), 0)
    d_margins = dsec.margins(raw_defaults) or (float(BUILTIN_DEFAULTS["margin"]), None)

    raw_rules = data.get("rule")
    if raw_rules is None:
        raise top.error("no [[rule]] tables; a gate needs at least one rule")
    if not isinstance(raw_rules, list) or not all(isinstance(r, Mapping) for r in raw_rules):
        raise top.error("'rule' must be an array of tables, written as [[rule]] sections")
    if not raw_rules:
        raise top.error("no [[rule]] tables; a gate needs at least one rule")

    rule_lines = _header_lines(text, r"^\s*\[\[\s*rule\s*\]\]")
    if len(rule_lines) != len(raw_rules):  # e.g. inline-table syntax: no reliable line numbers
        rule_lines = []
    rules: list[Rule] = []
    seen: dict[tuple[str, str], int] = {}
    for i, raw in enumerate(raw_rules, start=1):
        name = ""
        if isinstance(raw.get("task"), str) and isinstance(raw.get("metric"), str):
            name = f" ({raw['task']}/{raw['metric']})"
        sec = _Section(source, f"[[rule]] #{i}{name}", rule_lines[i - 1] if rule_lines else None)
        sec.check_keys(raw, _RULE_KEYS)
        for key in ("task", "metric", "direction"):
            if key not in raw:
                raise sec.error(f"missing required key {key!r}")
        task, metric, direction = raw["task"], raw["metric"], raw["direction"]
        for key, v in (("task", task), ("metric", metric)):
            if not isinstance(v, str) or not v.strip():
                raise sec.error(f"{key} must be a non-empty string, got {v!r}")
        if direction not in ("higher", "lower"):
            raise sec.error(f"direction must be \"higher\" or \"lower\", got {direction!r}")
        margin, margin_rel = sec.margins(raw) or d_margins
        key = (task, metric)
        if key in seen:
            raise sec.error(f"duplicate rule for {task}/{metric} (already rule #{seen[key]})")
        seen[key] = i
        rules.append(
            Rule(
                index=i,
                task=task,
                metric=metric,
                direction=direction,
                confidence=sec.confidence(raw["confidence"]) if "confidence" in raw else d_conf,
                min_samples=sec.positive_int("min_samples", raw["min_samples"]) if "min_samples" in raw else d_min,
                required=sec.boolean("required", raw["required"]) if "required" in raw else d_req,
                margin=margin,
                margin_relative=margin_rel,
            )
        )
    return GatePolicy(rules=tuple(rules), n_resamples=n_resamples, seed=seed, source=source)


# --------------------------------------------------------------------------------------------
# Data interface
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSamples:
    """Per-sample values of one metric in one run, as returned by ``fetch``.

    ``ids``: one id (``str`` or ``int``) per sample, unique; ``values[i]`` belongs to
    ``ids[i]``. ``kind``: ``"binary"``, ``"continuous"`` or ``"corpus"`` (see
    :mod:`mmgpt_eval.stats`). ``corpus_value``: the metric as the run reports it, optional;
    when given it must agree (within 1 %) with ``scale * mean(values)``, a cheap check
    against unit mix-ups (accuracy as a fraction vs percent) and wrong files. ``scale``
    converts the per-sample mean into the reported units (100 for an accuracy reported in
    percent from 0/1 per-sample values); margins are in those reported units.
    """

    ids: Sequence[str | int]
    values: Sequence[float] | np.ndarray
    kind: str
    corpus_value: float | None = None
    scale: float = 1.0

    @classmethod
    def coerce(cls, obj: Any, label: str) -> "MetricSamples":
        if isinstance(obj, MetricSamples):
            return obj
        if isinstance(obj, tuple) and len(obj) == 4:
            return cls(*obj)
        raise UserError(f"{label}: fetch returned {type(obj).__name__}; expected MetricSamples or (ids, values, kind, corpus_value)")


#: What ``fetch`` returns: a :class:`MetricSamples` or the tuple ``(ids, values, kind, corpus_value)``.
FetchResult = Union[MetricSamples, Tuple[Sequence[Union[str, int]], Sequence[float], str, Optional[float]]]
#: ``fetch(task, metric, which) -> FetchResult`` with ``which`` in ("baseline", "candidate");
#: raises ``KeyError`` when that run lacks the task/metric.
Fetch = Callable[[str, str, Which], FetchResult]


def _validated_arrays(s: MetricSamples, label: str, which: str) -> tuple[list[str | int], np.ndarray]:
    ids = list(s.ids)
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, (str, int, np.integer)):
            raise UserError(f"{label}: {which} sample ids must be strings or integers, got {v!r}")
    ids = [int(v) if isinstance(v, np.integer) else v for v in ids]
    try:
        values = np.asarray(s.values, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{label}: {which} values are not numbers") from None
    if values.ndim != 1 or values.size != len(ids):
        raise UserError(f"{label}: {which} has {len(ids)} ids but {values.size} values")
    seen: set[str | int] = set()
    for v in ids:
        if v in seen:
            raise UserError(f"{label}: {which} has duplicate sample id {v!r}")
        seen.add(v)
    if s.kind not in KINDS:
        raise UserError(f"{label}: {which} has unknown metric kind {s.kind!r} (expected one of {', '.join(KINDS)})")
    if not (_is_real(s.scale) and math.isfinite(s.scale) and s.scale > 0):
        raise UserError(f"{label}: {which} scale must be a positive number, got {s.scale!r}")
    if not np.all(np.isfinite(values)):
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise UserError(f"{label}: {which} value for sample {ids[i]!r} is {values[i]} (must be finite)")
    if s.corpus_value is not None and values.size:
        cv = s.corpus_value
        if not _is_real(cv) or not math.isfinite(cv):
            raise UserError(f"{label}: {which} corpus value must be a finite number, got {cv!r}")
        implied = s.scale * float(values.mean())
        if abs(implied - cv) > 1e-2 * max(abs(cv), abs(implied)) + 1e-9:
            raise UserError(
                f"{label}: {which} reports {cv:g} but its per-sample values average to {implied:g} "
                f"(scale {s.scale:g}); the gate needs a metric that is the mean of its per-sample values "
                "(check the units/scale and that ids and values come from the same run)"
            )
    return ids, values


def _is_real(v: Any) -> bool:
    """A real number, numpy scalars included, but not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _sort_key(v: str | int) -> tuple[int, Any]:
    return (0, v) if isinstance(v, int) else (1, v)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleResult:
    """Outcome of one rule. Numbers are in the metric's reported units (after ``scale``).

    ``delta = candidate - baseline``; ``[ci_low, ci_high]`` is its two-sided
    ``2*confidence - 1`` paired-bootstrap interval; ``bound`` is the one-sided
    ``confidence`` upper bound of the *improvement* (``ci_high`` for higher-is-better,
    ``-ci_low`` for lower-is-better) and the rule is a regression iff ``bound < -margin``.
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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rule"] = self.rule.to_dict()
        d["task"], d["metric"] = self.rule.task, self.rule.metric
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
            "counts": {s: self.count(s) for s in ("pass", "regression", "error", "skipped")},
            "intersect": self.intersect,
            "policy": self.policy.to_dict(),
            "rules": [r.to_dict() for r in self.results],
        }

    # ---------------------------------------------------------------- Markdown (PR comment)

    def _summary_line(self) -> str:
        n = len(self.results)
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("pass", "regression", "error", "skipped") if self.count(s))
        head = {
            "pass": "✅ **Gate: PASS** — no regression",
            "regression": "❌ **Gate: REGRESSION** — the candidate is worse than the margin",
            "error": "⚠️ **Gate: ERROR** — the gate could not check every rule",
        }[self.verdict]
        return f"{head} ({n} rule{'s' if n != 1 else ''}: {counts}; exit code {self.exit_code})"

    def to_markdown(self) -> str:
        """A PR-comment-ready summary: verdict line, one table row per rule, then details."""
        lines = [f"### {self._summary_line()}", ""]
        lines.append("| Task | Metric | Baseline | Candidate | Δ (cand − base) | CI of Δ | Regression if | Verdict |")
        lines.append("|---|---|---:|---:|---:|---|---|---|")
        icons = {"pass": "✅ pass", "regression": "❌ regression", "error": "⚠️ error", "skipped": "⏭️ skipped"}
        for r in self.results:
            rule = r.rule
            if r.delta is not None and r.margin is not None:
                ci = f"[{_fmt(r.ci_low, signed=True)}, {_fmt(r.ci_high, signed=True)}] ({_pct(r.interval_confidence)})"
                threshold = f"Δ < −{_fmt(r.margin)}" if rule.higher_is_better else f"Δ > +{_fmt(r.margin)}"
                if rule.margin_relative is not None:
                    threshold += f" ({_fmt(100 * rule.margin_relative)}%)"
                cells = [_fmt(r.baseline), _fmt(r.candidate), _fmt(r.delta, signed=True), ci, threshold]
            else:
                cells = ["—"] * 5
            verdict = icons[r.status] + (f" ({r.note})" if r.note else "")
            row = [rule.task, rule.metric, *cells, verdict]
            lines.append("| " + " | ".join(_md(c) for c in row) + " |")
        details = [r for r in self.results if r.message]
        if details:
            lines.append("")
            for r in details:
                lines.append(f"- **{_md(r.rule.label)}** ({r.status}): {_md(r.message)}")
        lines.append("")
        lines.append(
            _md(
                "A rule fails only when the candidate is worse than the baseline by more than its margin "
                "with the rule's one-sided confidence, i.e. the whole CI of Δ lies beyond the margin on the "
                "worse side (paired bootstrap over the same samples, "
                f"{self.policy.n_resamples} resamples, seed {self.policy.seed}; the CI shown is the two-sided "
                "2·confidence − 1 interval). \"inconclusive\" = not proven worse, but not proven within the "
                "margin either; more samples would settle it."
            )
        )
        return "\n".join(lines) + "\n"

    # ---------------------------------------------------------------- JUnit XML

    def to_junit_xml(self) -> str:
        """JUnit XML: one ``<testsuite>``, one ``<testcase>`` per rule.

        A regression is a ``<failure>``, an error an ``<error>``, a skipped optional rule
        ``<skipped>``. All text goes through ElementTree (which escapes markup) after removing
        characters XML 1.0 cannot represent at all.
        """
        suite = ET.Element(
            "testsuite",
            {
                "name": "mmgpt-eval gate",
                "tests": str(len(self.results)),
                "failures": str(self.count("regression")),
                "errors": str(self.count("error")),
                "skipped": str(self.count("skipped")),
                "time": "0",
            },
        )
        props = ET.SubElement(suite, "properties")
        for k, v in (
            ("verdict", self.verdict),
            ("exit_code", str(self.exit_code)),
            ("n_resamples", str(self.policy.n_resamples)),
            ("seed", str(self.policy.seed)),
            ("policy", self.policy.source or ""),
        ):
            ET.SubElement(props, "property", {"name": k, "value": _xml(v)})
        for r in self.results:
            case = ET.SubElement(
                suite, "testcase", {"classname": _xml(f"gate.{r.rule.task}"), "name": _xml(r.rule.label), "time": "0"}
            )
            summary = _xml(_plain_summary(r))
            if r.status == "regression":
                el = ET.SubElement(case, "failure", {"type": "regression", "message": summary})
                el.text = summary
            elif r.status == "error":
                el = ET.SubElement(case, "error", {"type": "error", "message": _xml(r.message)})
                el.text = _xml(r.message)
            elif r.status == "skipped":
                ET.SubElement(case, "skipped", {"message": _xml(r.message)})
            ET.SubElement(case, "system-out").text = summary
        ET.indent(suite)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _plain_summary(r: RuleResult) -> str:
    """One line of plain text (ASCII signs) for JUnit messages."""
    if r.delta is None:
        return f"{r.rule.label}: {r.status}" + (f": {r.message}" if r.message else "")

    def f(x: float | None, signed: bool = False) -> str:
        return _fmt(x, signed, ascii_only=True)

    worse = "below -" if r.rule.higher_is_better else "above +"
    s = (
        f"{r.rule.label}: {r.status}" + (f" ({r.note})" if r.note else "")
        + f"; baseline {f(r.baseline)}, candidate {f(r.candidate)}, delta {f(r.delta, True)}, "
        f"{_pct(r.interval_confidence)} CI [{f(r.ci_low, True)}, {f(r.ci_high, True)}], "
        f"margin {f(r.margin)} (regression if the whole CI is {worse}{f(r.margin)}), n={r.n}, "
        f"{r.test} p={f(r.p_value)}"
    )
    if r.message:
        s += f"; {r.message}"
    return s


def _fmt(x: float | None, signed: bool = False, *, ascii_only: bool = False) -> str:
    """4 significant digits; ``signed`` adds "+" to positive values; zero is plain "0".

    A leading minus becomes the typographic "−" unless ``ascii_only`` (plain-text outputs).
    """
    if x is None:
        return "-" if ascii_only else "—"
    if x == 0:
        return "0"
    s = f"{x:+.4g}" if signed else f"{x:.4g}"
    if s.startswith("-") and not ascii_only:
        s = "−" + s[1:]
    return s


def _pct(c: float | None) -> str:
    return "—" if c is None else f"{100 * c:.4g}%"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(s: str) -> str:
    """Make arbitrary text safe inside a Markdown table cell (one line, markup escaped)."""
    s = " ".join(str(s).split())
    return _MD_SPECIAL.sub(r"\\\1", s.replace("&", "&amp;"))


_XML_ILLEGAL = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(s: str) -> str:
    """Replace characters that XML 1.0 forbids even escaped (control chars, lone surrogates)."""
    return _XML_ILLEGAL.sub("\ufffd", str(s))


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


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
    b_ids, b_vals = _validated_arrays(base, label, "baseline")
    c_ids, c_vals = _validated_arrays(cand, label, "candidate")
    if base.kind != cand.kind:
        raise UserError(f"{label}: metric kind differs between runs (baseline {base.kind!r}, candidate {cand.kind!r})")
    if base.scale != cand.scale:
        raise UserError(f"{label}: scale differs between runs (baseline {base.scale:g}, candidate {cand.scale:g})")

    b_index = {v: i for i, v in enumerate(b_ids)}
    c_index = {v: i for i, v in enumerate(c_ids)}
    only_b = [v for v in b_ids if v not in c_index]
    only_c = [v for v in c_ids if v not in b_index]
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
    common = sorted((v for v in b_ids if v in c_index), key=_sort_key)
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
    if hi < -margin:
        status: Status = "regression"
        note = f"worse than the margin with {_pct(rule.confidence)} confidence"
    else:
        status = "pass"
        if lo > 0:
            note = "improved"
        elif lo >= -margin:
            note = "within margin"
        else:
            note = "inconclusive"
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
    )


def evaluate_gate(
    policy: GatePolicy,
    fetch: Fetch,
    *,
    intersect: bool = False,
) -> GateResult:
    """Apply every rule of ``policy`` to the data ``fetch`` provides; see the module docstring.

    Each rule is evaluated independently: a :class:`UserError` (from validation here or raised
    by ``fetch``) marks that rule as an error and the others still run, so the report shows
    everything at once. With ``intersect=True`` runs whose sample ids differ are compared on
    the common ids (the counts are recorded in each :class:`RuleResult`); otherwise differing
    ids are an error.
    """
    results: list[RuleResult] = []
    for rule in policy.rules:
        try:
            results.append(_evaluate_rule(rule, fetch, policy, intersect))
        except UserError as e:
            msg = str(e)
            prefix = f"{rule.label}: "  # the result already names the rule
            results.append(RuleResult(rule, "error", message=msg[len(prefix) :] if msg.startswith(prefix) else msg))
    return GateResult(results=tuple(results), policy=policy, intersect=intersect)
