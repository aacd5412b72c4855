"""The HTML report: one self-contained file that compares runs (and checkpoints) at a glance.

    build_report(runs, baseline=None, gate=None, labels=None, max_gallery=12, intersect=False) -> str
    write_report(path, runs, ...) -> Path          (atomic write)

Sections: headline + summary of every metric (with paired 95% intervals and p-values vs the baseline,
from :func:`mmgpt_eval.compare.compare_runs`), per-task breakdowns, a trend plot across checkpoints,
galleries of the largest per-sample regressions / improvements, dialogue transcripts side by side,
provenance per run and the gate verdict.

Self-contained: inline CSS, plots as base64 PNG (matplotlib, Agg), thumbnails as base64 PNG
(<= 96 px), no scripts, no network; a Content-Security-Policy forbids scripts and remote loads.

Safety: the page is rendered by jinja2 with ``autoescape=True``; no template uses ``|safe`` and
no data is placed in ``<script>``, event attributes, URLs or CSS. Every value printed by the
template also passes ``finalize`` (:func:`_clean`), which turns control characters into visible
``\\xNN`` escapes and unpaired surrogates into U+FFFD, so any model output is valid, visible text.
Only base64 strings produced here (``[A-Za-z0-9+/=]``) go into ``src="data:image/png;base64,..."``.

Size: nothing is proportional to the number of samples. Galleries are capped (``max_gallery`` per
direction, task and run), transcripts to a few conversations, tables to ``MAX_TABLE_ROWS`` rows,
and every string is truncated with a visible marker. As a last resort, a page over ``max_bytes``
is rendered again with smaller galleries until it fits.
"""

from __future__ import annotations

import base64
import copy
import datetime as _dt
import io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .compare import as_number
from .errors import UserError
from .io import atomic_write_text
from .results import RunResults

__all__ = ["build_report", "write_report", "load_gate", "MAX_BYTES"]

MAX_BYTES = 20_000_000      # hard ceiling for one report (galleries shrink until it fits)
MAX_TABLE_ROWS = 40         # rows per breakdown table (the rest is counted, not shown)
MAX_METRICS_PER_TASK = 60   # rows of the summary per task
MAX_TRANSCRIPTS = 4         # dialogue conversations shown per task
MAX_COLUMNS = 4             # runs shown side by side in galleries / transcripts (baseline + 3)
THUMB_PX = 96
# Truncation limits (characters) for strings shown in the page.
LIMITS = {"prompt": 1500, "prediction": 600, "reference": 300, "instruction": 400, "short": 160, "cell": 200}

_CSS_CLASS = {True: "good", False: "bad", None: "ns"}


# ------------------------------------------------------------------------------------------ text helpers
_CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


def _ctrl_sub(m: re.Match) -> str:
    c = ord(m.group(0))
    if c < 0x20 or 0x7F <= c <= 0x9F:
        return f"\\x{c:02x}"  # visible escape, e.g. \x10
    return "\ufffd"  # unpaired surrogates, non-characters


def _clean(value: Any) -> Any:
    """jinja2 ``finalize``: every printed value becomes clean text (markup from macros passes).

    Control characters (except tab / newline) become a visible ``\\xNN``; unpaired surrogates and
    non-characters become U+FFFD. The result is still plain text, escaped afterwards by autoescape.
    """
    from markupsafe import Markup

    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return _CTRL_RE.sub(_ctrl_sub, value)
    return value


def _clip(text: Any, limit: int, *, tail: bool = False) -> str:
    """Truncate with a visible marker. ``tail`` keeps the end (prompts: the last turn matters)."""
    s = text if isinstance(text, str) else ("" if text is None else _to_text(text))
    if len(s) <= limit:
        return s
    cut = len(s) - limit
    if tail:
        return f"[… {cut} earlier characters omitted …]" + s[-limit:]
    head = limit * 2 // 3
    return s[:head] + f" [… {cut} characters omitted …] " + s[-(limit - head):]


def _to_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    try:
        return json.dumps(v, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(v)


def _g(v: float, sig: int = 4) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10 ** sig:
        return f"{v:.0f}"
    digits = max(0, sig - 1 - int(math.floor(math.log10(a))))
    s = f"{v:.{min(digits, 6)}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def fmt_value(v: Any, unit: str = "") -> str:
    f = as_number(v)
    if f is None:
        return "—" if v is None else _clip(_to_text(v), LIMITS["short"])
    return f"{_g(f)}{unit or ''}"


def fmt_delta(v: Any, unit: str = "") -> str:
    f = as_number(v)
    if f is None:
        return "—"
    s = _g(f)
    return ("+" + s if f > 0 else s.replace("-", "−")) + (unit if unit == "%" else "")


def fmt_p(p: Any) -> str:
    f = as_number(p)
    if f is None:
        return ""
    if f < 0.001:
        return "p<0.001"
    return f"p={f:.3f}" if f < 0.1 else f"p={f:.2f}"


def _s(v: Any, limit: int = LIMITS["cell"]) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return _g(v)
    return _clip(_to_text(v), limit)


# ------------------------------------------------------------------------------------------ images / plots
class _Thumbs:
    """Base64 PNG thumbnails (<= THUMB_PX), cached by image key; None when the image is gone."""

    def __init__(self) -> None:
        self.cache: dict[str, str | None] = {}

    def get(self, key: Any) -> str | None:
        k = str(key)
        if k not in self.cache:
            self.cache[k] = self._make(k)
        return self.cache[k]

    @staticmethod
    def _make(key: str) -> str | None:
        try:
            from .taskapi import open_image_key

            im = open_image_key(key)
            if im is None:
                return None
            im = im.convert("RGB")
            im.thumbnail((THUMB_PX, THUMB_PX))
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=True)
            return base64.b64encode(buf.getvalue()).decode("ascii")
        except Exception:  # noqa: BLE001 - a broken image must never break the report
            return None


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    return fig


def _fig_png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plot_rc():
    import matplotlib

    return matplotlib.rc_context({"text.parse_math": False, "text.usetex": False, "font.size": 9,
                                  "axes.spines.top": False, "axes.spines.right": False,
                                  "axes.grid": True, "grid.alpha": 0.3, "svg.fonttype": "path"})


