"""The gate's reports: a Markdown summary (for a PR comment) and JUnit XML (for CI dashboards).

Both are pure functions of a :class:`~mmgpt_eval.gate.decision.GateResult`; numbers show 4
significant digits, and any text from the runs or the policy (task names, messages) is escaped
for its format, so odd names cannot break the table or the XML.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from .decision import GateResult, RuleResult

__all__ = ["to_markdown", "to_junit_xml"]


def _summary_line(result: GateResult) -> str:
    n = len(result.results)
    counts = ", ".join(
        f"{result.count(s)} {s}" for s in ("pass", "warn", "regression", "error", "skipped") if result.count(s)
    )
    head = {
        "pass": (
            "⚠️ **Gate: PASS with warnings** — no proven regression, but inconclusive rule(s)"
            if result.count("warn")
            else "✅ **Gate: PASS** — no regression"
        ),
        "regression": "❌ **Gate: REGRESSION** — the candidate is worse than the margin",
        "error": "⚠️ **Gate: ERROR** — the gate could not check every rule",
    }[result.verdict]
    return f"{head} ({n} rule{'s' if n != 1 else ''}: {counts}; exit code {result.exit_code})"


def to_markdown(result: GateResult) -> str:
    """A PR-comment-ready summary: verdict line, one table row per rule, then details."""
    lines = [f"### {_summary_line(result)}", ""]
    lines.append("| Task | Metric | Baseline | Candidate | Δ (cand − base) | CI of Δ | Regression if | Verdict |")
    lines.append("|---|---|---:|---:|---:|---|---|---|")
    icons = {
        "pass": "✅ pass",
        "warn": "⚠️ warn",
        "regression": "❌ regression",
        "error": "⚠️ error",
        "skipped": "⏭️ skipped",
    }
    for r in result.results:
        rule = r.rule
        if r.delta is not None and r.margin is not None:
            ci = f"[{_fmt(r.ci_low, signed=True)}, {_fmt(r.ci_high, signed=True)}] ({_pct(r.interval_confidence)})"
            threshold = f"Δ < −{_fmt(r.margin)}" if rule.higher_is_better else f"Δ > +{_fmt(r.margin)}"
            if rule.margin_relative is not None:
                threshold += f" ({_fmt(100 * rule.margin_relative)}%)"
            cells = [_fmt(r.baseline), _fmt(r.candidate), _fmt(r.delta, signed=True), ci, threshold]
        elif rule.threshold is not None and r.candidate is not None:  # a judge metric against its threshold
            ci = f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] ({_pct(r.interval_confidence)})"
            threshold = f"interval {'<' if rule.higher_is_better else '>'} {_fmt(rule.threshold)}"
            cells = [_fmt(r.baseline), _fmt(r.candidate), "—", ci, threshold]
        else:
            cells = ["—"] * 5
        verdict = icons[r.status] + (f" ({r.note})" if r.note else "")
        row = [rule.task, rule.metric, *cells, verdict]
        lines.append("| " + " | ".join(_md(c) for c in row) + " |")
    details = [r for r in result.results if r.message]
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
            f"{result.policy.n_resamples} resamples, seed {result.policy.seed}; the CI shown is the two-sided "
            '2·confidence − 1 interval). "inconclusive" = the CI crosses the margin: not proven worse, '
            "but not proven within the margin either; more samples would settle it. Each rule's policy "
            "decides what an inconclusive rule does: pass, warn (exit code 0) or fail (exit code 1)."
        )
    )
    inc = [r for r in result.results if r.inconclusive]
    if inc:
        lines.append("")
        for r in inc:
            effect = {
                "pass": "passes by policy",
                "warn": "warning by policy (exit code 0)",
                "fail": "fails by policy (exit code 1)",
            }[r.rule.inconclusive]
            crosses = (
                "the interval crosses the threshold"
                if r.rule.threshold is not None
                else "the CI of Δ crosses the margin"
            )
            lines.append(f"- **{_md(r.rule.label)}**: inconclusive ({effect}) — {crosses}")
    return "\n".join(lines) + "\n"


def to_junit_xml(result: GateResult) -> str:
    """JUnit XML: one ``<testsuite>``, one ``<testcase>`` per rule.

    A regression is a ``<failure>``, an error an ``<error>``, a skipped optional rule
    ``<skipped>``. All text goes through ElementTree (which escapes markup) after removing
    characters XML 1.0 cannot represent at all.
    """
    suite = ET.Element(
        "testsuite",
        {
            "name": "mmgpt-eval gate",
            "tests": str(len(result.results)),
            "failures": str(result.count("regression")),
            "errors": str(result.count("error")),
            "skipped": str(result.count("skipped")),
            "time": "0",
        },
    )
    props = ET.SubElement(suite, "properties")
    for k, v in (
        ("verdict", result.verdict),
        ("exit_code", str(result.exit_code)),
        ("n_resamples", str(result.policy.n_resamples)),
        ("seed", str(result.policy.seed)),
        ("warnings", str(result.count("warn"))),
        ("policy", result.policy.source or ""),
    ):
        ET.SubElement(props, "property", {"name": k, "value": _xml(v)})
    for r in result.results:
        case = ET.SubElement(
            suite, "testcase", {"classname": _xml(f"gate.{r.rule.task}"), "name": _xml(r.rule.label), "time": "0"}
        )
        summary = _xml(_plain_summary(r))
        if r.status == "regression":
            kind = "inconclusive" if r.inconclusive else "regression"
            el = ET.SubElement(case, "failure", {"type": kind, "message": summary})
            el.text = summary
        elif r.status == "error":
            el = ET.SubElement(case, "error", {"type": "error", "message": _xml(r.message)})
            el.text = _xml(r.message)
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", {"message": _xml(r.message)})
        out = summary
        if r.status == "warn":
            out = "WARNING: " + summary
        ET.SubElement(case, "system-out").text = out
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _plain_summary(r: RuleResult) -> str:
    """One line of plain text (ASCII signs) for JUnit messages."""
    if r.delta is None and r.rule.threshold is not None and r.candidate is not None:  # a judge metric
        side = "below" if r.rule.higher_is_better else "above"
        return (
            f"{r.rule.label}: {r.status}"
            + (f" ({r.note})" if r.note else "")
            + f"; candidate {_fmt(r.candidate, ascii_only=True)}, {_pct(r.interval_confidence)} interval "
            f"[{_fmt(r.ci_low, ascii_only=True)}, {_fmt(r.ci_high, ascii_only=True)}], threshold "
            f"{_fmt(r.rule.threshold, ascii_only=True)} (regression if the whole interval is {side}), n={r.n}"
        )
    if r.delta is None:
        return f"{r.rule.label}: {r.status}" + (f": {r.message}" if r.message else "")

    def f(x: float | None, signed: bool = False) -> str:
        return _fmt(x, signed, ascii_only=True)

    worse = "below -" if r.rule.higher_is_better else "above +"
    s = (
        f"{r.rule.label}: {r.status}"
        + (f" ({r.note})" if r.note else "")
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
