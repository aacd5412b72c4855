"""The dialogue task's report view: the pooled-turn probes per turn and per instruction kind, the
grounding probe and all turns pooled as tables; each conversation as a transcript with per-turn flags
(checks passed or failed, problems, length) and the grounding probe's answers below it."""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi.reporting import (
    Column,
    ExtraOutput,
    Flag,
    ReportHooks,
    ReportTables,
    SampleRecord,
    Table,
    Transcript,
    Turn,
    clip,
    dict_table,
    fmt_num,
    fmt_value,
    keys_of,
    number,
    to_text,
)


class DialogView(ReportHooks):
    # pooled-turn columns: (key in a summary of breakdown["pooled_turns"], header, unit)
    _COLUMNS = (
        ("n", "n", ""),
        ("checks_pass_rate", "checks pass", "%"),
        ("short_answer_match_rate", "short ans.", "%"),
        ("carry_over_pass_rate", "carry-over", "%"),
        ("turn_collapse_rate", "collapse", "%"),
        ("turn_truncation_rate", "truncated", "%"),
        ("turn_eos_rate", "EOS", "%"),
        ("turn_template_leak_rate", "leak", "%"),
        ("turn_empty_rate", "empty", "%"),
        ("words.mean", "words (mean)", ""),
    )
    # pooled-turn rates as runs before the turn_ prefix wrote them
    _OLD_RATES = {
        "collapse_rate": "turn_collapse_rate",
        "eos_rate": "turn_eos_rate",
        "empty_rate": "turn_empty_rate",
        "truncation_rate": "turn_truncation_rate",
        "template_leak_rate": "turn_template_leak_rate",
    }
    # per-turn probes shown as flags in transcripts: checks (pass / fail) and problems (when true)
    _CHECK_FLAGS = (
        "checks_pass",
        "short_answer_match",
        "count_exact",
        "must_include_pass",
        "must_not_include_pass",
        "max_words_pass",
        "min_words_pass",
        "carry_over_pass",
    )
    _PROBLEM_FLAGS = ("collapsed", "truncated", "template_leak", "empty", "repeated_sentence")

    @classmethod
    def _summary(cls, s: Any) -> dict[str, Any] | None:
        """One pooled summary with the old rate names read as the new ones (new keys win)."""
        if not isinstance(s, dict):
            return None
        out = {cls._OLD_RATES[k]: v for k, v in s.items() if k in cls._OLD_RATES}
        out.update({k: v for k, v in s.items() if k not in cls._OLD_RATES})
        return out

    def report_tables(self, columns: list[Column]) -> ReportTables:
        if not any("pooled_turns" in c.breakdown for c in columns):
            return ReportTables()
        found = [c.breakdown.get("pooled_turns") for c in columns]
        pooled: list[dict[str, Any]] = [p if isinstance(p, dict) else {} for p in found]
        tables = []

        def val(d: Any, path: str) -> Any:
            for p in path.split("."):
                d = d.get(p) if isinstance(d, dict) else None
            return d

        for part, title, label in (
            ("by_turn", "dialogue probes per turn", "turn"),
            ("by_kind", "dialogue probes per instruction kind", "kind"),
        ):
            parts = [p.get(part) for p in pooled]
            rows = []
            for k in keys_of(parts, numeric=part == "by_turn"):
                for c, sub in zip(columns, parts):
                    d = self._summary(sub.get(k)) if isinstance(sub, dict) else None
                    if d is None:
                        continue
                    rows.append(
                        [clip(str(k), 60), c.label] + [fmt_value(val(d, key), unit) for key, _, unit in self._COLUMNS]
                    )
            if rows:
                tables.append(Table(title, [label, "run"] + [h for _, h, _ in self._COLUMNS], rows))
        grounding = [p.get("grounding") for p in pooled]
        if any(isinstance(g, dict) for g in grounding):
            tables.append(
                dict_table("grounding probe (answers that change with a blank / other image)", columns, grounding)
            )
        overall = [self._summary(p.get("overall")) for p in pooled]
        if any(isinstance(o, dict) for o in overall):
            flat = [
                {k: v for k, v in o.items() if not isinstance(v, (dict, list))} if isinstance(o, dict) else None
                for o in overall
            ]
            tables.append(dict_table("all turns pooled", columns, flat, collapsed=True))
        return ReportTables(tables=tables, consumed={"pooled_turns"})

    def transcript(self, record: SampleRecord) -> Transcript | None:
        outputs = record.outputs if isinstance(record.outputs, dict) else {}
        n = sum(1 for k in outputs if isinstance(k, str) and k[:1] == "t" and k[1:].isascii() and k[1:].isdigit())
        if not n:
            return None
        refs = record.references if isinstance(record.references, list) else []
        probes = record.metrics.get("turns") if isinstance(record.metrics, dict) else None
        probes = probes if isinstance(probes, list) else []
        turns = []
        for t in range(n):
            ref = refs[t] if t < len(refs) and isinstance(refs[t], dict) else {}
            turns.append(
                Turn(
                    output_key=f"t{t}",
                    instruction=to_text(ref.get("instruction", "")),
                    kind=to_text(ref.get("kind", "")),
                    reference=None if ref.get("reference") is None else to_text(ref["reference"]),
                    flags=self._flags(probes[t] if t < len(probes) else None),
                )
            )
        extras = [
            ExtraOutput(name, key, "grounding probe")
            for key, name in (("blank", "same question, blank image"), ("other", "same question, another image"))
            if key in outputs
        ]
        return Transcript(turns, extras)

    @classmethod
    def _flags(cls, probes: Any) -> list[Flag]:
        if not isinstance(probes, dict):
            return []
        flags = [
            Flag(k.replace("_", " "), "good" if probes[k] else "bad")
            for k in cls._CHECK_FLAGS
            if isinstance(probes.get(k), bool)
        ]
        flags += [Flag(k.replace("_", " "), "warn") for k in cls._PROBLEM_FLAGS if probes.get(k) is True]
        words = number(probes.get("words"))
        if words is not None:
            flags.append(Flag(f"{fmt_num(words)} words", "info"))
        return flags
