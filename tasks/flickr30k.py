"""Flickr30k captioning: the Karpathy split file ``dataset_flickr30k.json`` (test split, 1,000 images) and
the image folder ``flickr30k-images/``; few-shot demos from the train split of the same file. Metrics:
the COCO caption metrics exactly as ``coco`` computes them -- BLEU-1..4, METEOR, ROUGE-L and CIDEr
(CIDEr-D) from pycocoevalcap 1.2's PTB tokenizer and scorers (raw pycocoevalcap scale; SPICE is not
available offline). CIDEr's IDF comes from the evaluated images, so scores on different subsets are not
comparable; the per-image CIDEr values (same fixed IDF) are kept for paired statistics.

Sample ids are the Flickr photo ids (the file name without ``.jpg``), as OpenFlamingo's evaluation
names them.
"""

from __future__ import annotations

from mmgpt_eval.taskapi import DataFile, GenerationSettings, Option, Sample, UserError
from mmgpt_eval.taskapi.captioning import CaptionTask
from mmgpt_eval.taskapi.datasets import load_flickr30k_karpathy
from mmgpt_eval.taskapi.metrics import require_java

DEFAULT_INSTRUCTION = "Provide a one-sentence caption for the provided image."
KARPATHY_SOURCE = "https://cs.stanford.edu/people/karpathy/deepimagesent/ caption_datasets.zip (dataset_flickr30k.json)"
IMAGES_SOURCE = (
    "https://shannon.cs.illinois.edu/DenotationGraph/ (Flickr30k images: fill in the request form; "
    "unzip flickr30k-images.tar.gz so that flickr30k/flickr30k-images/<id>.jpg exist)"
)
HINT = "`mmgpt-eval data check --tasks flickr30k` lists what is missing and where to get it"


class Flickr30k(CaptionTask):
    openflamingo_template = "of-caption"
    name = "flickr30k"
    aliases = ("flickr", "flickr30k-captions")
    description = "Flickr30k captioning (Karpathy test split, 1,000 images): CIDEr, BLEU, METEOR, ROUGE-L"
    templates = ("mmgpt", "of-caption")
    default_template = "mmgpt"

    OPTIONS = (
        DataFile(
            "karpathy_json",
            "Karpathy dataset_flickr30k.json",
            layout="flickr30k/dataset_flickr30k.json",
            source=KARPATHY_SOURCE,
        ),
        DataFile(
            "images", "image folder (flickr30k-images)", layout="flickr30k/flickr30k-images", source=IMAGES_SOURCE
        ),
        Option("split", "Karpathy split to evaluate (default test; demos always come from train)", default="test"),
        Option(
            "instruction",
            f"instruction for the MultiModal-GPT template (default: {DEFAULT_INSTRUCTION!r})",
            default=DEFAULT_INSTRUCTION,
        ),
    )
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=30)}  # of-caption: the template's (OpenFlamingo's)

    def load(self) -> list[Sample]:
        require_java()
        kj, images = self.path("karpathy_json"), self.path("images")
        if not kj.is_file():
            raise UserError("expected the Karpathy JSON file, found a folder", kj)
        if not images.is_dir():
            raise UserError(f"flickr30k image folder is not a folder ({HINT})", images)
        samples = load_flickr30k_karpathy(kj, images, self.option("split"))
        if not samples:
            raise UserError(f"no images in split {self.option('split')!r}", kj)
        return samples

    def fewshot_pool(self) -> list[Sample]:
        return load_flickr30k_karpathy(self.path("karpathy_json"), self.path("images"), "train")


TASK = Flickr30k
