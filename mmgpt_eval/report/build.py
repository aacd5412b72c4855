"""Assembling the page: the runs as columns, each section's view, the template rendered with
autoescape (``finalize`` = :func:`~mmgpt_eval.report.text.clean`), the size ceiling enforced; and the
atomic write."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import atomic_write_text
from ..results import RunResults
from ..version import __version__
from .breakdowns import breakdowns
from .columns import RunColumn
from .columns import labels as column_labels
from .galleries import galleries
from .gate_view import gate_view
from .hooks import hooks_for
from .images import Thumbs
from .judged import judged_columns, judged_view
from .limits import MAX_BYTES, MAX_TRANSCRIPTS
from .provenance import provenance
from .published_view import published_view
from .summary import summary
from .text import clean
from .transcripts import transcripts
from .trend import trend

TEMPLATE = "report.html.j2"  # next to this module


def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(str(Path(__file__).parent)),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=clean,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_report(
    runs: list[RunResults],
    *,
    baseline: RunResults | None = None,
    gate: dict | None = None,
    labels: list[str] | None = None,
    max_gallery: int = 12,
    intersect: bool = False,
    n_resamples: int = 10000,
    title: str | None = None,
    max_bytes: int = MAX_BYTES,
    published: Any = None,
) -> str:
    """Render the HTML report of ``runs`` (compared with ``baseline`` when given) and return it.

    Runs are labelled by what they evaluated (:func:`mmgpt_eval.compare.run_label`) unless ``labels``
    names them; duplicates get ``#2``, ``#3``... ``published``: the published OpenFlamingo numbers
    (:mod:`mmgpt_eval.published`; a ``Published`` or a file path; default: the shipped
    ``mmgpt_eval/baselines/openflamingo.toml``, no section when it is absent)."""
    runs = list(runs)
    if not runs:
        raise UserError("no runs to report")
    if max_gallery < 0:
        raise UserError("max_gallery must be >= 0")
    if gate is not None and not isinstance(gate, dict):
        raise UserError("gate must be a gate result dict (GateResult.to_dict())")
    run_labels, base_label = column_labels(runs, baseline, labels)
    base = RunColumn(base_label, baseline, is_baseline=True) if baseline is not None else None
    rcols = [RunColumn(lbl, r) for lbl, r in zip(run_labels, runs)]
    cols = ([base] if base is not None else []) + rcols
    tasks: list[str] = []
    for c in cols:
        tasks += [t for t in c.res.tasks if t not in tasks]
    # each task's report hooks, with the options of the last run that has it
    hooks = {t: hooks_for(t, next(c.res.tasks[t].options for c in reversed(cols) if t in c.res.tasks)) for t in tasks}
    judged = judged_columns(cols)  # a stale judge.json refuses the report (UserError)
    thumbs = Thumbs.for_runs([c.res for c in cols])

    headline, summ = summary(cols, base, tasks, intersect, n_resamples)
    bds = breakdowns(cols, tasks, hooks)
    trd = trend(rcols, base, tasks)
    prov = provenance(cols, tasks)
    pubv = published_view(cols, published)
    gview = gate_view(gate) if gate is not None else None
    jview = judged_view(judged)
    tpl = _env().get_template(TEMPLATE)

    gallery_n, n_conv, shrunk = max_gallery, MAX_TRANSCRIPTS, ""
    while True:
        gals = galleries(rcols, base, tasks, gallery_n, thumbs, hooks)
        trans = transcripts(rcols, base, tasks, thumbs, hooks, n_conv, judged)
        html = tpl.render(
            title=title or "mmgpt-eval report",
            generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            version=__version__,
            cols=[
                {
                    "label": c.label,
                    "baseline": c.is_baseline,
                    "path": str(c.res.path) if c.res.path else "",
                    "created": c.res.created,
                }
                for c in cols
            ],
            has_baseline=base is not None,
            base_label=base_label,
            cand_labels=[c.label for c in rcols] if base is not None else [],
            headline=headline,
            summary=summ,
            breakdowns=bds,
            trend=trd,
            galleries=gals,
            transcripts=trans,
            provenance=prov,
            gate=gview,
            judged=jview,
            max_gallery=gallery_n,
            published=pubv,
            shrunk=shrunk,
            intersect=intersect,
            dagger=any(c and c["dagger"] for t in summ for r in t["rows"] for c in r["comps"]),
        )
        html = html.encode("utf-8", "replace").decode("utf-8")
        if len(html.encode("utf-8")) <= max_bytes or (gallery_n == 0 and n_conv == 0):
            return html
        gallery_n, n_conv = gallery_n // 2, n_conv // 2
        shrunk = (
            f"The page exceeded {max_bytes // 1_000_000} MB, so galleries were cut to {gallery_n} samples "
            f"each and transcripts to {n_conv}."
        )


def write_report(path: str | os.PathLike, runs: list[RunResults], **kwargs: Any) -> Path:
    """Build the report and write it atomically to ``path``; returns the path."""
    p = Path(path)
    if p.is_dir():
        raise UserError("is a directory; give the report's file name (e.g. report.html)", p)
    html = build_report(runs, **kwargs)
    atomic_write_text(p, html)
    try:  # mkstemp creates 0600; a report is meant to be shared: use the umask like open() would
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(p, 0o666 & ~mask)
    except OSError:
        pass
    return p
