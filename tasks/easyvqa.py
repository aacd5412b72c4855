"""easy-VQA (the PyPI package ``easy-vqa``, MIT): 64x64 images of one coloured shape, questions about
its shape and colour. Test split: 1,000 images, 9,673 questions, 13 answers, one answer per question.
Metric: exact match after VQA answer normalisation (punctuation, number words, articles, lower case),
broken down by answer type (yes/no, shape, color). The embedded default task: real data, offline."""

from __future__ import annotations

import argparse
from typing import Any

from mmgpt_eval.errors import UserError
from mmgpt_eval.metrics.vqa import normalize_openflamingo
from mmgpt_eval.model.generate import GenerationSettings
from mmgpt_eval.taskapi import Aggregate, ImageRef, MetricInfo, Output, Sample, Task
from mmgpt_eval.templates import Template

SHAPES = {"circle", "rectangle", "triangle"}
YES_NO = {"yes", "no"}


def answer_type(answer: str) -> str:
    return "yes/no" if answer in YES_NO else ("shape" if answer in SHAPES else "color")


def load_split(split: str, task_name: str = "easyvqa") -> list[Sample]:
    import easy_vqa

    if split == "test":
        qs, ans, img_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    elif split == "train":
        qs, ans, img_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    else:
        raise UserError(f"easy-VQA split must be train or test, got {split!r}")
    return [Sample(id=str(i), images=[ImageRef(key=f"easyvqa:{split}:{img}", path=paths[img])],
                   fields={"question": q}, references=[a],
                   meta={"answer_type": answer_type(a), "image_id": img, "split": split})
            for i, (q, a, img) in enumerate(zip(qs, ans, img_ids))]


def exact_match(prediction: str, answer: str) -> int:
    return int(normalize_openflamingo(prediction) == normalize_openflamingo(answer))


class EasyVQA(Task):
    name = "easyvqa"
    aliases = ("easy-vqa",)
    description = "easy-VQA test split (PyPI easy-vqa): 9,673 shape/colour questions, exact match; offline"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--easyvqa-split", dest="easyvqa_split", default=None, choices=["test", "train"],
                           help="easy-VQA split to evaluate (default test)")

    def load(self) -> list[Sample]:
        return load_split(self.option("easyvqa_split", "test"), self.name)

    def fewshot_pool(self) -> list[Sample]:
        return load_split("train")[:2048]

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def generation_settings(self, template: Template) -> GenerationSettings:
        if template.name == "of-vqa":  # OpenFlamingo's VQA protocol
            return GenerationSettings(max_new_tokens=5, num_beams=3, length_penalty=0.0)
        return GenerationSettings(max_new_tokens=10)

    def metric_info(self) -> dict[str, MetricInfo]:
        return {"accuracy": MetricInfo(kind="binary", scale=100.0, unit="%", per_sample="exact",
                                       description="exact match after VQA answer normalisation")}

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {"exact": exact_match(outputs["main"].prediction, sample.references[0])}

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        by_type: dict[str, list[int]] = {}
        for s, r in zip(samples, records):
            by_type.setdefault(s.meta["answer_type"], []).append(r["metrics"]["exact"])
        all_ = [r["metrics"]["exact"] for r in records]
        return Aggregate(
            metrics={"accuracy": round(100 * sum(all_) / len(all_), 2)},
            breakdown={"accuracy_by_answer_type": {k: round(100 * sum(v) / len(v), 2) for k, v in sorted(by_type.items())},
                       "n_by_answer_type": {k: len(v) for k, v in sorted(by_type.items())}})


TASK = EasyVQA
