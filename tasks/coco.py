"""COCO captioning: Karpathy ``dataset_coco.json`` (test split) or a COCO captions annotation JSON, plus
the image folder. Metrics: BLEU-1..4, METEOR, ROUGE-L and CIDEr (CIDEr-D) from pycocoevalcap 1.2's
PTB tokenizer and scorers (raw pycocoevalcap scale; SPICE is not available offline). CIDEr's IDF
comes from the evaluated images, so scores on different subsets are not comparable; the per-image
CIDEr values (same fixed IDF) are kept for paired statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgpt_eval.errors import UserError
from mmgpt_eval.io import read_json
from mmgpt_eval.metrics.caption import require_java, score_captions
from mmgpt_eval.model.generate import GenerationSettings
from mmgpt_eval.taskapi import Aggregate, ImageRef, MetricInfo, Output, Sample, Task
from mmgpt_eval.templates import Template

DEFAULT_INSTRUCTION = "Provide a one-sentence caption for the provided image."


def _karpathy(path: Path, images: Path, split: str) -> list[Sample]:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise UserError("expected Karpathy dataset_coco.json: {\"images\": [...]}", path)
    out = []
    for i, im in enumerate(doc["images"]):
        for k in ("split", "filename", "sentences"):
            if k not in im:
                raise UserError(f"image entry {i} lacks {k!r}", path)
        if im["split"] != split:
            continue
        iid = im.get("cocoid", im.get("imgid", i))
        candidates = [images / im.get("filepath", "") / im["filename"], images / im["filename"]]
        img = next((c for c in candidates if c.is_file()), None)
        if img is None:
            raise UserError(f"image file {im['filename']} not found under the image folder", images)
        refs = [s["raw"] if isinstance(s, dict) else str(s) for s in im["sentences"]]
        out.append(Sample(id=str(iid), images=[ImageRef(key=f"coco:{iid}", path=str(img))], fields={},
                          references=refs, meta={"image_id": iid, "filename": im["filename"]}))
    return out


def _captions_json(path: Path, images: Path) -> list[Sample]:
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise UserError("expected a COCO captions file: {\"images\": [...], \"annotations\": [...]}", path)
    files = {im["id"]: im.get("file_name") for im in doc.get("images", []) if isinstance(im, dict) and "id" in im}
    refs: dict[Any, list[str]] = {}
    for i, a in enumerate(doc["annotations"]):
        if not isinstance(a, dict) or "image_id" not in a or "caption" not in a:
            raise UserError(f"annotation {i} lacks image_id/caption", path)
        refs.setdefault(a["image_id"], []).append(a["caption"])
    from mmgpt_eval_tasks.vqav2 import index_images

    by_number = index_images(images)
    out = []
    for iid in sorted(refs):
        img = images / files[iid] if files.get(iid) and (images / files[iid]).is_file() else by_number.get(int(iid))
        if img is None:
            raise UserError(f"no image file for image_id {iid}", images)
        out.append(Sample(id=str(iid), images=[ImageRef.from_path(img)], fields={},
                          references=refs[iid], meta={"image_id": iid}))
    return out


class COCOCaptions(Task):
    name = "coco"
    aliases = ("coco-captions", "captioning")
    description = "COCO captioning (Karpathy test split or COCO captions JSON): CIDEr, BLEU, METEOR, ROUGE-L"
    templates = ("mmgpt", "of-caption")
    default_template = "mmgpt"
    primary_metric = "CIDEr"

    @classmethod
    def add_arguments(cls, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--coco-karpathy-json", dest="coco_karpathy_json", default=None,
                           help="Karpathy dataset_coco.json")
        group.add_argument("--coco-annotations", dest="coco_annotations", default=None,
                           help="COCO captions annotation JSON (instead of Karpathy)")
        group.add_argument("--coco-images", dest="coco_images", default=None, help="image folder")
        group.add_argument("--coco-split", dest="coco_split", default=None, help="Karpathy split (default test)")
        group.add_argument("--coco-instruction", dest="coco_instruction", default=None,
                           help=f"instruction for the MultiModal-GPT template (default: {DEFAULT_INSTRUCTION!r})")

    def data_layout(self, root: Path) -> dict[str, Path]:
        if self.options.get("coco_annotations"):  # the user chose the COCO captions format
            return {"coco_images": root / "coco" / "val2014"}
        return {"coco_karpathy_json": root / "coco" / "dataset_coco.json", "coco_images": root / "coco"}

    def data_sources(self) -> dict[str, str]:
        return {"coco_karpathy_json": "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip "
                                      "(dataset_coco.json)",
                "coco_images": "https://cocodataset.org/#download (2014 Val and Train images; unzip so that "
                               "coco/val2014/ and coco/train2014/ exist, the Karpathy 'filepath' folders)"}

    def data_files(self) -> dict[str, Path | None]:
        return {k: (Path(self.options[f"coco_{k}"]) if self.options.get(f"coco_{k}") else None)
                for k in ("karpathy_json", "annotations", "images")}

    def load(self) -> list[Sample]:
        require_java()
        images = self.option("coco_images")
        if images is None:
            raise UserError("task coco needs --coco-images (or a data root, see `mmgpt-eval data check`)")
        images = Path(images)
        if not images.is_dir():
            raise UserError("coco image folder not found (`mmgpt-eval data check --tasks coco` lists what is "
                            "missing and where to get it)", images)
        kj, ann = self.option("coco_karpathy_json"), self.option("coco_annotations")
        if kj:
            if not Path(kj).is_file():
                raise UserError("Karpathy JSON not found (`mmgpt-eval data check --tasks coco` lists what is missing "
                                "and where to get it)", kj)
            samples = _karpathy(Path(kj), images, self.option("coco_split", "test"))
        elif ann:
            if not Path(ann).is_file():
                raise UserError("COCO captions JSON not found", ann)
            samples = _captions_json(Path(ann), images)
        else:
            raise UserError("task coco needs --coco-karpathy-json or --coco-annotations")
        self._pool_source = (kj, images)
        return samples

    def fewshot_pool(self) -> list[Sample]:
        kj, images = getattr(self, "_pool_source", (None, None))
        if not kj:
            raise UserError("few-shot on coco needs --coco-karpathy-json (its train split gives the demos)")
        return _karpathy(Path(kj), images, "train")[:2048]

    def query_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": self.option("coco_instruction", DEFAULT_INSTRUCTION)}

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"caption": sample.references[0].strip()}

    def generation_settings(self, template: Template) -> GenerationSettings:
        if template.name == "of-caption":  # OpenFlamingo eval: 20 new tokens, 3 beams, length_penalty 0
            return GenerationSettings(max_new_tokens=20, num_beams=3, length_penalty=0.0)
        return GenerationSettings(max_new_tokens=30)

    def metric_info(self) -> dict[str, MetricInfo]:
        info = {m: MetricInfo(kind="corpus", per_sample=m, description=f"{m} (pycocoevalcap, raw scale)")
                for m in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L")}
        info["CIDEr"] = MetricInfo(kind="corpus", per_sample="CIDEr",
                                   description="CIDEr-D (pycocoevalcap, raw scale; IDF from the evaluated images)")
        for m in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR"):
            info[m].kind = "corpus-only"  # corpus BLEU / METEOR are not means of per-image values
            info[m].per_sample = None
        return info

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {}  # per-image scores need the whole evaluated set (IDF): filled in by aggregate()

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        gts = {s.id: list(s.references) for s in samples}
        res = {s.id: r["prediction"] for s, r in zip(samples, records)}
        sc = score_captions(gts, res)
        per_sample = {sid: {k: v for k, v in vals.items() if k in ("CIDEr", "ROUGE_L")}
                      for sid, vals in sc.per_image.items()}
        return Aggregate(metrics={k: round(v, 6) for k, v in sc.corpus.items()},
                         breakdown={"spice": sc.spice, "n_images": sc.n_images},
                         notes=list(sc.notes) + [sc.spice], per_sample=per_sample)


TASK = COCOCaptions
