"""The counting task's report view: accuracy (and MAE) by true count as tables, and accuracy by true
count as a bar plot per run."""

from __future__ import annotations

from mmgpt_eval.taskapi.reporting import BarPlot, Column, ReportHooks, ReportTables, dict_table, keys_of, number


class CountingView(ReportHooks):
    def report_tables(self, columns: list[Column]) -> ReportTables:
        if not any("accuracy_by_true_count" in c.breakdown for c in columns):
            return ReportTables()
        accs = [c.breakdown.get("accuracy_by_true_count") for c in columns]
        out = ReportTables(consumed={"accuracy_by_true_count", "n_by_true_count", "mae_by_true_count"})
        out.tables.append(
            dict_table(
                "counting accuracy by true count",
                columns,
                accs,
                counts=[c.breakdown.get("n_by_true_count") for c in columns],
                unit="%",
                sort_numeric=True,
            )
        )
        if any(isinstance(c.breakdown.get("mae_by_true_count"), dict) for c in columns):
            out.tables.append(
                dict_table(
                    "counting MAE by true count (parsable answers)",
                    columns,
                    [c.breakdown.get("mae_by_true_count") for c in columns],
                    sort_numeric=True,
                )
            )
        counts = [str(k) for k in keys_of(accs, numeric=True)]
        if counts:
            out.plots.append(
                BarPlot(
                    "accuracy (%) by true count",
                    counts,
                    [
                        (c.label, [number(a.get(k)) if isinstance(a, dict) else None for k in counts])
                        for c, a in zip(columns, accs)
                    ],
                    xlabel="true count",
                    ylabel="accuracy (%)",
                    ylim=(0, 100),
                )
            )
        return out