_PALETTE = ["#6b7280", "#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#65a30d"]


def _bar_plot(categories: list[str], series: list[tuple[str, list[float | None]]], ylabel: str, xlabel: str,
              ylim: tuple[float, float] | None = None) -> str:
    import numpy as np

    with _plot_rc():
        fig = _figure(max(4.0, min(8.0, 0.3 * len(categories) * max(1, len(series)) + 2)), 2.3)
        ax = fig.add_subplot(1, 1, 1)
        n = max(1, len(series))
        width = 0.8 / n
        x = np.arange(len(categories))
        for i, (label, vals) in enumerate(series):
            ys = [np.nan if v is None else v for v in vals]
            ax.bar(x + (i - (n - 1) / 2) * width, ys, width, label=_clip(label, 40), color=_PALETTE[i % len(_PALETTE)])
        ax.set_xticks(x)
        ax.set_xticklabels([_clip(c, 12) for c in categories])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(axis="x", visible=False)
        if n > 1:
            ax.legend(fontsize=7, frameon=False, ncol=min(n, 4), loc="upper left", bbox_to_anchor=(0, 1.18))
        return _fig_png(fig)


def _line_plot(xs: list[float], xticklabels: list[str] | None, lines: list[tuple[str, list[float | None], float | None]],
               xlabel: str) -> str:
    import numpy as np

    with _plot_rc():
        fig = _figure(7.5, 3.0)
        ax = fig.add_subplot(1, 1, 1)
        for i, (label, ys, base) in enumerate(lines):
            c = _PALETTE[(i + 1) % len(_PALETTE)]
            ax.plot(xs, [np.nan if v is None else v for v in ys], marker="o", ms=4, lw=1.6, color=c,
                    label=_clip(label, 50))
            if base is not None:
                ax.axhline(base, color=c, lw=1, ls="--", alpha=0.6)
        if xticklabels is not None:
            ax.set_xticks(xs)
            ax.set_xticklabels([_clip(t, 14) for t in xticklabels], rotation=20 if len(xs) > 4 else 0, ha="right"
                               if len(xs) > 4 else "center")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("metric value (task units)")
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
        return _fig_png(fig)


# ------------------------------------------------------------------------------------------ runs
@dataclass
class _Col:
    """One run as a report column; per-sample records are read once and cached."""

    label: str
    res: RunResults
    is_baseline: bool = False
    _records: dict[str, Any] = field(default_factory=dict)

    def records(self, task: str) -> list[dict[str, Any]]:
        """Per-sample records (raises UserError when the samples file is missing or malformed)."""
        if task not in self._records:
            try:
                self._records[task] = ("ok", self._read(task))
            except UserError as e:
                self._records[task] = ("err", str(e))
        status, val = self._records[task]
        if status == "err":
            raise UserError(val)
        return val

    def _read(self, task: str) -> list[dict[str, Any]]:
        if self.res.path is None and task in self.res.tasks and isinstance(self.res.run, dict) \
                and self.res.run.get("output_dir"):
            # a RunResults built in memory (e.g. right after `mmgpt-eval run`): its output folder
            from .results import read_samples

            return read_samples(Path(str(self.res.run["output_dir"])) / self.res.tasks[task].samples_file)
        return self.res.samples(task)

    def by_id(self, task: str) -> dict[str, dict[str, Any]]:
        return {str(r.get("id")): r for r in self.records(task) if isinstance(r, dict)}

    def cached_results(self) -> RunResults:
        """A shallow copy of the run whose ``samples`` uses this column's cache (for compare_runs)."""
        c = copy.copy(self.res)
        c.samples = self.records  # type: ignore[method-assign]
        return c


def _default_label(r: RunResults, i: int) -> str:
    """The run folder's name (``runs/ckpt-500/results.json`` -> ``ckpt-500``), else ``run N``."""
    folder = r.run_dir
    if folder is None and isinstance(r.run, dict) and r.run.get("output_dir"):
        folder = Path(str(r.run["output_dir"]))
    if folder is not None and folder.name:
        return folder.name
    return f"run {i + 1}"


def _checkpoint_x(r: RunResults) -> tuple[float | None, float | None]:
    ck = (r.model or {}).get("checkpoint") if isinstance(r.model, dict) else None
    meta = ck.get("metadata") if isinstance(ck, dict) else None
    if not isinstance(meta, dict):
        return None, None
    return as_number(meta.get("step")), as_number(meta.get("epoch"))


def _metric_rows(tr, limit: int = MAX_METRICS_PER_TASK) -> list[str]:
    names = list(tr.metrics)
    prim = tr.primary_metric
    names = ([prim] if prim in names else []) + [m for m in names if m != prim]
    return names[:limit]


# ------------------------------------------------------------------------------------------ comparisons
def _compare(base: _Col, col: _Col, task: str, intersect: bool, n_resamples: int) -> tuple[dict[str, Any], str]:
    from .compare import compare_runs

    try:
        mcs = compare_runs(base.cached_results(), col.cached_results(), intersect=intersect, tasks=[task],
                           n_resamples=n_resamples)
    except UserError as e:
        return {}, str(e)
    except (KeyError, ValueError, TypeError) as e:  # malformed per-sample values
        return {}, f"task {task}: comparison failed ({type(e).__name__}: {e})"
    return {m.metric: m for m in mcs}, ""


def _comp_cell(mc, unit: str) -> dict[str, Any]:
    if mc is None:
        return {"delta": "—", "ci": "", "p": "", "cls": "ns", "n": "", "verdict": "", "title": "", "dagger": False}
    has_ci = mc.ci_low is not None and mc.ci_high is not None
    imp = mc.improved
    verdict = {True: "better", False: "worse", None: "n.s." if has_ci else ""}[imp]
    return {
        "delta": fmt_delta(mc.delta, unit),
        "ci": f"[{fmt_delta(mc.ci_low)}, {fmt_delta(mc.ci_high)}]" if has_ci else "no interval",
        "p": fmt_p(mc.p_value),
        "cls": _CSS_CLASS[imp] if has_ci else "ns",
        "n": f"n={mc.n}" + (f", {mc.n_dropped} n/a" if mc.n_dropped else "") if has_ci else "",
        "verdict": verdict,
        "title": f"{mc.test or ''} {'higher' if mc.higher_is_better else 'lower'} is better".strip()
                 + (f"; {mc.n} paired samples" if has_ci else ""),
        # the corpus-level delta lies outside the per-sample interval: say so (footnote in the page)
        "dagger": bool(has_ci and mc.delta is not None and not (mc.ci_low - 1e-9 <= mc.delta <= mc.ci_high + 1e-9)),
    }


