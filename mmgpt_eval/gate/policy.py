"""The gate's policy file: one rule per ``(task, metric)``, parsed and validated.

Policy file (TOML)::

    [defaults]                 # all optional; built-in values in brackets
    confidence = 0.95          # one-sided confidence [0.95], in (0.5, 1)
    min_samples = 50           # [50]
    margin = 1.0               # absolute, metric units [0.0]; or margin_relative (not both)
    required = true            # [true]
    n_resamples = 10000        # bootstrap resamples [10000], >= 100
    seed = 0                   # bootstrap seed [0]
    inconclusive = "pass"      # what an inconclusive rule does: "pass" | "warn" | "fail" ["pass"]

    [[rule]]
    task = "my_task"
    metric = "accuracy"
    direction = "higher"        # or "lower"; required
    margin = 1.0                # absolute ... or
    # margin_relative = 0.02    # ... relative to the baseline value; at most one of the two
    confidence = 0.95
    min_samples = 100
    required = true
    inconclusive = "warn"       # overrides [defaults]

    [[rule]]                    # a rule on a judge metric (judge.json, see mmgpt_eval.judge_results)
    task = "my_chat_task"
    metric = "judge.win_rate"   # "judge." + a metric name of judge.json
    direction = "higher"
    threshold = 0.5             # the metric's 95% interval must clear it (see gate.judged)
    min_samples = 20            # judged items

A rule is *inconclusive* when the interval of its improvement crosses the margin: not proven worse
than the margin, not proven within it either (see :mod:`.decision`). ``inconclusive`` says what such a
rule does: ``"pass"`` (the default, the behaviour before the key existed), ``"warn"`` (exit code still
0, the rule shows a warning) or ``"fail"`` (the rule counts as a regression, exit code 1).

A rule without either margin takes the defaults' margin; exactly one kind of margin applies.
Every problem in the file is a :class:`UserError` naming the file, the table and, where it can
be found, the line of the table's header.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from ..errors import UserError
from ..io import read_toml

__all__ = ["Rule", "GatePolicy", "load_policy", "parse_policy", "BUILTIN_DEFAULTS", "INCONCLUSIVE_ACTIONS"]

Direction = Literal["higher", "lower"]
InconclusiveAction = Literal["pass", "warn", "fail"]
INCONCLUSIVE_ACTIONS: tuple[str, ...] = ("pass", "warn", "fail")

BUILTIN_DEFAULTS: dict[str, Any] = {
    "confidence": 0.95,
    "min_samples": 50,
    "margin": 0.0,
    "required": True,
    "n_resamples": 10000,
    "seed": 0,
    "inconclusive": "pass",
}
_TOP_KEYS = ("defaults", "rule")
_DEFAULT_KEYS = (
    "confidence",
    "min_samples",
    "margin",
    "margin_relative",
    "required",
    "n_resamples",
    "seed",
    "inconclusive",
)
_RULE_KEYS = (
    "task",
    "metric",
    "direction",
    "margin",
    "margin_relative",
    "confidence",
    "min_samples",
    "required",
    "inconclusive",
    "threshold",
)
JUDGE_PREFIX = "judge."
_MIN_RESAMPLES = 100


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
    inconclusive: InconclusiveAction = "pass"
    threshold: float | None = None

    @property
    def judge_metric(self) -> str | None:
        """The judge.json metric a ``judge.<name>`` rule names, else None (a metric of results.json)."""
        return self.metric[len(JUDGE_PREFIX) :] if self.metric.startswith(JUDGE_PREFIX) else None

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

    def inconclusive(self, v: Any) -> str:
        if v not in INCONCLUSIVE_ACTIONS:
            raise self.error(f'inconclusive must be "pass", "warn" or "fail", got {v!r}')
        return str(v)

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
    d_inc = dsec.inconclusive(raw_defaults.get("inconclusive", BUILTIN_DEFAULTS["inconclusive"]))
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
            raise sec.error(f'direction must be "higher" or "lower", got {direction!r}')
        margin, margin_rel = sec.margins(raw) or d_margins
        threshold = None
        if "threshold" in raw:
            if not metric.startswith(JUDGE_PREFIX):
                raise sec.error(f"threshold applies to judge metrics only ({JUDGE_PREFIX}<name>), not {metric!r}")
            t = raw["threshold"]
            if not _is_number(t) or not math.isfinite(float(t)):
                raise sec.error(f"threshold must be a finite number, got {t!r}")
            threshold = float(t)
        if metric.startswith(JUDGE_PREFIX) and not metric[len(JUDGE_PREFIX) :].strip():
            raise sec.error(f"metric {metric!r} names no judge metric (e.g. {JUDGE_PREFIX}win_rate)")
        pair = (task, metric)
        if pair in seen:
            raise sec.error(f"duplicate rule for {task}/{metric} (already rule #{seen[pair]})")
        seen[pair] = i
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
                inconclusive=sec.inconclusive(raw["inconclusive"]) if "inconclusive" in raw else d_inc,  # type: ignore[arg-type]
                threshold=threshold,
            )
        )
    return GatePolicy(rules=tuple(rules), n_resamples=n_resamples, seed=seed, source=source)
