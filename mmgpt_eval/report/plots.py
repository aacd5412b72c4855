"""Plots as base64 PNG (matplotlib, Agg; imported only when a plot is drawn): bar plots that task hooks
describe as data (:class:`~mmgpt_eval.taskapi.reporting.BarPlot`) and the trend line plot."""

from __future__ import annotations

import base64
import io
from typing import Any

from ..taskapi.reporting import BarPlot
from .limits import LIMITS, MAX_PLOT_SERIES, MAX_TABLE_ROWS
from .text import clip, number, to_text

PALETTE = ["#6b7280", "#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2", "#65a30d"]


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100)


def _fig_png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plot_rc():
    import matplotlib

    return matplotlib.rc_context(
        {
            "text.parse_math": False,
            "text.usetex": False,
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "svg.fonttype": "path",
        }
    )


def _s(v: Any) -> str:
    return v if isinstance(v, str) else to_text(v)


def bar_plot(p: BarPlot) -> dict[str, Any] | None:
    """A task's bar plot as ``{"title", "b64"}`` (or ``"error"`` when drawing failed); None when ``p``
    is not a BarPlot or has nothing to draw. Categories and series are capped; non-numbers are gaps."""
    if not isinstance(p, BarPlot):
        return None
    title = clip(_s(p.title), LIMITS["short"])
    try:
        cats = [_s(c) for c in list(p.categories)[:MAX_TABLE_ROWS]]
        series = []
        for s in list(p.series)[:MAX_PLOT_SERIES]:
            label, vals = s
            vals = list(vals)[: len(cats)] if isinstance(vals, (list, tuple)) else []
            series.append((_s(label), [number(v) for v in vals] + [None] * (len(cats) - len(vals))))
        ylim = None
        if isinstance(p.ylim, (list, tuple)) and len(p.ylim) == 2:
            lo, hi = number(p.ylim[0]), number(p.ylim[1])
            if lo is not None and hi is not None:
                ylim = (lo, hi)
        if not cats:
            return None
        return {"title": title, "b64": _bar_png(cats, series, _s(p.ylabel or ""), _s(p.xlabel or ""), ylim)}
    except Exception as e:  # noqa: BLE001 - a plot must not break the report
        return {"title": title, "b64": None, "error": clip(str(e), 200)}


def _bar_png(
    categories: list[str],
    series: list[tuple[str, list[float | None]]],
    ylabel: str,
    xlabel: str,
    ylim: tuple[float, float] | None = None,
) -> str:
    import numpy as np

    with _plot_rc():
        fig = _figure(max(4.0, min(8.0, 0.3 * len(categories) * max(1, len(series)) + 2)), 2.3)
        ax = fig.add_subplot(1, 1, 1)
        n = max(1, len(series))
        width = 0.8 / n
        x = np.arange(len(categories))
        for i, (label, vals) in enumerate(series):
            ys = [np.nan if v is None else v for v in vals]
            ax.bar(x + (i - (n - 1) / 2) * width, ys, width, label=clip(label, 40), color=PALETTE[i % len(PALETTE)])
        ax.set_xticks(x)
        ax.set_xticklabels([clip(c, 12) for c in categories])
        ax.set_xlabel(clip(xlabel, 80))
        ax.set_ylabel(clip(ylabel, 80))
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.grid(axis="x", visible=False)
        if n > 1:
            ax.legend(fontsize=7, frameon=False, ncol=min(n, 4), loc="upper left", bbox_to_anchor=(0, 1.18))
        return _fig_png(fig)


def line_plot(
    xs: list[float],
    xticklabels: list[str] | None,
    lines: list[tuple[str, list[float | None], float | None]],
    xlabel: str,
) -> str:
    import numpy as np

    with _plot_rc():
        fig = _figure(7.5, 3.0)
        ax = fig.add_subplot(1, 1, 1)
        for i, (label, ys, base) in enumerate(lines):
            c = PALETTE[(i + 1) % len(PALETTE)]
            ax.plot(
                xs, [np.nan if v is None else v for v in ys], marker="o", ms=4, lw=1.6, color=c, label=clip(label, 50)
            )
            if base is not None:
                ax.axhline(base, color=c, lw=1, ls="--", alpha=0.6)
        if xticklabels is not None:
            ax.set_xticks(xs)
            ax.set_xticklabels(
                [clip(t, 14) for t in xticklabels],
                rotation=20 if len(xs) > 4 else 0,
                ha="right" if len(xs) > 4 else "center",
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("metric value (task units)")
        ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.01, 0.5))
        return _fig_png(fig)