# ------------------------------------------------------------------------------------------ per-sample helpers
def _per_sample_key(tr) -> tuple[str | None, str | None, dict[str, Any]]:
    """(metric, per-sample key, info) for galleries: the primary metric, else the first per-sample one."""
    order = [tr.primary_metric] + [m for m in tr.metric_info if m != tr.primary_metric]
    for m in order:
        info = tr.metric_info.get(m) or {}
        if info.get("per_sample") and info.get("kind") in ("binary", "continuous", "corpus"):
            return m, info["per_sample"], info
    return None, None, {}


def _sample_value(rec: dict[str, Any], key: str) -> float | None:
    m = rec.get("metrics")
    if not isinstance(m, dict):
        return None
    v = m.get(key)
    if isinstance(v, bool):
        return float(v)
    return as_number(v)


def _ref_lines(refs: Any) -> list[str]:
    lim = LIMITS["reference"]
    if refs is None:
        return []
    if isinstance(refs, (str, int, float, bool)):
        return [_clip(_to_text(refs), lim)]
    if isinstance(refs, dict):
        return [_clip(_to_text(refs), lim)]
    if isinstance(refs, list):
        if refs and all(isinstance(r, dict) for r in refs):
            out = []
            for i, r in enumerate(refs[:12]):
                if "instruction" in r or "reference" in r:
                    ref = r.get("reference")
                    out.append(_clip(f"T{i} [{_to_text(r.get('kind', ''))}] {_to_text(r.get('instruction', ''))}"
                                     f" → {'—' if ref is None else _to_text(ref)}", lim))
                else:
                    out.append(_clip(_to_text(r), lim))
            if len(refs) > 12:
                out.append(f"[… {len(refs) - 12} more references omitted …]")
            return out
        counts: dict[str, int] = {}
        for r in refs:
            counts[_to_text(r)] = counts.get(_to_text(r), 0) + 1
        items = sorted(counts.items(), key=lambda kv: -kv[1])
        parts = [f"{k} ×{n}" if n > 1 else k for k, n in items[:10]]
        s = " | ".join(parts) + (f" | [… {len(items) - 10} more]" if len(items) > 10 else "")
        return [_clip(s, lim)]
    return [_clip(_to_text(refs), lim)]


def _turn_keys(outputs: Any) -> list[str]:
    if not isinstance(outputs, dict):
        return []
    ts = [k for k in outputs if isinstance(k, str) and re.fullmatch(r"t\d+", k)]
    return sorted(ts, key=lambda k: int(k[1:]))


def _pred(rec: dict[str, Any] | None, key: str | None = None) -> str:
    if rec is None:
        return "—"
    if key is None:
        return _clip(rec.get("prediction", ""), LIMITS["prediction"])
    out = (rec.get("outputs") or {}).get(key) if isinstance(rec.get("outputs"), dict) else None
    if not isinstance(out, dict):
        return "—"
    return _clip(out.get("prediction", ""), LIMITS["prediction"])


def _images(rec: dict[str, Any], thumbs: _Thumbs) -> dict[str, Any]:
    keys = rec.get("images") if isinstance(rec.get("images"), list) else []
    if not keys:
        return {"has": False}
    key = keys[-1]  # the query image (few-shot demos come first)
    return {"has": True, "b64": thumbs.get(key), "key": _clip(_to_text(key), 80), "more": len(keys) - 1}


# ------------------------------------------------------------------------------------------ sections
def _summary(cols: list[_Col], base: _Col | None, tasks: list[str], intersect: bool, n_resamples: int):
    """Headline rows (primary metrics) and the per-task summary tables."""
    cands = [c for c in cols if not c.is_baseline]
    headline, summary = [], []
    for ti, task in enumerate(tasks):
        trs = [c.res.tasks.get(task) for c in cols]
        ref = next(t for t in trs if t is not None)
        comps: list[tuple[dict[str, Any], str]] = []
        if base is not None:
            for c in cands:
                if task in c.res.tasks and task in base.res.tasks:
                    comps.append(_compare(base, c, task, intersect, n_resamples))
                else:
                    comps.append(({}, f"task {task} is not in both runs"))
        rows = []
        for m in _metric_rows(ref):
            info = next((t.metric_info.get(m) for t in trs if t is not None and m in t.metric_info), None) or {}
            unit = info.get("unit", "") or ""
            row = {
                "metric": m, "primary": m == ref.primary_metric,
                "arrow": "↑" if info.get("higher_is_better", True) else "↓",
                "desc": _clip(info.get("description", ""), LIMITS["cell"]),
                "kind": info.get("kind", ""),
                "values": [fmt_value(t.metrics.get(m), unit) if t is not None and m in t.metrics else "—" for t in trs],
                "comps": [_comp_cell(cm.get(m), unit) if not err else None for cm, err in comps],
            }
            rows.append(row)
            if row["primary"]:
                headline.append({"task": task, "anchor": f"t{ti}", **row})
        notes = sorted({mc.note for cm, _ in comps for mc in cm.values() if mc.note and "corpus-only" not in mc.note})
        summary.append({
            "task": task, "anchor": f"t{ti}",
            "n": [str(t.n_samples) if t is not None else "—" for t in trs],
            "rows": rows,
            "omitted": max(0, len(ref.metrics) - len(rows)),
            "errors": [{"label": c.label, "msg": _clip(err, 600)} for c, (_, err) in zip(cands, comps) if err],
            "notes": [_clip(n, 600) for n in notes],
        })
    return headline, summary


def _table(title: str, head: list[str], rows: list[list[str]], *, collapsed: bool = False) -> dict[str, Any]:
    shown = rows[:MAX_TABLE_ROWS]
    return {"title": title, "head": head, "rows": shown, "omitted": len(rows) - len(shown), "collapsed": collapsed}


