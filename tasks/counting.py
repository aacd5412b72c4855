"""Counting: "How many X are there?". Sources (first one given wins):

* embedded (default): procedurally rendered 64x64 images with 0-10 shapes of several kinds and
  colours, questions balanced over the true counts (``mmgpt_eval.data.counting_images``; seeded,
  the same PNG bytes on every machine);
* ``--counting-tallyqa-json FILE`` (+ ``--counting-images DIR``): TallyQA-style
  ``[{"image", "question", "answer": int}]`` (a JSON list, or JSONL);
* ``--counting-vqa-questions/-annotations/-images``: VQAv2-format files restricted to "how many"
  questions with answer type ``number``; the ground truth is ``multiple_choice_answer``.

Answers are parsed to an integer (``mmgpt_eval.metrics.counting.parse_count``: the first number
expression; "no X"/"none" = 0; vague quantities unparsable); unparsable answers count as wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgpt_eval.taskapi import (
    Aggregate,
    DataFile,
    GenerationSettings,
    MetricInfo,
    Option,
    Output,
    Sample,
    Task,
    UserError,
)
from mmgpt_eval.taskapi.datasets import DEFAULT_N, SPLIT_SEEDS, counting_samples, load_tallyqa, load_vqa_counting
from mmgpt_eval.taskapi.metrics import aggregate_counting, count_metrics, parse_count

from .counting_view import CountingView


class Counting(Task):
    name = "counting"
    description = "counting questions (embedded procedural set by default; TallyQA or VQAv2 'how many' files)"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"

    OPTIONS = (
        Option(
            "n",
            f"size of the embedded procedural set (default {DEFAULT_N}: 50 per count 0-10)",
            type=int,
            default=DEFAULT_N,
        ),
        Option(
            "seed",
            f"seed of the embedded set (default {SPLIT_SEEDS['test']}, the test split)",
            type=int,
            default=SPLIT_SEEDS["test"],
        ),
        DataFile("tallyqa_json", "TallyQA-style JSON/JSONL: [{image, question, answer}]"),
        DataFile("images", "folder the TallyQA 'image' paths are relative to"),
        DataFile("vqa_questions", "VQAv2-format questions JSON ('how many' questions are used)"),
        DataFile("vqa_annotations", "VQAv2-format annotations JSON"),
        DataFile("vqa_images", "VQAv2-format image folder"),
    )
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=12)}  # of-vqa: the template's (OpenFlamingo's)
    view = CountingView()

    @property
    def source(self) -> str:
        if self.option("tallyqa_json"):
            return "tallyqa"
        if self.option("vqa_questions"):
            return "vqav2"
        return "procedural"

    def load(self) -> list[Sample]:
        if self.source == "tallyqa":
            images = self.option("images")
            return load_tallyqa(Path(self.option("tallyqa_json")), None if images is None else Path(images))
        if self.source == "vqav2":
            paths = [self.option(f"vqa_{k}") for k in ("questions", "annotations", "images")]
            if not all(paths):
                raise UserError("VQAv2-format counting needs --counting-vqa-questions, -annotations and -images")
            for p in paths:
                if not Path(p).exists():
                    raise UserError("counting VQA input not found", p)
            return load_vqa_counting(Path(paths[0]), Path(paths[1]), Path(paths[2]), parse_count)
        n = self.option("n")
        if n < 1:
            raise UserError("--counting-n must be at least 1")
        return counting_samples(n, self.option("seed"))

    def fewshot_pool(self) -> list[Sample]:
        return counting_samples(256, SPLIT_SEEDS["train"])

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": str(sample.references)}

    def metric_info(self) -> dict[str, MetricInfo]:
        return {
            "accuracy": MetricInfo("binary", True, 100.0, "%", "exact", "exact count; unparsable counts as wrong"),
            "mae": MetricInfo("continuous", False, 1.0, "", "abs_error", "mean absolute error over parsable answers"),
            "off_by_one_rate": MetricInfo("binary", False, 100.0, "%", "off_by_one_all", "|answer - truth| == 1"),
            "unparsable_rate": MetricInfo("binary", False, 100.0, "%", "unparsable", "answers with no number"),
        }

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        m = count_metrics(outputs["main"].prediction, int(sample.references))
        m["off_by_one_all"] = int(bool(m["off_by_one"]))  # 0 for unparsable, for paired statistics
        return m

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        agg = aggregate_counting([r["metrics"] for r in records])
        return Aggregate(
            metrics={
                "accuracy": round(agg["accuracy"], 2),
                "mae": None if agg["mae"] is None else round(agg["mae"], 4),
                "off_by_one_rate": round(agg["off_by_one_rate"], 2),
                "unparsable_rate": round(agg["unparsable_rate"], 2),
            },
            breakdown={
                "source": self.source,
                "accuracy_by_true_count": {str(k): round(v, 2) for k, v in agg["accuracy_by_true_count"].items()},
                "n_by_true_count": {str(k): v for k, v in agg["n_by_true_count"].items()},
                "mae_by_true_count": {str(k): v for k, v in agg["mae_by_true_count"].items()},
                "mean_signed_error": agg["mean_signed_error"],
                "n_parsable": agg["n_parsable"],
            },
            notes=["mae excludes unparsable answers; accuracy counts them as wrong"],
        )


TASK = Counting
