"""COCO captioning: Karpathy ``dataset_coco.json`` (test split) or a COCO captions annotation JSON, plus
the image folder. Metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr (CIDEr-D) from pycocoevalcap 1.2's
PTB tokenizer and scorers (raw pycocoevalcap scale; SPICE is not available offline). CIDEr's IDF
comes from the evaluated images, so scores on different subsets are not comparable; the per-image
CIDEr values (same fixed IDF) are kept for paired statistics.
"""

from __future__ import annotations

from pathlib import Path

from mmgpt_eval.taskapi import DataFile, GenerationSettings, Option, Sample, UserError
from mmgpt_eval.taskapi.captioning import CaptionTask
from mmgpt_eval.taskapi.datasets import load_coco_captions, load_coco_karpathy
from mmgpt_eval.taskapi.metrics import require_java

DEFAULT_INSTRUCTION = "Provide a one-sentence caption for the provided image."


class COCOCaptions(CaptionTask):
    openflamingo_template = "of-caption"
    name = "coco"
    aliases = ("coco-captions", "captioning")
    description = "COCO captioning (Karpathy test split or COCO captions JSON): CIDEr, BLEU, METEOR, ROUGE-L"
    templates = ("mmgpt", "of-caption")
    default_template = "mmgpt"

    OPTIONS = (
        # the Karpathy split file, unless the user chose the COCO captions format (--coco-annotations)
        DataFile(
            "karpathy_json",
            "Karpathy dataset_coco.json",
            layout=lambda o: None if o.get("coco_annotations") else "coco/dataset_coco.json",
            source="https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip (dataset_coco.json)",
        ),
        DataFile("annotations", "COCO captions annotation JSON (instead of Karpathy)"),
        DataFile(
            "images",
            "image folder",
            layout=lambda o: "coco/val2014" if o.get("coco_annotations") else "coco",
            source="https://cocodataset.org/#download (2014 Val and Train images; unzip so that coco/val2014/ "
            "and coco/train2014/ exist, the Karpathy 'filepath' folders)",
        ),
        Option("split", "Karpathy split (default test)", default="test"),
        Option(
            "instruction",
            f"instruction for the MultiModal-GPT template (default: {DEFAULT_INSTRUCTION!r})",
            default=DEFAULT_INSTRUCTION,
        ),
    )
    GENERATION = {"mmgpt": GenerationSettings(max_new_tokens=30)}  # of-caption: the template's (OpenFlamingo's)

    def load(self) -> list[Sample]:
        require_java()
        images = self.option("images")
        if images is None:
            raise UserError("task coco needs --coco-images (or a data root, see `mmgpt-eval data check`)")
        images = Path(images)
        if not images.is_dir():
            raise UserError(
                "coco image folder not found (`mmgpt-eval data check --tasks coco` lists what is "
                "missing and where to get it)",
                images,
            )
        kj, ann = self.option("karpathy_json"), self.option("annotations")
        if kj:
            if not Path(kj).is_file():
                raise UserError(
                    "Karpathy JSON not found (`mmgpt-eval data check --tasks coco` lists what is missing "
                    "and where to get it)",
                    kj,
                )
            samples = load_coco_karpathy(Path(kj), images, self.option("split"))
        elif ann:
            if not Path(ann).is_file():
                raise UserError("COCO captions JSON not found", ann)
            samples = load_coco_captions(Path(ann), images)
        else:
            raise UserError("task coco needs --coco-karpathy-json or --coco-annotations")
        self._pool_source = (kj, images)
        return samples

    def fewshot_pool(self) -> list[Sample]:
        kj, images = getattr(self, "_pool_source", (None, None))
        if not kj:
            raise UserError("few-shot on coco needs --coco-karpathy-json (its train split gives the demos)")
        return load_coco_karpathy(Path(kj), images, "train")  # type: ignore[arg-type]  # set together with kj


TASK = COCOCaptions