def _dict_table(title: str, cols: list[_Col], dicts: list[Any], *, counts: list[Any] | None = None, unit: str = "",
                sort_numeric: bool = False) -> dict[str, Any]:
    keys: list[str] = []
    for d in dicts:
        if isinstance(d, dict):
            keys += [k for k in d if k not in keys]
    if sort_numeric:
        keys.sort(key=lambda k: (as_number(k) is None, as_number(k) or 0.0, k))
    head = ["group"] + ([f"n ({cols[0].label})"] if counts is not None else []) + [c.label for c in cols]
    rows = []
    n0 = counts[0] if counts else None
    for k in keys:
        row = [_clip(str(k), LIMITS["cell"])]
        if counts is not None:
            row.append(_s((n0 or {}).get(k)) if isinstance(n0, dict) else "—")
        row += [fmt_value(d.get(k), unit) if isinstance(d, dict) and k in d else "—" for d in dicts]
        rows.append(row)
    return _table(title, head, rows)


_DIALOG_COLS = [("n", "n", ""), ("checks_pass_rate", "checks pass", "%"), ("short_answer_match_rate", "short ans.", "%"),
                ("carry_over_pass_rate", "carry-over", "%"), ("collapse_rate", "collapse", "%"),
                ("truncation_rate", "truncated", "%"), ("eos_rate", "EOS", "%"), ("template_leak_rate", "leak", "%"),
                ("empty_rate", "empty", "%"), ("words.mean", "words (mean)", "")]


def _dialog_tables(cols: list[_Col], pooled: list[Any]) -> list[dict[str, Any]]:
    out = []

    def val(d: Any, path: str) -> Any:
        for p in path.split("."):
            d = d.get(p) if isinstance(d, dict) else None
        return d

    for part, title, label in (("by_turn", "dialogue probes per turn", "turn"),
                               ("by_kind", "dialogue probes per instruction kind", "kind")):
        keys: list[str] = []
        for p in pooled:
            sub = p.get(part) if isinstance(p, dict) else None
            if isinstance(sub, dict):
                keys += [k for k in sub if k not in keys]
        if part == "by_turn":
            keys.sort(key=lambda k: (as_number(k) is None, as_number(k) or 0, k))
        head = [label, "run"] + [c[1] for c in _DIALOG_COLS]
        rows = []
        for k in keys:
            for c, p in zip(cols, pooled):
                d = (p.get(part) or {}).get(k) if isinstance(p, dict) and isinstance(p.get(part), dict) else None
                if d is None:
                    continue
                rows.append([_clip(str(k), 60), c.label] + [fmt_value(val(d, key), u) for key, _, u in _DIALOG_COLS])
        if rows:
            out.append(_table(title, head, rows))
    g = [p.get("grounding") if isinstance(p, dict) else None for p in pooled]
    if any(isinstance(x, dict) for x in g):
        out.append(_dict_table("grounding probe (answers that change with a blank / other image)", cols, g))
    o = [p.get("overall") if isinstance(p, dict) else None for p in pooled]
    if any(isinstance(x, dict) for x in o):
        flat = [{k: v for k, v in x.items() if not isinstance(v, (dict, list))} if isinstance(x, dict) else None
                for x in o]
        t = _dict_table("all turns pooled", cols, flat)
        t["collapsed"] = True
        out.append(t)
    return out


def _breakdowns(cols: list[_Col], tasks: list[str]) -> list[dict[str, Any]]:
    out = []
    for ti, task in enumerate(tasks):
        tcols = [c for c in cols if task in c.res.tasks]
        bds = [c.res.tasks[task].breakdown if isinstance(c.res.tasks[task].breakdown, dict) else {} for c in tcols]
        tables, plots = [], []
        done: set[str] = set()
        if any("accuracy_by_answer_type" in b for b in bds):
            tables.append(_dict_table("accuracy by answer type", tcols, [b.get("accuracy_by_answer_type") for b in bds],
                                      counts=[b.get("n_by_answer_type") for b in bds], unit="%"))
            done |= {"accuracy_by_answer_type", "n_by_answer_type"}
        if any("perAnswerType" in b for b in bds):
            tables.append(_dict_table("VQA accuracy per answer type", tcols, [b.get("perAnswerType") for b in bds]))
            done.add("perAnswerType")
        if any("perQuestionType" in b for b in bds):
            tables.append(_dict_table("VQA accuracy per question type", tcols, [b.get("perQuestionType") for b in bds]))
            done.add("perQuestionType")
        if any("accuracy_by_true_count" in b for b in bds):
            accs = [b.get("accuracy_by_true_count") for b in bds]
            tables.append(_dict_table("counting accuracy by true count", tcols, accs,
                                      counts=[b.get("n_by_true_count") for b in bds], unit="%", sort_numeric=True))
            if any(isinstance(b.get("mae_by_true_count"), dict) for b in bds):
                tables.append(_dict_table("counting MAE by true count (parsable answers)", tcols,
                                          [b.get("mae_by_true_count") for b in bds], sort_numeric=True))
            cats: list[str] = []
            for a in accs:
                if isinstance(a, dict):
                    cats += [k for k in a if k not in cats]
            cats.sort(key=lambda k: (as_number(k) is None, as_number(k) or 0.0, k))
            cats = cats[:MAX_TABLE_ROWS]
            if cats:
                try:
                    plots.append({"title": "accuracy (%) by true count", "b64": _bar_plot(
                        cats, [(c.label, [as_number(a.get(k)) if isinstance(a, dict) else None for k in cats])
                               for c, a in zip(tcols, accs)][:MAX_COLUMNS * 2], "accuracy (%)", "true count", ylim=(0, 100))})
                except Exception as e:  # noqa: BLE001 - a plot must not break the report
                    plots.append({"title": "accuracy by true count", "b64": None, "error": _clip(str(e), 200)})
            done |= {"accuracy_by_true_count", "n_by_true_count", "mae_by_true_count"}
        if any("pooled_turns" in b for b in bds):
            tables += _dialog_tables(tcols, [b.get("pooled_turns") for b in bds])
            done.add("pooled_turns")
        # anything else: dicts of scalars as tables, scalars in one key/value table
        scalars: list[str] = []
        for b in bds:
            for k, v in b.items():
                if k in done:
                    continue
                if isinstance(v, dict) and v and all(not isinstance(x, (dict, list)) for x in v.values()):
                    done.add(k)
                    tables.append(_dict_table(str(k), tcols, [bb.get(k) for bb in bds]))
                elif not isinstance(v, (dict, list)) and k not in scalars:
                    scalars.append(k)
        if scalars:
            tables.append(_table("other breakdown values", ["key"] + [c.label for c in tcols],
                                 [[_clip(k, 80)] + [_s(b.get(k)) if k in b else "—" for b in bds] for k in scalars]))
        notes = []
        for c in tcols:
            for n in c.res.tasks[task].notes[:10]:
                s = _clip(_to_text(n), 400)
                if s not in notes:
                    notes.append(s)
        out.append({"task": task, "anchor": f"t{ti}", "tables": tables[:20], "plots": plots, "notes": notes})
    return out


