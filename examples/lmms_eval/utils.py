"""Functions the two local lmms-eval tasks in this folder name with ``!function utils.<name>``.
Image paths in data/test.jsonl are relative to data/."""

from pathlib import Path

from lmms_eval.tasks.vqav2.utils import vqav2_doc_to_text, vqav2_process_results_val  # noqa: F401
from PIL import Image

DATA = Path(__file__).resolve().parent / "data"


def doc_to_visual(doc):
    return [Image.open(DATA / doc["image"]).convert("RGB")]


def doc_to_text_mc(doc):
    return doc["question"]


def doc_to_choice(doc):
    return list(doc["choices"])
