"""Hateful Memes (Facebook AI, 2020): is a meme -- an image with text written on it -- hateful? Scored
as OpenFlamingo scores it: the class names ``no`` / ``yes`` are ranked by their mean log-probability
after the prompt (which quotes the meme's OCR text), and ROC-AUC is computed from each meme's
confidence in ``yes`` (OpenFlamingo: the top class's softmax probability over the class scores, or one
minus it when the top class is ``no``: the probability of ``yes``). Also accuracy of the top class.

Files (the official release): ``img/`` and the jsonl annotations (``id``, ``img``, ``label``, ``text``):
``dev_seen.jsonl`` (default evaluation split; ``test_seen.jsonl`` via the flag) and ``train.jsonl``
(few-shot demos).
"""

from __future__ import annotations

import math
from typing import Any

from mmgpt_eval.taskapi import Aggregate, DataFile, MetricInfo, Output, Sample, Task, UserError
from mmgpt_eval.taskapi.datasets import HATEFUL_MEMES_CLASSES, load_hateful_memes
from mmgpt_eval.taskapi.metrics import roc_auc, softmax_p

SOURCE = (
    "https://hatefulmemeschallenge.com/ (or the Hateful Memes dataset card on Hugging Face: "
    "facebook/hateful_memes; unzip so that img/ sits beside the jsonl files)"
)


class HatefulMemes(Task):
    openflamingo_template = "of-hatefulmemes"
    name = "hatefulmemes"
    aliases = ("hateful-memes", "hateful_memes")
    description = "Hateful Memes: no/yes ranked by log-likelihood (OpenFlamingo's protocol), ROC-AUC and accuracy"
    templates = ("of-hatefulmemes", "mmgpt")
    default_template = "of-hatefulmemes"
    primary_metric = "roc_auc"
    rank_top_k = 2

    OPTIONS = (
        DataFile(
            "annotations",
            "evaluation annotations jsonl (dev_seen.jsonl or test_seen.jsonl)",
            layout="hatefulmemes/dev_seen.jsonl",
            source=SOURCE,
        ),
        DataFile("images", "image folder (img/)", layout="hatefulmemes/img", source=SOURCE),
        DataFile(
            "train_annotations",
            "train annotations jsonl (few-shot demos)",
            layout="hatefulmemes/train.jsonl",
            source=SOURCE,
            required=False,
        ),
    )

    def load(self) -> list[Sample]:
        return load_hateful_memes(self.path("annotations"), self.path("images"))

    def fewshot_pool(self) -> list[Sample]:
        train = self.path("train_annotations", required=False)
        if train is None:
            raise UserError(
                "hatefulmemes demos (OpenFlamingo's 0-shot takes 2 text-only ones) come from "
                "--hatefulmemes-train-annotations (or <data root>/hatefulmemes/train.jsonl); without it, "
                "run 0-shot with --fewshot-zero-mode none"
            )
        return load_hateful_memes(train, self.path("images"))

    def query_fields(self, sample: Sample) -> dict[str, str]:
        ocr = sample.fields["ocr"]
        return {
            "ocr": ocr,
            "question": f"This meme has the text '{ocr}' written on it. Is it hateful? Answer yes or no.",
        }

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {**self.query_fields(sample), "answer": sample.references}

    def candidates(self, sample: Sample) -> list[str]:
        return list(HATEFUL_MEMES_CLASSES)

    def metric_info(self) -> dict[str, MetricInfo]:
        return {
            "roc_auc": MetricInfo(
                kind="corpus-only", unit="", description="ROC-AUC of P(yes) (x100; OpenFlamingo's Hateful Memes metric)"
            ),
            "accuracy": MetricInfo(
                kind="binary", scale=100.0, unit="%", per_sample="correct", description="top class equals the label"
            ),
        }

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        ranking: Any = outputs["main"]  # a Ranking (the Task API types outputs as Output)
        scores = {c: ranking.score_of(c) for c in HATEFUL_MEMES_CLASSES}
        return {"correct": int(ranking.prediction == sample.references), "p_yes": softmax_p(scores, "yes")}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        labels = [s.meta["label"] for s in samples]
        auc = roc_auc(labels, [r["metrics"]["p_yes"] for r in records])
        acc = [r["metrics"]["correct"] for r in records]
        notes = [] if not math.isnan(auc) else ["ROC-AUC is undefined: the evaluated samples have only one label"]
        return Aggregate(
            metrics={
                "roc_auc": round(100 * auc, 2) if not math.isnan(auc) else auc,
                "accuracy": round(100 * sum(acc) / len(acc), 2),
            },
            breakdown={"n_by_label": {"no": labels.count(0), "yes": labels.count(1)}},
            notes=notes,
        )


TASK = HatefulMemes