def _trend(runs: list[_Col], base: _Col | None, tasks: list[str]) -> dict[str, Any] | None:
    """Primary metric vs checkpoint step (or epoch, or position). The baseline joins the lines when it
    has the same kind of x value; otherwise it is drawn as a dashed reference line per metric."""
    if len(runs) < 2:
        return None
    steps = [_checkpoint_x(c.res) for c in runs]
    bstep = _checkpoint_x(base.res) if base is not None else (None, None)
    if all(s is not None for s, _ in steps):
        xs, xlabel, ticks, bx = [s for s, _ in steps], "checkpoint step", False, bstep[0]
    elif all(e is not None for _, e in steps):
        xs, xlabel, ticks, bx = [e for _, e in steps], "checkpoint epoch", False, bstep[1]
    else:
        xs, xlabel, ticks, bx = [float(i + 1) for i in range(len(runs))], "run (position)", True, None
    pts = list(zip(xs, runs))
    if base is not None and bx is not None:
        pts.append((bx, base))
    pts.sort(key=lambda p: (p[0], 0 if p[1].is_baseline else 1))
    xs_o = [x for x, _ in pts]
    cols_o = [c for _, c in pts]
    base_line = base is not None and bx is None
    lines, rows = [], []
    for task in tasks[:12]:
        trs = [c.res.tasks.get(task) for c in cols_o]
        ref = next((t for t in trs if t is not None), None)
        if ref is None:
            continue
        m = ref.primary_metric
        unit = (ref.metric_info.get(m) or {}).get("unit", "") or ""
        ys = [as_number(t.metrics.get(m)) if t is not None else None for t in trs]
        bval = None
        if base_line and task in base.res.tasks:  # type: ignore[union-attr]
            bval = as_number(base.res.tasks[task].metrics.get(m))  # type: ignore[union-attr]
        lines.append((f"{task}/{m}", ys, bval))
        rows.append([_clip(f"{task}/{m}", 80)] + ([fmt_value(bval, unit)] if base_line else [])
                    + [fmt_value(y, unit) for y in ys])
    if not lines:
        return None
    head = ["metric"] + (["baseline"] if base_line else []) + [
        ("baseline: " if c.is_baseline else "") + (c.label if ticks else f"{c.label} ({xlabel.split()[-1]} {_g(x)})")
        for c, x in zip(cols_o, xs_o)]
    try:
        b64 = _line_plot(xs_o, [c.label for c in cols_o] if ticks else None, lines, xlabel)
        err = ""
    except Exception as e:  # noqa: BLE001 - a plot must not break the report
        b64, err = None, _clip(str(e), 200)
    return {"b64": b64, "error": err, "xlabel": xlabel, "table": _table("values", head, rows),
            "base_line": base_line, "base_point": base is not None and not base_line}


def _card(task: str, rid: str, recs: list[tuple[_Col, dict[str, Any] | None]], key: str, info: dict[str, Any],
          thumbs: _Thumbs, delta: float | None) -> dict[str, Any]:
    main = next(r for _, r in reversed(recs) if r is not None)
    prompts = []
    seen: set[str] = set()
    for c, r in recs:
        if r is None:
            continue
        p = _to_text(r.get("prompt", ""))
        if p in seen:
            continue
        seen.add(p)
        prompts.append({"label": c.label, "text": _clip(p, LIMITS["prompt"], tail=True)})
    if len(prompts) == 1:
        prompts[0]["label"] = ""
    turns = _turn_keys(main.get("outputs"))
    outs = []
    for c, r in recs:
        v = _sample_value(r, key) if r is not None else None
        entry = {"label": c.label, "baseline": c.is_baseline, "score": f"{key} = {fmt_value(v)}"}
        if turns and r is not None:
            entry["turns"] = [{"key": t, "text": _pred(r, t)} for t in turns[:8]]
            entry["more"] = max(0, len(turns) - 8)
        else:
            entry["text"] = _pred(r)
        outs.append(entry)
    return {"id": _clip(rid, LIMITS["short"]), "image": _images(main, thumbs), "prompts": prompts, "outputs": outs,
            "refs": _ref_lines(main.get("references")), "delta": fmt_delta(delta) if delta is not None else ""}


