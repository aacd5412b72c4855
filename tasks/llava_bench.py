"""LLaVA-Bench (In-the-Wild): 60 open-ended questions about 24 real-world images (conversation,
detailed description, complex reasoning), in the files its authors publish (the Hugging Face data set
``liuhaotian/llava-bench-in-the-wild``): ``questions.jsonl`` (``question_id``, ``image``, ``text``,
``category``), the reference answers ``answers_gpt4.jsonl``, the image captions ``context.jsonl``
(matched by image name) and ``images/``. Sample ids are the question ids.

Answers are generated open-ended with the MultiModal-GPT template. Their quality is judged by a model
(``mmgpt-eval judge``): ``relative`` (the answer and the reference both scored 1-10 from the caption;
100 x candidate / reference, per category) and ``pairwise`` against a baseline run. The task's own
metrics describe the answers only: their length and the share of empty ones.
"""

from __future__ import annotations

from typing import Any, Mapping

from mmgpt_eval.taskapi import (
    DataFile,
    JudgedItem,
    Judging,
    Sample,
)
from mmgpt_eval.taskapi.openended import OpenEndedTask, max_new_tokens_option
from mmgpt_eval.taskapi.datasets import load_llava_bench

SOURCE = "https://huggingface.co/datasets/liuhaotian/llava-bench-in-the-wild"
HINT = "`mmgpt-eval data check --tasks llava-bench` lists what is missing and where to get it"


def judged_item(record: Mapping[str, Any]) -> JudgedItem:
    """The judge's view of one per-sample log record: the question and the answer, the reference
    answer, the image's caption and content sha256, the category as the group."""
    meta = record["meta"]
    return JudgedItem(
        id=str(record["id"]),
        turns=((meta["question"], record["prediction"]),),
        image=meta["caption"],
        image_id=meta["image_sha256"],
        reference=record["references"][0],
        group=meta["category"],
    )


class LlavaBench(OpenEndedTask):
    name = "llava-bench"
    aliases = ("llava-bench-in-the-wild", "llavabench")
    description = "LLaVA-Bench (In-the-Wild): open-ended answers judged by a model (relative score, pairwise)"
    GROUP_COUNT_KEY = "n_by_category"
    OPTIONS = (
        DataFile(
            "questions",
            "questions.jsonl",
            layout="llava-bench/questions.jsonl",
            source=f"{SOURCE} (questions.jsonl)",
        ),
        DataFile(
            "answers",
            "reference answers answers_gpt4.jsonl",
            layout="llava-bench/answers_gpt4.jsonl",
            source=f"{SOURCE} (answers_gpt4.jsonl)",
        ),
        DataFile(
            "context",
            "image captions context.jsonl",
            layout="llava-bench/context.jsonl",
            source=f"{SOURCE} (context.jsonl)",
        ),
        DataFile(
            "images",
            "image folder",
            layout="llava-bench/images",
            source=f"{SOURCE} (images/, so that llava-bench/images/001.jpg exists)",
        ),
        max_new_tokens_option(512),
    )
    JUDGING = Judging(
        modes=("relative", "pairwise"),
        item=judged_item,
        description="each answer against the reference answer (relative), and against the baseline run (pairwise)",
    )

    def load(self) -> list[Sample]:
        images = self.path("images")
        return load_llava_bench(self.path("questions"), self.path("answers"), self.path("context"), images, HINT)

    def sample_groups(self, sample: Sample) -> list[str]:
        return [sample.meta["category"]]


TASK = LlavaBench
