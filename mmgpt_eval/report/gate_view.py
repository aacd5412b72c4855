"""The gate verdict: reading a gate result JSON (``GateResult.to_dict()``, as ``mmgpt-eval gate --json``
writes it) and its view in the page (verdict banner and one row per rule)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import UserError
from .text import cell, clip, fmt_delta, fmt_num, fmt_p, fmt_value, number, to_text


def gate_view(gate: dict[str, Any]) -> dict[str, Any]:
    """The verdict (with its CSS class), the status counts and one row per rule (at most 200)."""
    g: Any = gate.get("gate") if isinstance(gate.get("gate"), dict) and "verdict" not in gate else gate
    verdict = to_text(g.get("verdict", "unknown"))
    cls = {"pass": "good", "regression": "bad", "error": "warn"}.get(verdict, "ns")
    rules = []
    for r in (g.get("rules") if isinstance(g.get("rules"), list) else [])[:200]:
        if not isinstance(r, dict):
            continue
        rule: Any = r.get("rule") if isinstance(r.get("rule"), dict) else {}
        status = to_text(r.get("status", ""))
        ci = ""
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            ci = f"[{fmt_delta(r.get('ci_low'))}, {fmt_delta(r.get('ci_high'))}]"
            if number(r.get("interval_confidence")) is not None:
                ci += f" ({fmt_num(100 * float(r['interval_confidence']))}%)"
        rules.append(
            {
                "task": cell(r.get("task", rule.get("task"))),
                "metric": cell(r.get("metric", rule.get("metric"))),
                "status": clip(status, 40),
                "cls": {"pass": "good", "regression": "bad", "error": "warn", "warn": "warn"}.get(status, "ns"),
                "baseline": fmt_value(r.get("baseline")),
                "candidate": fmt_value(r.get("candidate")),
                "delta": fmt_delta(r.get("delta")),
                "ci": ci,
                "margin": (
                    f"threshold {fmt_value(rule.get('threshold'))}"
                    if rule.get("threshold") is not None
                    else fmt_value(r.get("margin"))
                ),
                "direction": cell(rule.get("direction")),
                "n": cell(r.get("n")),
                "p": fmt_p(r.get("p_value")),
                "note": clip(to_text(r.get("note") or ""), 200),
                "message": clip(to_text(r.get("message") or ""), 600),
            }
        )
    counts: Any = g.get("counts") if isinstance(g.get("counts"), dict) else {}
    return {
        "verdict": clip(verdict, 40),
        "cls": cls,
        "exit_code": cell(g.get("exit_code")),
        "counts": ", ".join(f"{v} {k}" for k, v in counts.items() if v),
        "rules": rules,
    }


def load_gate(path: str | os.PathLike) -> dict[str, Any]:
    """Read a gate result JSON (``GateResult.to_dict()``); anything else is a UserError."""
    from ..io import read_json

    d = read_json(path)
    if isinstance(d, dict) and "verdict" not in d and isinstance(d.get("gate"), dict):
        d = d["gate"]
    if not isinstance(d, dict) or "verdict" not in d or not isinstance(d.get("rules"), list):
        raise UserError("not a gate result file (expected a JSON object with 'verdict' and 'rules')", path)
    return d
