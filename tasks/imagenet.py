"""ImageNet-1k classification as OpenFlamingo evaluates it: each validation image's 1,000 class names
ranked by their mean log-probability per token after the prompt; top-1 and top-5 accuracy.

Files: an ImageNet-style ``val/`` folder of synset folders (``val/n01440764/ILSVRC2012_val_00000293.JPEG``;
the official validation images sorted into class folders, as torchvision's ``ImageFolder`` and
OpenFlamingo read them) and optionally ``train/`` (few-shot demos). Class folder ``i`` in sorted order
is named by the ``i``-th of the 1,000 class names the installed open-flamingo package ships, exactly as
OpenFlamingo's ``ImageNetDataset`` names it; a folder with fewer classes gets the first names.
"""

from __future__ import annotations

from typing import Any

from mmgpt_eval.taskapi import Aggregate, DataFile, MetricInfo, Output, Sample, Task, UserError
from mmgpt_eval.taskapi.datasets import imagenet_classnames, load_imagenet_folder
from mmgpt_eval.taskapi.metrics import top_k_correct

SOURCE = (
    "https://image-net.org/download.php (ILSVRC2012 validation images; sort them into synset folders, "
    "e.g. with the valprep.sh script PyTorch's ImageNet example links)"
)


class ImageNet(Task):
    openflamingo_template = "of-imagenet"
    name = "imagenet"
    aliases = ("imagenet-1k", "imagenet1k")
    description = "ImageNet-1k val (synset folders): 1,000 class names ranked by log-likelihood, top-1/top-5"
    templates = ("of-imagenet", "mmgpt")
    default_template = "of-imagenet"
    primary_metric = "top1"
    rank_top_k = 5

    OPTIONS = (
        DataFile("val", "validation folder of synset folders", layout="imagenet/val", source=SOURCE),
        DataFile(
            "train",
            "train folder of synset folders (few-shot demos)",
            layout="imagenet/train",
            source=SOURCE,
            required=False,
        ),
    )

    @property
    def class_names(self) -> list[str]:
        if not hasattr(self, "_names"):
            self._names = imagenet_classnames()
        return self._names

    def load(self) -> list[Sample]:
        return load_imagenet_folder(self.path("val"), self.class_names)

    def fewshot_pool(self) -> list[Sample]:
        train = self.path("train", required=False)
        if train is None:
            raise UserError(
                "imagenet demos (OpenFlamingo's 0-shot takes 2 text-only ones) come from --imagenet-train "
                "(or <data root>/imagenet/train); without it, run 0-shot with --fewshot-zero-mode none"
            )
        return load_imagenet_folder(train, self.class_names)

    def query_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": "What is the main object in this image? Answer with its name."}

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"answer": sample.references}

    def candidates(self, sample: Sample) -> list[str]:
        return self.class_names

    def metric_info(self) -> dict[str, MetricInfo]:
        return {
            "top1": MetricInfo(
                kind="binary",
                scale=100.0,
                unit="%",
                per_sample="top1",
                description="the best-ranked class name is the label",
            ),
            "top5": MetricInfo(
                kind="binary",
                scale=100.0,
                unit="%",
                per_sample="top5",
                description="the label is among the 5 best-ranked class names",
            ),
        }

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        ranking: Any = outputs["main"]  # a Ranking (the Task API types outputs as Output)
        ranked = [c["candidate"] for c in ranking.top(5)]
        return {
            "top1": top_k_correct(ranked, sample.references, 1),
            "top5": top_k_correct(ranked, sample.references, 5),
        }

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        agg = super().aggregate(samples, records)
        classes = {s.meta["synset"] for s in samples}
        agg.breakdown["n_classes_evaluated"] = len(classes)
        return agg


TASK = ImageNet