def _galleries(runs: list[_Col], base: _Col | None, tasks: list[str], max_gallery: int,
               thumbs: _Thumbs) -> list[dict[str, Any]]:
    out = []
    if max_gallery <= 0:
        return out
    pairs = [(base, c) for c in runs[-(MAX_COLUMNS - 1):]] if base is not None else [(None, runs[0])]
    for ti, task in enumerate(tasks):
        for b, c in pairs:
            if task not in c.res.tasks or (b is not None and task not in b.res.tasks):
                continue
            tr = c.res.tasks[task]
            metric, key, info = _per_sample_key(tr)
            g = {"task": task, "anchor": f"t{ti}", "label": c.label, "vs": b.label if b else None,
                 "metric": metric or "", "key": key or "", "sections": [], "msg": "", "stats": ""}
            if key is None:
                g["msg"] = "this task has no per-sample metric to rank samples by"
                out.append(g)
                continue
            sign = 1.0 if info.get("higher_is_better", True) else -1.0
            try:
                rc = c.by_id(task)
                rb = b.by_id(task) if b is not None else None
            except UserError as e:
                g["msg"] = _clip(str(e), 400)
                out.append(g)
                continue
            if rb is not None:
                common = [i for i in rc if i in rb]
                scored = []
                for i in common:
                    vb, vc = _sample_value(rb[i], key), _sample_value(rc[i], key)
                    if vb is None or vc is None:
                        continue
                    scored.append(((vc - vb) * sign, i, vc - vb))
                n_changed = sum(1 for i in common if _to_text(rb[i].get("prediction")) != _to_text(rc[i].get("prediction")))
                worse = sorted([s for s in scored if s[0] < 0], key=lambda s: (s[0], s[1]))
                better = sorted([s for s in scored if s[0] > 0], key=lambda s: (-s[0], s[1]))
                g["stats"] = (f"{len(scored)} paired samples scored ({len(common)} in both runs): {len(worse)} worse, "
                              f"{len(better)} better, {len(scored) - len(worse) - len(better)} tied on {key}; "
                              f"{n_changed} predictions differ")
                for title, lst, cls in (("largest regressions", worse, "bad"), ("largest improvements", better, "good")):
                    cards = [_card(task, i, [(b, rb[i]), (c, rc[i])], key, info, thumbs, d)
                             for _, i, d in lst[:max_gallery]]
                    g["sections"].append({"title": title, "cls": cls, "cards": cards,
                                          "omitted": max(0, len(lst) - max_gallery),
                                          "empty": f"no sample got {'worse' if cls == 'bad' else 'better'} on {key}"})
            else:
                scored = [(v * sign, i, v) for i, r in rc.items() if (v := _sample_value(r, key)) is not None]
                g["stats"] = f"{len(scored)} samples scored on {key} (of {len(rc)})"
                asc = sorted(scored, key=lambda s: (s[0], s[1]))
                desc = sorted(scored, key=lambda s: (-s[0], s[1]))
                if asc and asc[0][0] == asc[-1][0]:
                    g["stats"] += f"; every sample has the same value ({fmt_value(asc[0][2])})"
                for title, lst, cls in (("worst samples", asc, "bad"), ("best samples", desc, "good")):
                    cards = [_card(task, i, [(c, rc[i])], key, info, thumbs, None) for _, i, _ in lst[:max_gallery]]
                    g["sections"].append({"title": title, "cls": cls, "cards": cards, "omitted": 0,
                                          "empty": "no scored samples"})
            out.append(g)
    return out


_GOOD_FLAGS = ["checks_pass", "short_answer_match", "count_exact", "must_include_pass", "must_not_include_pass",
               "max_words_pass", "min_words_pass", "carry_over_pass"]
_BAD_FLAGS = ["collapsed", "truncated", "template_leak", "empty", "repeated_sentence"]


def _flags(turn: Any) -> list[dict[str, str]]:
    if not isinstance(turn, dict):
        return []
    out = []
    for k in _GOOD_FLAGS:
        v = turn.get(k)
        if isinstance(v, bool):
            out.append({"name": k.replace("_", " "), "cls": "good" if v else "bad", "mark": "✓" if v else "✗"})
    for k in _BAD_FLAGS:
        if turn.get(k) is True:
            out.append({"name": k.replace("_", " "), "cls": "warn", "mark": "!"})
    if as_number(turn.get("words")) is not None:
        out.append({"name": f"{_g(float(turn['words']))} words", "cls": "ns", "mark": ""})
    return out


def _is_dialog(records: list[dict[str, Any]]) -> bool:
    for r in records[:5]:
        refs = r.get("references")
        if _turn_keys(r.get("outputs")) and isinstance(refs, list) and refs and isinstance(refs[0], dict) \
                and "instruction" in refs[0]:
            return True
    return False


def _transcripts(runs: list[_Col], base: _Col | None, tasks: list[str], thumbs: _Thumbs,
                 n_conv: int = MAX_TRANSCRIPTS) -> list[dict[str, Any]]:
    out = []
    if n_conv <= 0:
        return out
    tcols_all = ([base] if base is not None else []) + runs[-(MAX_COLUMNS - (1 if base is not None else 0)):]
    for ti, task in enumerate(tasks):
        tcols = [c for c in tcols_all if task in c.res.tasks]
        if not tcols:
            continue
        try:
            recs = [c.by_id(task) for c in tcols]
        except UserError:
            continue
        first = next(iter(recs[0].values()), None)
        if first is None or not _is_dialog(list(recs[0].values())[:5]):
            continue
        ids = [i for i in recs[0] if all(i in r for r in recs)]
        tr = tcols[-1].res.tasks[task]
        _, key, info = _per_sample_key(tr)
        if base is not None and key is not None and len(tcols) > 1:
            def diff(i: str) -> float:
                vb, vc = _sample_value(recs[0][i], key), _sample_value(recs[-1][i], key)
                return 0.0 if vb is None or vc is None else abs(vc - vb)
            ids = sorted(ids, key=lambda i: (-diff(i), i))
        convs = []
        for i in ids[:n_conv]:
            rs = [r[i] for r in recs]
            refs = rs[0].get("references") if isinstance(rs[0].get("references"), list) else []
            n_turns = max(len(_turn_keys(r.get("outputs"))) for r in rs)
            turns = []
            for t in range(min(n_turns, 12)):
                ref = refs[t] if t < len(refs) and isinstance(refs[t], dict) else {}
                answers = []
                for r in rs:
                    pt = (r.get("metrics") or {}).get("turns") if isinstance(r.get("metrics"), dict) else None
                    answers.append({"text": _pred(r, f"t{t}"),
                                    "flags": _flags(pt[t] if isinstance(pt, list) and t < len(pt) else None)})
                turns.append({"n": t, "instruction": _clip(_to_text(ref.get("instruction", "")), LIMITS["instruction"]),
                              "kind": _clip(_to_text(ref.get("kind", "")), 40),
                              "reference": "—" if ref.get("reference") is None else
                              _clip(_to_text(ref.get("reference")), LIMITS["reference"]),
                              "answers": answers})
            grounding = []
            for gk, gname in (("blank", "same question, blank image"), ("other", "same question, another image")):
                if any(isinstance(r.get("outputs"), dict) and gk in r["outputs"] for r in rs):
                    grounding.append({"name": gname, "answers": [_pred(r, gk) for r in rs]})
            convs.append({"id": _clip(i, LIMITS["short"]), "image": _images(rs[-1], thumbs), "turns": turns,
                          "grounding": grounding,
                          "scores": [f"{key} = {fmt_value(_sample_value(r, key))}" if key else "" for r in rs]})
        out.append({"task": task, "anchor": f"t{ti}", "labels": [c.label for c in tcols],
                    "baseline": [c.is_baseline for c in tcols], "convs": convs, "total": len(ids)})
    return out


