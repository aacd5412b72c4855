"""Readers and embedded data sets task plugins build on (import them from here, not from
``mmgpt_eval.data``: this module is the stable surface)."""

from ..data.captions import load_coco_captions, load_coco_karpathy, load_flickr30k_karpathy
from ..data.classification import (
    HATEFUL_MEMES_CLASSES,
    image_folder,
    imagenet_classnames,
    load_hateful_memes,
    load_imagenet_folder,
)
from ..data.counting import load_tallyqa, load_vqa_counting, procedural_samples as counting_samples
from ..data.counting_images import DEFAULT_N, SPLIT_SEEDS, generate_counting_set
from ..data.dialog_spec import BLANK_IMAGE, Conversation, ImageSpec, blank_image, load_dialog_probes, resolve_image
from ..data.easyvqa import answer_type as easyvqa_answer_type
from ..data.easyvqa import load_split as load_easyvqa_split
from ..data.judged_benchmarks import load_llava_bench, load_mmvet
from ..data.paths import inside as path_inside
from ..data.textvqa import load_textvqa_json, load_textvqa_vqa_format
from ..data.vizwiz import ANSWERABLE as VIZWIZ_ANSWERABLE
from ..data.vizwiz import load_vizwiz
from ..data.vqa_files import index_images, load_vqa_files
from ..io import iter_jsonl, read_json

__all__ = [
    "DEFAULT_N",
    "SPLIT_SEEDS",
    "generate_counting_set",
    "counting_samples",
    "load_tallyqa",
    "load_vqa_counting",
    "BLANK_IMAGE",
    "Conversation",
    "ImageSpec",
    "blank_image",
    "load_dialog_probes",
    "resolve_image",
    "easyvqa_answer_type",
    "load_easyvqa_split",
    "index_images",
    "load_vqa_files",
    "load_textvqa_json",
    "load_textvqa_vqa_format",
    "VIZWIZ_ANSWERABLE",
    "load_vizwiz",
    "load_llava_bench",
    "load_mmvet",
    "load_coco_karpathy",
    "load_coco_captions",
    "load_flickr30k_karpathy",
    "iter_jsonl",
    "read_json",
    "path_inside",
    "HATEFUL_MEMES_CLASSES",
    "image_folder",
    "imagenet_classnames",
    "load_hateful_memes",
    "load_imagenet_folder",
]
