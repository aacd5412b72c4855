"""Sample galleries: per task and run, the samples whose per-sample score changed most vs the baseline
(largest regressions / improvements), or without a baseline the worst and best samples. A card shows
the thumbnail, the prompt(s), each run's output (a multi-turn sample: the turns of the task's
transcript) and the references."""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..records import SampleRecord
from ..taskapi.reporting import ReportHooks
from .columns import RunColumn
from .hooks import transcript
from .images import Thumbs, image_view
from .limits import LIMITS, MAX_COLUMNS, MAX_GALLERY_TURNS
from .samples import per_sample_key, prediction, reference_lines, sample_value
from .text import clip, fmt_delta, fmt_value, to_text


def _card(
    rid: str,
    recs: list[tuple[RunColumn, SampleRecord | None]],
    key: str,
    hooks: ReportHooks | None,
    thumbs: Thumbs,
    delta: float | None,
) -> dict[str, Any]:
    main = next(r for _, r in reversed(recs) if r is not None)
    prompts = []
    seen: set[str] = set()
    for c, r in recs:
        if r is None:
            continue
        p = to_text(r.prompt)
        if p in seen:
            continue
        seen.add(p)
        prompts.append({"label": c.label, "text": clip(p, LIMITS["prompt"], tail=True)})
    if len(prompts) == 1:
        prompts[0]["label"] = ""
    conv = transcript(hooks, main)
    turns = [t.output_key for t in conv.turns] if conv is not None else []
    outs = []
    for c, r in recs:
        v = sample_value(r, key) if r is not None else None
        entry = {"label": c.label, "baseline": c.is_baseline, "score": f"{key} = {fmt_value(v)}"}
        if turns and r is not None:
            entry["turns"] = [{"key": clip(t, 40), "text": prediction(r, t)} for t in turns[:MAX_GALLERY_TURNS]]
            entry["more"] = max(0, len(turns) - MAX_GALLERY_TURNS)
        else:
            entry["text"] = prediction(r)
        outs.append(entry)
    return {
        "id": clip(rid, LIMITS["short"]),
        "image": image_view(main.images, thumbs),
        "prompts": prompts,
        "outputs": outs,
        "refs": reference_lines(main.references, conv),
        "delta": fmt_delta(delta) if delta is not None else "",
    }


def galleries(
    runs: list[RunColumn],
    base: RunColumn | None,
    tasks: list[str],
    max_gallery: int,
    thumbs: Thumbs,
    hooks: dict[str, ReportHooks | None],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if max_gallery <= 0:
        return out
    pairs = [(base, c) for c in runs[-(MAX_COLUMNS - 1) :]] if base is not None else [(None, runs[0])]
    for ti, task in enumerate(tasks):
        h = hooks.get(task)
        for b, c in pairs:
            if task not in c.res.tasks or (b is not None and task not in b.res.tasks):
                continue
            tr = c.res.tasks[task]
            metric, key, info = per_sample_key(tr)
            g: dict[str, Any] = {
                "task": task,
                "anchor": f"t{ti}",
                "label": c.label,
                "vs": b.label if b else None,
                "metric": metric or "",
                "key": key or "",
                "sections": [],
                "msg": "",
                "stats": "",
            }
            if key is None:
                g["msg"] = "this task has no per-sample metric to rank samples by"
                out.append(g)
                continue
            sign = 1.0 if info.get("higher_is_better", True) else -1.0
            try:
                rc = c.view(task)
                rb = b.view(task) if b is not None else None
            except UserError as e:
                g["msg"] = clip(str(e), 400)
                out.append(g)
                continue
            bad = rc.skipped + (rb.skipped if rb is not None else 0)
            if b is not None and rb is not None:  # rb is set exactly when b is
                common = [i for i in rc.ids if i in rb]
                scored = []
                for i in common:
                    vb, vc = rb.value(i, key), rc.value(i, key)
                    if vb is None or vc is None:
                        continue
                    scored.append(((vc - vb) * sign, i, vc - vb))
                n_changed = sum(1 for i in common if rb.prediction_text(i) != rc.prediction_text(i))
                worse = sorted([s for s in scored if s[0] < 0], key=lambda s: (s[0], s[1]))
                better = sorted([s for s in scored if s[0] > 0], key=lambda s: (-s[0], s[1]))
                g["stats"] = (
                    f"{len(scored)} paired samples scored ({len(common)} in both runs): {len(worse)} worse, "
                    f"{len(better)} better, {len(scored) - len(worse) - len(better)} tied on {key}; "
                    f"{n_changed} predictions differ"
                )
                for title, lst, cls in (
                    ("largest regressions", worse, "bad"),
                    ("largest improvements", better, "good"),
                ):
                    cards = [
                        _card(i, [(b, rb.record(i)), (c, rc.record(i))], key, h, thumbs, d)
                        for _, i, d in lst[:max_gallery]
                    ]
                    g["sections"].append(
                        {
                            "title": title,
                            "cls": cls,
                            "cards": cards,
                            "omitted": max(0, len(lst) - max_gallery),
                            "empty": f"no sample got {'worse' if cls == 'bad' else 'better'} on {key}",
                        }
                    )
            else:
                scored = [(v * sign, i, v) for i in rc.ids if (v := rc.value(i, key)) is not None]
                g["stats"] = f"{len(scored)} samples scored on {key} (of {len(rc)})"
                asc = sorted(scored, key=lambda s: (s[0], s[1]))
                desc = sorted(scored, key=lambda s: (-s[0], s[1]))
                if asc and asc[0][0] == asc[-1][0]:
                    g["stats"] += f"; every sample has the same value ({fmt_value(asc[0][2])})"
                for title, lst, cls in (("worst samples", asc, "bad"), ("best samples", desc, "good")):
                    cards = [_card(i, [(c, rc.record(i))], key, h, thumbs, None) for _, i, _ in lst[:max_gallery]]
                    g["sections"].append(
                        {"title": title, "cls": cls, "cards": cards, "omitted": 0, "empty": "no scored samples"}
                    )
            if bad:
                g["stats"] += f"; {bad} malformed records left out"
            out.append(g)
    return out