def _provenance(cols: list[_Col], tasks: list[str]) -> dict[str, Any]:
    rows: list[tuple[str, list[Any]]] = []

    def get(d: Any, *path: str) -> Any:
        for p in path:
            d = d.get(p) if isinstance(d, dict) else None
        return d

    def add(name: str, fn: Callable[[RunResults], Any]) -> None:
        vals = []
        for c in cols:
            try:
                vals.append(fn(c.res))
            except Exception:  # noqa: BLE001 - provenance is best effort
                vals.append(None)
        rows.append((name, vals))

    add("results file", lambda r: str(r.path) if r.path else None)
    add("created", lambda r: r.created)
    add("command", lambda r: " ".join(map(str, get(r.run, "argv") or [])) or None)
    versions: list[str] = []
    for c in cols:
        v = get(c.res.provenance, "versions")
        if isinstance(v, dict):
            versions += [k for k in v if k not in versions]
    for k in versions:
        add(f"version: {k}", lambda r, k=k: get(r.provenance, "versions", k))

    def git(r: RunResults) -> Any:
        g = get(r.provenance, "git")
        if not isinstance(g, dict) or not g.get("hash"):
            return None
        return f"{str(g['hash'])[:12]}{' (dirty)' if g.get('dirty') else ''}"
    add("git commit", git)
    add("host", lambda r: get(r.provenance, "host"))
    add("platform", lambda r: get(r.provenance, "platform"))
    add("python", lambda r: get(r.provenance, "python"))
    add("accelerator", lambda r: get(r.provenance, "cuda") or "cpu")
    add("torch threads", lambda r: get(r.provenance, "torch_threads"))
    add("model spec", lambda r: " · ".join(str(x) for x in (get(r.model, "model_spec", "name"),
                                                           get(r.model, "model_spec", "source")) if x) or None)
    add("precision / device", lambda r: f"{get(r.model, 'model_spec', 'precision')} / {get(r.model, 'device')} "
                                        f"({get(r.model, 'dtype')})")
    add("parameters", lambda r: f"{int(get(r.model, 'parameters')):,}" if get(r.model, "parameters") else None)
    add("checkpoint", lambda r: get(r.model, "checkpoint", "path"))
    add("checkpoint format", lambda r: " / ".join(str(x) for x in (get(r.model, "checkpoint", "format"),
                                                                   get(r.model, "checkpoint", "layout")) if x) or None)
    add("checkpoint sha256", lambda r: get(r.model, "checkpoint", "sha256"))
    add("checkpoint step / epoch", lambda r: " / ".join(_s(x) for x in _checkpoint_x(r)) if any(
        x is not None for x in _checkpoint_x(r)) else None)
    add("LoRA", lambda r: (lambda l: f"r={l.get('r')} alpha={l.get('alpha')}" if isinstance(l, dict) else None)(
        get(r.model, "checkpoint", "lora")))
    add("OpenFlamingo base sha256", lambda r: get(r.model, "openflamingo_checkpoint_sha256"))
    add("seed", lambda r: get(r.run, "seed"))
    add("batch size / limit", lambda r: f"{get(r.run, 'batch_size')} / {get(r.run, 'limit')}")
    add("few-shot", lambda r: get(r.run, "num_fewshot"))
    for task in tasks:
        def tget(r: RunResults, task: str = task):
            return r.tasks.get(task)
        add(f"{task}: template", lambda r, tg=tget: (lambda t: f"{t.template.get('name')} "
                                                     f"{str(t.template.get('sha256', ''))[:12]}" if t else None)(tg(r)))
        add(f"{task}: generation", lambda r, tg=tget: (lambda t: ", ".join(
            f"{k}={v}" for k, v in t.generation.items() if k in ("max_new_tokens", "num_beams", "do_sample",
                                                                 "temperature", "seed")) if t else None)(tg(r)))
        add(f"{task}: samples", lambda r, tg=tget: (lambda t: f"{t.n_samples} of {t.n_available}" if t else None)(tg(r)))
        add(f"{task}: fingerprint", lambda r, tg=tget: (lambda t: str(t.fingerprint)[:16] or None if t else None)(tg(r)))
        add(f"{task}: throughput", lambda r, tg=tget: (lambda t: (
            f"{_s(t.timing.get('samples_per_s'))} samples/s, {_s(t.timing.get('tokens_per_s'))} tokens/s, "
            f"{_s(t.timing.get('wall_s'))} s") if t and t.timing else None)(tg(r)))
    add("wall time (s)", lambda r: get(r.provenance, "wall_time_s"))
    add("peak CPU RSS (MB)", lambda r: get(r.provenance, "peak_memory", "cpu_rss_mb"))
    add("peak GPU memory (MB)", lambda r: get(r.provenance, "peak_memory", "gpu_allocated_mb"))
    out_rows: list[dict[str, Any]] = []
    ver_rows: list[dict[str, Any]] = []
    for name, vals in rows:
        if all(v is None for v in vals):
            continue
        cells = [_s(v) for v in vals]
        differs = len(cols) > 1 and len(set(cells)) > 1 and name not in ("results file", "created", "command")
        is_ver = name.startswith("version: ")
        row = {"name": _clip(name[len("version: "):] if is_ver else name, 120), "cells": cells, "differs": differs}
        (ver_rows if is_ver else out_rows).append(row)
    return {"labels": [c.label for c in cols], "rows": out_rows, "versions": ver_rows,
            "versions_differ": sum(1 for r in ver_rows if r["differs"])}


