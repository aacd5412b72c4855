"""Accuracy broken down by a sample's group (answer type, question type...), and its report view:
shared by the tasks that report it (``easyvqa``, ``easyvqa-mc``)."""

from __future__ import annotations

from typing import Any

from .reporting import BreakdownTable, BreakdownTables
from .types import Aggregate, Sample


def accuracy_by(
    samples: list[Sample], records: list[dict[str, Any]], correct_key: str, group_key: str, name: str = "answer_type"
) -> Aggregate:
    """``accuracy`` (x100, 2 decimals) from the 0/1 per-sample values ``correct_key``, with
    ``accuracy_by_<name>`` and ``n_by_<name>`` per ``sample.meta[group_key]`` in the breakdown."""
    groups: dict[str, list[int]] = {}
    for s, r in zip(samples, records):
        groups.setdefault(s.meta[group_key], []).append(r["metrics"][correct_key])
    values = [r["metrics"][correct_key] for r in records]
    return Aggregate(
        metrics={"accuracy": round(100 * sum(values) / len(values), 2)},
        breakdown={
            f"accuracy_by_{name}": {k: round(100 * sum(v) / len(v), 2) for k, v in sorted(groups.items())},
            f"n_by_{name}": {k: len(v) for k, v in sorted(groups.items())},
        },
    )


def accuracy_by_view(name: str = "answer_type") -> BreakdownTables:
    """The report view of :func:`accuracy_by`'s breakdown: one table, with the sample counts."""
    return BreakdownTables(
        BreakdownTable(f"accuracy_by_{name}", f"accuracy by {name.replace('_', ' ')}", counts=f"n_by_{name}", unit="%")
    )
