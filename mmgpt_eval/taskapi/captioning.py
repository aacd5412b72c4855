"""What every captioning task shares (``coco``, ``flickr30k``): the MultiModal-GPT instruction and the
OpenFlamingo demo fields, and scoring with the COCO caption metrics (pycocoevalcap: BLEU-1..4,
METEOR, ROUGE-L, CIDEr-D on its raw scale; SPICE unavailable offline). CIDEr's IDF comes from the
evaluated images, so per-image CIDEr values are filled in once the whole set is scored."""

from __future__ import annotations

from typing import Any

from ..metrics.caption import score_captions
from .task import Task
from .types import Aggregate, MetricInfo, Output, Sample

CORPUS_ONLY = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR")  # not means of per-image values


class CaptionTask(Task):
    """Base class: subclasses load samples whose ``references`` are the reference captions and declare
    an ``instruction`` option (the MultiModal-GPT template's instruction)."""

    primary_metric = "CIDEr"

    def query_fields(self, sample: Sample) -> dict[str, str]:
        return {"question": self.option("instruction")}

    def demo_fields(self, sample: Sample) -> dict[str, str]:
        return {"caption": sample.references[0].strip()}

    def metric_info(self) -> dict[str, MetricInfo]:
        info = {
            m: MetricInfo(kind="corpus", per_sample=m, description=f"{m} (pycocoevalcap, raw scale)")
            for m in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L")
        }
        info["CIDEr"] = MetricInfo(
            kind="corpus",
            per_sample="CIDEr",
            description="CIDEr-D (pycocoevalcap, raw scale; IDF from the evaluated images)",
        )
        for m in CORPUS_ONLY:
            info[m].kind = "corpus-only"
            info[m].per_sample = None
        return info

    def score_sample(self, sample: Sample, outputs: dict[str, Output]) -> dict[str, Any]:
        return {}  # per-image scores need the whole evaluated set (IDF): filled in by aggregate()

    def aggregate(self, samples: list[Sample], records: list[dict[str, Any]]) -> Aggregate:
        gts = {s.id: list(s.references) for s in samples}
        res = {s.id: r["prediction"] for s, r in zip(samples, records)}
        sc = score_captions(gts, res)
        per_sample = {
            sid: {k: v for k, v in vals.items() if k in ("CIDEr", "ROUGE_L")} for sid, vals in sc.per_image.items()
        }
        return Aggregate(
            metrics={k: round(v, 6) for k, v in sc.corpus.items()},
            breakdown={"spice": sc.spice, "n_images": sc.n_images},
            notes=list(sc.notes) + [sc.spice],
            per_sample=per_sample,
        )