def _gate_view(gate: dict[str, Any]) -> dict[str, Any]:
    g = gate.get("gate") if isinstance(gate.get("gate"), dict) and "verdict" not in gate else gate
    verdict = _to_text(g.get("verdict", "unknown"))
    cls = {"pass": "good", "regression": "bad", "error": "warn"}.get(verdict, "ns")
    rules = []
    for r in (g.get("rules") or [])[:200]:
        if not isinstance(r, dict):
            continue
        rule = r.get("rule") if isinstance(r.get("rule"), dict) else {}
        status = _to_text(r.get("status", ""))
        ci = ""
        if r.get("ci_low") is not None and r.get("ci_high") is not None:
            ci = f"[{fmt_delta(r.get('ci_low'))}, {fmt_delta(r.get('ci_high'))}]"
            if as_number(r.get("interval_confidence")) is not None:
                ci += f" ({_g(100 * float(r['interval_confidence']))}%)"
        rules.append({"task": _s(r.get("task", rule.get("task"))), "metric": _s(r.get("metric", rule.get("metric"))),
                      "status": _clip(status, 40),
                      "cls": {"pass": "good", "regression": "bad", "error": "warn"}.get(status, "ns"),
                      "baseline": fmt_value(r.get("baseline")), "candidate": fmt_value(r.get("candidate")),
                      "delta": fmt_delta(r.get("delta")), "ci": ci,
                      "margin": fmt_value(r.get("margin")), "direction": _s(rule.get("direction")),
                      "n": _s(r.get("n")), "p": fmt_p(r.get("p_value")),
                      "note": _clip(_to_text(r.get("note") or ""), 200),
                      "message": _clip(_to_text(r.get("message") or ""), 600)})
    counts = g.get("counts") if isinstance(g.get("counts"), dict) else {}
    return {"verdict": _clip(verdict, 40), "cls": cls, "exit_code": _s(g.get("exit_code")),
            "counts": ", ".join(f"{v} {k}" for k, v in counts.items() if v),
            "rules": rules}


def load_gate(path: str | os.PathLike) -> dict[str, Any]:
    """Read a gate result JSON (``GateResult.to_dict()``); anything else is a UserError."""
    from .io import read_json

    d = read_json(path)
    if isinstance(d, dict) and "verdict" not in d and isinstance(d.get("gate"), dict):
        d = d["gate"]
    if not isinstance(d, dict) or "verdict" not in d or not isinstance(d.get("rules"), list):
        raise UserError("not a gate result file (expected a JSON object with 'verdict' and 'rules')", path)
    return d


# ------------------------------------------------------------------------------------------ rendering
def _env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent)), autoescape=True,
                      undefined=StrictUndefined, finalize=_clean, trim_blocks=True, lstrip_blocks=True)
    return env


def _labels(runs: Sequence[RunResults], baseline: RunResults | None, labels: list[str] | None) -> tuple[list[str], str]:
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(runs):
            raise UserError(f"{len(labels)} labels given for {len(runs)} runs; give one label per run")
        if any(not x.strip() for x in labels):
            raise UserError("labels must not be empty")
    names = labels or [_default_label(r, i) for i, r in enumerate(runs)]
    bname = _default_label(baseline, len(runs)) if baseline is not None else ""
    # make them unique (the baseline keeps its name; duplicates get #2, #3 ...)
    seen: dict[str, int] = {bname: 1} if baseline is not None else {}
    out = []
    for n in names:
        n = _clip(n, 60)
        if n in seen:
            seen[n] += 1
            n = f"{n} #{seen[n]}"
        seen[n] = 1
        out.append(n)
    return out, (_clip(bname, 60) if baseline is not None else "")


def build_report(runs: list[RunResults], *, baseline: RunResults | None = None, gate: dict | None = None,
                 labels: list[str] | None = None, max_gallery: int = 12, intersect: bool = False,
                 n_resamples: int = 10000, title: str | None = None, max_bytes: int = MAX_BYTES) -> str:
    """Render the HTML report of ``runs`` (compared with ``baseline`` when given) and return it."""
    runs = list(runs)
    if not runs:
        raise UserError("no runs to report")
    if max_gallery < 0:
        raise UserError("max_gallery must be >= 0")
    if gate is not None and not isinstance(gate, dict):
        raise UserError("gate must be a gate result dict (GateResult.to_dict())")
    run_labels, base_label = _labels(runs, baseline, labels)
    base = _Col(base_label, baseline, is_baseline=True) if baseline is not None else None
    rcols = [_Col(lbl, r) for lbl, r in zip(run_labels, runs)]
    cols = ([base] if base is not None else []) + rcols
    tasks: list[str] = []
    for c in cols:
        tasks += [t for t in c.res.tasks if t not in tasks]
    thumbs = _Thumbs()

    headline, summary = _summary(cols, base, tasks, intersect, n_resamples)
    breakdowns = _breakdowns(cols, tasks)
    trend = _trend(rcols, base, tasks)
    provenance = _provenance(cols, tasks)
    gate_view = _gate_view(gate) if gate is not None else None
    env = _env()
    tpl = env.get_template("report.html.j2")

    gallery_n, n_conv, shrunk = max_gallery, MAX_TRANSCRIPTS, ""
    while True:
        galleries = _galleries(rcols, base, tasks, gallery_n, thumbs)
        transcripts = _transcripts(rcols, base, tasks, thumbs, n_conv)
        html = tpl.render(
            title=title or "mmgpt-eval report",
            generated=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            version=_version(),
            cols=[{"label": c.label, "baseline": c.is_baseline, "path": str(c.res.path) if c.res.path else "",
                   "created": c.res.created} for c in cols],
            has_baseline=base is not None, base_label=base_label,
            cand_labels=[c.label for c in rcols] if base is not None else [],
            headline=headline, summary=summary, breakdowns=breakdowns, trend=trend, galleries=galleries,
            transcripts=transcripts, provenance=provenance, gate=gate_view, max_gallery=gallery_n,
            shrunk=shrunk, intersect=intersect,
            dagger=any(c and c["dagger"] for t in summary for r in t["rows"] for c in r["comps"]),
        )
        html = html.encode("utf-8", "replace").decode("utf-8")
        if len(html.encode("utf-8")) <= max_bytes or (gallery_n == 0 and n_conv == 0):
            return html
        gallery_n, n_conv = gallery_n // 2, n_conv // 2
        shrunk = (f"The page exceeded {max_bytes // 1_000_000} MB, so galleries were cut to {gallery_n} samples "
                  f"each and transcripts to {n_conv}.")


def _version() -> str:
    try:
        from . import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "?"


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
