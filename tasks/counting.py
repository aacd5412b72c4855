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

from mmgpt_eval.taskapi import (Aggregate, DataFile, GenerationSettings, ImageRef, MetricInfo, Option, Output, Sample,
                                Task, UserError)
from mmgpt_eval.taskapi.datasets import (DEFAULT_N, SPLIT_SEEDS, generate_counting_set, iter_jsonl, load_vqa_files,
                                         path_inside, read_json)
from mmgpt_eval.taskapi.metrics import aggregate_counting, count_metrics, parse_count
from mmgpt_eval.taskapi.reporting import BarPlot, Column, ReportTables, dict_table, keys_of, number


def procedural_samples(n: int, seed: int) -> list[Sample]:
    out = []
    for item in generate_counting_set(n=n, seed=seed):
        out.append(Sample(id=item.id, images=[ImageRef(key=f"counting:{item.seed}:{item.index}", loader=item.image)],
                          fields={"question": item.question}, references=item.answer,
                          meta={"asked": list(item.asked), "n_shapes": len(item.shapes)}))
    return out


class Counting(Task):
    name = "counting"
    description = "counting questions (embedded procedural set by default; TallyQA or VQAv2 'how many' files)"
    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"

    OPTIONS = (
        Option("n", f"size of the embedded procedural set (default {DEFAULT_N}: 50 per count 0-10)", type=int,
               default=DEFAULT_N),
        Option("seed", f"seed of the embedded set (default {SPLIT_SEEDS['test']}, the test split)", type=int,
               default=SPLIT_SEEDS["test"]),
        DataFile("tallyqa_json", "TallyQA-style JSON/JSONL: [{image, question, answer}]"),
        DataFile("images", "folder the TallyQA 'image' paths are relative to"),
        DataFile("vqa_questions", "VQAv2-format questions JSON ('how many' questions are used)"),
        DataFile("vqa_annotations", "VQAv2-format annotations JSON"),
        DataFile("vqa_images", "VQAv2-format image folder"),
    )
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=12)}  # of-vqa: the template's (OpenFlamingo's)

    @property
    def source(self) -> str:
        if self.option("tallyqa_json"):
            return "tallyqa"
        if self.option("vqa_questions"):
            return "vqav2"
        return "procedural"

    def load(self) -> list[Sample]:
        if self.source == "tallyqa":
            return self._tallyqa(Path(self.option("tallyqa_json")))
        if self.source == "vqav2":
            return self._vqa()
        n = self.option("n")
        if n < 1:
            raise UserError("--counting-n must be at least 1")
        return procedural_samples(n, self.option("seed"))

    def _tallyqa(self, path: Path) -> list[Sample]:
        if not path.is_file():
            raise UserError("TallyQA file not found", path)
        rows: list[tuple[int | None, Any]]
        text = path.read_text(encoding="utf-8").lstrip()
        if text.startswith("["):
            rows = [(None, r) for r in read_json(path)]
        else:
            rows = list(iter_jsonl(path))
        base = Path(self.option("images", path.parent))
        out = []
        for i, (line, r) in enumerate(rows):
            if not isinstance(r, dict) or not {"image", "question", "answer"} <= set(r):
                raise UserError(f"entry {i} needs image, question and answer", path, line)
            if not isinstance(r["answer"], int) or isinstance(r["answer"], bool) or r["answer"] < 0:
                raise UserError(f"entry {i}: answer must be a non-negative integer", path, line)
            if not isinstance(r["image"], str):
                raise UserError(f"entry {i}: image must be a path string", path, line)
            img = path_inside(base, r["image"], path, line)  # data files cannot point elsewhere on disk
            if not img.is_file():
                raise UserError(f"entry {i}: image not found: {img}", path, line)
            sid = str(r.get("question_id", r.get("id", i)))
            out.append(Sample(id=sid, images=[ImageRef.from_path(img)], fields={"question": r["question"]},
                              references=int(r["answer"]), meta={"source": "tallyqa"}))
        return out

    def _vqa(self) -> list[Sample]:
        paths = [self.option(f"vqa_{k}") for k in ("questions", "annotations", "images")]
        if not all(paths):
            raise UserError("VQAv2-format counting needs --counting-vqa-questions, -annotations and -images")
        for p in paths:
            if not Path(p).exists():
                raise UserError("counting VQA input not found", p)
        samples, _, annotations = load_vqa_files(Path(paths[0]), Path(paths[1]), Path(paths[2]))
        mc = {a["question_id"]: a.get("multiple_choice_answer") for a in annotations}
        out = []
        for s in samples:
            q = s.fields["question"].lower()
            if s.meta["answer_type"] != "number" or not q.startswith("how many"):
                continue
            truth = parse_count(str(mc.get(s.meta["question_id"], "")))
            if truth is None:
                continue
            out.append(Sample(id=s.id, images=s.images, fields=s.fields, references=truth, meta={"source": "vqav2"}))
        if not out:
            raise UserError("no 'how many' questions with a numeric answer in the VQA files", paths[0])
        return out

    def fewshot_pool(self) -> list[Sample]:
        return procedural_samples(256, SPLIT_SEEDS["train"])

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
            metrics={"accuracy": round(agg["accuracy"], 2), "mae": None if agg["mae"] is None else round(agg["mae"], 4),
                     "off_by_one_rate": round(agg["off_by_one_rate"], 2),
                     "unparsable_rate": round(agg["unparsable_rate"], 2)},
            breakdown={"source": self.source,
                       "accuracy_by_true_count": {str(k): round(v, 2) for k, v in agg["accuracy_by_true_count"].items()},
                       "n_by_true_count": {str(k): v for k, v in agg["n_by_true_count"].items()},
                       "mae_by_true_count": {str(k): v for k, v in agg["mae_by_true_count"].items()},
                       "mean_signed_error": agg["mean_signed_error"], "n_parsable": agg["n_parsable"]},
            notes=["mae excludes unparsable answers; accuracy counts them as wrong"])

    def report_tables(self, columns: list[Column]) -> ReportTables:
        if not any("accuracy_by_true_count" in c.breakdown for c in columns):
            return ReportTables()
        accs = [c.breakdown.get("accuracy_by_true_count") for c in columns]
        out = ReportTables(consumed={"accuracy_by_true_count", "n_by_true_count", "mae_by_true_count"})
        out.tables.append(dict_table("counting accuracy by true count", columns, accs,
                                     counts=[c.breakdown.get("n_by_true_count") for c in columns], unit="%",
                                     sort_numeric=True))
        if any(isinstance(c.breakdown.get("mae_by_true_count"), dict) for c in columns):
            out.tables.append(dict_table("counting MAE by true count (parsable answers)", columns,
                                         [c.breakdown.get("mae_by_true_count") for c in columns], sort_numeric=True))
        counts = [str(k) for k in keys_of(accs, numeric=True)]
        if counts:
            out.plots.append(BarPlot(
                "accuracy (%) by true count", counts,
                [(c.label, [number(a.get(k)) if isinstance(a, dict) else None for k in counts])
                 for c, a in zip(columns, accs)], xlabel="true count", ylabel="accuracy (%)", ylim=(0, 100)))
        return out


TASK = Counting
