"""Transcripts side by side: for tasks whose hook returns one
(:meth:`~mmgpt_eval.taskapi.reporting.ReportHooks.transcript`), a few conversations (with a baseline,
those whose score changed most first) as one table: per turn the instruction, kind and reference, and
each run's answer with its flags; then the task's extra outputs (e.g. the same question with another
image)."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..judge_results import JudgeResults
from ..taskapi.reporting import ReportHooks, Transcript, Turn
from .columns import RunColumn
from .hooks import transcript
from .images import Thumbs, image_view
from .judged import judge_notes, judged_baseline
from .limits import LIMITS, MAX_COLUMNS, MAX_TRANSCRIPTS, MAX_TURNS
from .samples import per_sample_key, prediction, sample_value
from .text import clip, fmt_value

_FLAG_VIEW = {"good": ("good", "✓"), "bad": ("bad", "✗"), "warn": ("warn", "!"), "info": ("ns", "")}
_PROBE = 5  # records looked at to decide whether a task has transcripts


def _flags(turn: Turn | None) -> list[dict[str, str]]:
    if turn is None:
        return []
    out = []
    for f in turn.flags[:40]:
        cls, mark = _FLAG_VIEW.get(f.level, _FLAG_VIEW["info"])
        out.append({"name": clip(f.name, 60), "cls": cls, "mark": mark})
    return out


def _notes(
    c: RunColumn, tcols: list[RunColumn], task: str, ids: set[str], judged: dict[str, JudgeResults]
) -> dict[tuple[str, int], list[dict[str, str]]]:
    """``c``'s judgments: from its own judge.json, or (a baseline not judged itself) the baseline side
    of the first candidate judged against exactly its answers."""
    if c.label in judged:
        return judge_notes(judged[c.label], task, ids)
    if c.is_baseline:
        for other in tcols:
            j = judged.get(other.label)
            if not other.is_baseline and j is not None and judged_baseline(j, task, c):
                return judge_notes(j, task, ids, side="baseline")
    return {}


def transcripts(
    runs: list[RunColumn],
    base: RunColumn | None,
    tasks: list[str],
    thumbs: Thumbs,
    hooks: dict[str, ReportHooks | None],
    n_conv: int = MAX_TRANSCRIPTS,
    judged: dict[str, JudgeResults] | None = None,
) -> list[dict[str, Any]]:
    """The transcripts; ``judged`` (judge.json by column label): each answer shows its judgments."""
    out: list[dict[str, Any]] = []
    if n_conv <= 0:
        return out
    tcols_all = ([base] if base is not None else []) + runs[-(MAX_COLUMNS - (1 if base is not None else 0)) :]
    for ti, task in enumerate(tasks):
        h = hooks.get(task)
        tcols = [c for c in tcols_all if task in c.res.tasks]
        if h is None or not tcols:
            continue
        try:
            views = [c.view(task) for c in tcols]
        except UserError:
            continue
        if not any(transcript(h, views[0].record(i)) is not None for i in views[0].ids[:_PROBE]):
            continue
        ids = [i for i in views[0].ids if all(i in v for v in views)]
        tr = tcols[-1].res.tasks[task]
        _, key, info = per_sample_key(tr)
        if base is not None and key is not None and len(tcols) > 1:
            k: str = key

            def diff(i: str) -> float:
                vb, vc = views[0].value(i, k), views[-1].value(i, k)  # noqa: B023 - used at once
                return 0.0 if vb is None or vc is None else abs(vc - vb)

            ids = sorted(ids, key=lambda i: (-diff(i), i))
        shown = set(ids[:n_conv])
        notes = [_notes(c, tcols, task, shown, judged or {}) for c in tcols]
        convs = []
        for i in ids[:n_conv]:
            rs = [v.record(i) for v in views]
            ts: list[Transcript | None] = [transcript(h, r) for r in rs]
            n_turns = max((len(t.turns) for t in ts if t is not None), default=0)
            turns = []
            for n in range(min(n_turns, MAX_TURNS)):
                own = [t.turns[n] if t is not None and n < len(t.turns) else None for t in ts]
                head = next(t for t in own if t is not None)
                turns.append(
                    {
                        "n": n,
                        "instruction": clip(head.instruction, LIMITS["instruction"]),
                        "kind": clip(head.kind, 40),
                        "reference": ("—" if head.reference is None else clip(head.reference, LIMITS["reference"])),
                        "answers": [
                            {
                                "text": prediction(r, t.output_key) if t is not None else "—",
                                "flags": _flags(t),
                                "judge": nt.get((i, n), []),
                            }
                            for r, t, nt in zip(rs, own, notes)
                        ],
                    }
                )
            extras: dict[str, Any] = {}
            for t in ts:
                for x in (t.extras if t is not None else [])[:8]:
                    extras.setdefault(x.output_key, x)
            extras_view = [
                {
                    "section": clip(x.section, 80),
                    "name": clip(x.name, LIMITS["short"]),
                    "answers": [prediction(r, x.output_key) for r in rs],
                }
                for x in extras.values()
            ]
            convs.append(
                {
                    "id": clip(i, LIMITS["short"]),
                    "image": image_view(rs[-1].images, thumbs),
                    "turns": turns,
                    "extras": extras_view,
                    "scores": [f"{key} = {fmt_value(sample_value(r, key))}" if key else "" for r in rs],
                }
            )
        out.append(
            {
                "task": task,
                "anchor": f"t{ti}",
                "labels": [c.label for c in tcols],
                "baseline": [c.is_baseline for c in tcols],
                "convs": convs,
                "total": len(ids),
            }
        )
    return out
