"""What every VQA task shares (``vqav2``, ``okvqa``, ``textvqa``, ``vizwiz``): the templates and decoding,
OpenFlamingo's protocol settings, the demo fields, the shared ``--vqa-normalization`` option, and scoring
with the VQA accuracy over the reference answers. A VQA task is a declaration: its data files (layout
and sources), its loader, the description of its accuracy, the breakdown groups and its report view."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

from ..errors import UserError
from ..generation_settings import GenerationSettings
from ..metrics.vqa import vqa_accuracy
from .options import DataFile, Option
from .task import Task
from .types import Aggregate, MetricInfo, Output, Sample

NORMALIZATION_HELP = "official (default): GT-Vision-Lab vqaEval.py; openflamingo: always normalise"
VQAV2_FILE_HELP = {
    "questions": "questions JSON (eval split)",
    "annotations": "annotations JSON",
    "images": "image folder",
    "train_questions": "train questions JSON (few-shot demos)",
    "train_annotations": "train annotations JSON",
    "train_images": "train image folder",
}


def normalization_option(help: str = NORMALIZATION_HELP) -> Option:
    """``--vqa-normalization``, one key every VQA task reads."""
    return Option(
        "normalization", help, choices=("official", "openflamingo"), default="official", shared_key="vqa_normalization"
    )


def vqav2_format_options(folder: str, files: dict[str, str], sources: dict[str, str]) -> tuple[Option, ...]:
    """The data files of a VQAv2-format task under ``<data root>/<folder>/`` (the ``train_`` ones optional:
    few-shot demos) and the normalisation."""
    return tuple(
        DataFile(k, VQAV2_FILE_HELP[k], layout=f"{folder}/{v}", source=sources[k], required=not k.startswith("train_"))
        for k, v in files.items()
    ) + (normalization_option(),)


def _pct(values: list[float]) -> float:
    return round(100 * float(sum(values)) / len(values), 2)


@dataclass(frozen=True)
class AccuracyGroup:
    """A breakdown of the accuracy by ``sample.meta[meta]`` (samples without it are left out): accuracy
    per group under ``key``, sample counts under ``counts``; ``labels`` maps a meta value to its group
    name (default: ``str`` of the value)."""

    meta: str
    key: str
    counts: str
    labels: Optional[dict[Any, str]] = None


class VQATask(Task):
    """Base class: subclasses declare ``OPTIONS`` (including :func:`normalization_option`) and ``load``
    (and ``fewshot_pool``) returning samples whose ``references`` are the answers."""

    templates = ("mmgpt", "of-vqa")
    default_template = "mmgpt"
    primary_metric = "accuracy"
    openflamingo_template = "of-vqa"
    openflamingo_options = {"normalization": "openflamingo"}
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=10)}  # of-vqa: the template's (OpenFlamingo's)
    # the accuracy's description; {mode} is the normalisation, named by normalization_names where listed
    accuracy_description: ClassVar[str] = "VQA accuracy ({mode} normalisation), x100, 2 decimals"
    normalization_names: ClassVar[dict[str, str]] = {}
    groups: ClassVar[tuple[AccuracyGroup, ...]] = ()  # breakdowns of the accuracy

    @property
    def mode(self) -> str:
        return self.option("normalization")

    def image_folder(self, name: str = "images") -> Path:
        """A folder data option, which must be a folder."""
        p = self.path(name)
        if not p.is_dir():
            raise UserError(
                f"{self.name} image folder is not a folder (`mmgpt-eval data check --tasks {self.name}` "
                "lists what is missing and where to get it)",
                p,
            )
        return p

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": sample.fields["question"], "answer": sample.references[0]}

    def metric_info(self) -> dict[str, MetricInfo]:
        mode = self.normalization_names.get(self.mode, self.mode)
        return {
            "accuracy": MetricInfo(
                kind="continuous",
                scale=100.0,
                unit="%",
                per_sample="accuracy",
                description=self.accuracy_description.format(mode=mode),
            )
        }

    def accuracy(self, prediction: str, answers: list[str]) -> float:
        """One prediction's accuracy (0..1) over the answers."""
        return vqa_accuracy(prediction, answers, self.mode)

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {"accuracy": self.accuracy(outputs["main"].prediction, sample.references)}

    def breakdown(self, samples: list[Sample], records: list[dict[str, Any]]) -> dict[str, Any]:
        """The breakdown after ``normalization``: default, the declared :attr:`groups`."""
        out: dict[str, Any] = {}
        for g in self.groups:
            by: dict[str, list[float]] = {}
            for s, r in zip(samples, records):
                v = s.meta.get(g.meta)
                if v is not None:
                    by.setdefault(g.labels[v] if g.labels is not None else str(v), []).append(r["metrics"]["accuracy"])
            out[g.key] = {k: _pct(v) for k, v in sorted(by.items())}
            out[g.counts] = {k: len(v) for k, v in sorted(by.items())}
        return out

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        """The mean accuracy x100 (2 decimals), the normalisation and :meth:`breakdown`."""
        accs = [r["metrics"]["accuracy"] for r in records]
        return Aggregate(
            metrics={"accuracy": _pct(accs)}, breakdown={"normalization": self.mode, **self.breakdown(samples, records)}
        )
