"""The HTML report: one self-contained file that compares runs (and checkpoints) at a glance.

    build_report(runs, baseline=None, gate=None, labels=None, max_gallery=12, intersect=False) -> str
    write_report(path, runs, ...) -> Path          (atomic write)
    load_gate(path) -> dict                        (a gate result JSON, checked)

Sections: headline + summary of every metric (with paired 95% intervals and p-values vs the baseline,
from :func:`mmgpt_eval.compare.compare_runs`), per-task breakdowns, a trend plot across checkpoints,
galleries of the largest per-sample regressions / improvements, transcripts side by side,
provenance per run and the gate verdict; for judged runs (``judge.json``) a "Judged quality" section
and the judge's scores and rationale beside each transcript answer. Runs are labelled by what they evaluated
(:func:`mmgpt_eval.compare.run_label`) unless labels are given.

Task-agnostic: no module here knows a task. Task-specific tables, plots and transcripts come from the
task's own hooks (``mmgpt_eval.taskapi.reporting``), its class found by name with
``taskregistry.discover()``; a task whose plugin is missing is shown generically.

Modules: ``build`` (assembles and renders the page; ``report.html.j2`` is its template), ``columns``
(runs as labelled columns with cached records), ``hooks`` (task lookup and safe hook calls),
``summary``, ``breakdowns``, ``trend``, ``galleries``, ``transcripts``, ``provenance``, ``gate_view``,
``judged`` (one section each), ``tables`` / ``plots`` / ``images`` / ``samples`` / ``text`` (tables, matplotlib
PNGs, thumbnails, record fields, text formatting) and ``limits`` (size caps).

Self-contained: inline CSS, plots as base64 PNG (matplotlib, Agg), thumbnails as base64 PNG
(<= 96 px), no scripts, no network; a Content-Security-Policy forbids scripts and remote loads.

Safety: the page is rendered by jinja2 with ``autoescape=True``; no template uses ``|safe`` and
no data is placed in ``<script>``, event attributes, URLs or CSS. Every value printed by the
template also passes ``finalize`` (:func:`~mmgpt_eval.report.text.clean`), which turns control
characters into visible ``\\xNN`` escapes and unpaired surrogates into U+FFFD, so any model output is
valid, visible text. Only base64 strings produced here (``[A-Za-z0-9+/=]``) go into
``src="data:image/png;base64,..."``. Whatever a task hook returns is type-checked and clipped here.

Size: nothing is proportional to the number of samples. Galleries are capped (``max_gallery`` per
direction, task and run), transcripts to a few conversations, tables to ``MAX_TABLE_ROWS`` rows,
and every string is truncated with a visible marker. As a last resort, a page over ``max_bytes``
is rendered again with smaller galleries until it fits.
"""

from __future__ import annotations

from .build import build_report, write_report
from .gate_view import load_gate
from .limits import MAX_BYTES
from .text import fmt_delta, fmt_p, fmt_value

__all__ = ["build_report", "write_report", "load_gate", "MAX_BYTES", "fmt_value", "fmt_delta", "fmt_p"]
