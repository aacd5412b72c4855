"""OpenFlamingo's own evaluation code (``open_flamingo/eval/evaluate.py``) on a model mmgpt-eval loaded.

The open-flamingo 2.0.1 wheel ships ``open_flamingo/eval/`` (``evaluate.py`` with ``evaluate_vqa``,
``evaluate_captioning`` and ``evaluate_classification``, its datasets, RICES, metrics and the
``BaseEvalModel`` interface) but not the eval-model wrapper ``open_flamingo/eval/models/open_flamingo.py``.
This module supplies both missing pieces:

* :class:`OpenFlamingoEvalModel`: a ``BaseEvalModel`` around an already loaded
  :class:`~mmgpt_eval.model.build.LoadedModel`, with the behaviour of OpenFlamingo's eval model
  (left-padded tokenisation, images as ``(B, T_img, 1, C, H, W)`` with zero-filled slots for rows with
  fewer images, ``generate`` with the caller's beams/lengths, new tokens decoded with special tokens
  skipped, the OpenFlamingo prompt strings, and rank classification by class-name log-likelihood).
* :func:`run_openflamingo_eval`: runs the wheel's ``evaluate_vqa`` / ``evaluate_captioning`` /
  ``evaluate_classification`` unchanged and returns the score and the per-sample predictions.

It is a test oracle (does ``--protocol openflamingo`` reproduce OpenFlamingo?) and the peer of the speed
benchmark, so everything that is not upstream's code is listed here.

Importing ``evaluate.py``
    It imports its siblings as top-level modules (``import utils``, ``from rices import RICES``...).
    :func:`load_evaluate` imports it as ``open_flamingo.eval.evaluate`` with those bare names mapped to
    the package's own modules (``open_flamingo.eval.utils``...) in ``sys.modules`` during the import
    only, and restores whatever those names were before (no ``sys.path`` entry, so a project's own
    ``utils`` module can neither shadow nor be shadowed).

What the driver substitutes, for the duration of one call (restored afterwards, also on errors)
    * Distributed: evaluate.py calls ``torch.distributed.all_gather_object``; when no process group is
      active a 1-process gloo group (on an in-memory ``HashStore``, no port) is created and destroyed
      afterwards. An already active group is used as it is (results on rank 0, ``None`` elsewhere).
    * Per-sample predictions: evaluate.py keeps them in a local variable and deletes its results file
      after scoring. ``torch.distributed.all_gather_object`` is wrapped to record the object it gathers
      -- exactly the list (VQA, classification) or dict (captioning) that evaluate.py then scores --
      and the driver writes it, flattened as evaluate.py does, to ``output_dir``. evaluate.py's own
      temporary results files are written (and deleted) in ``output_dir``: the working directory is
      ``output_dir`` during the call.
    * RICES: ``RICES`` builds an open_clip ViT-L-14 (``openai``) encoder, a download this harness cannot
      make. evaluate.py's ``RICES`` name is pointed at :class:`ModelEncoderRICES`, a subclass that keeps
      upstream's ``find`` and ``_precompute_features`` unchanged but whose ``model.encode_image`` is the
      LOADED MODEL's vision encoder (its pooled output, with the loaded model's image processor), the
      same features as ``mmgpt_eval.rices``. For the real OpenFlamingo models (vision encoder = CLIP
      ViT-L-14 ``openai``, QuickGELU) this is the very network upstream's RICES loads; for the tiny
      models it is their tiny encoder. The demo features are kept on the CPU (upstream keeps features it
      computed itself on the device and multiplies them with CPU query features, which fails on a GPU).
      ``rices_features`` (a ``(len(train), d)`` tensor) replaces the computed demo features, as
      evaluate.py's ``cached_features`` does.
    * CIDEr: ``compute_cider`` runs pycocoevalcap's ``COCOEvalCap.evaluate()``, whose SPICE scorer
      downloads Stanford CoreNLP at run time (impossible offline). :func:`cider_without_spice` computes
      the same CIDEr -- same result loading (pycocotools ``loadRes``), same image ids (the evaluated
      ones), same PTB tokenizer, same ``Cider`` scorer -- without the other scorers.
    * ImageNet: ``evaluate_classification`` builds every query prompt with ``batch["ocr"][i]`` (used by
      the Hateful Memes prompt only), but ``ImageNetDataset`` items have no ``"ocr"``: as shipped (and
      at upstream HEAD) the ImageNet evaluation stops with ``KeyError: 'ocr'``. evaluate.py's
      ``ImageNetDataset`` name is pointed at :func:`imagenet_dataset_with_ocr`'s subclass, whose items
      also carry ``"ocr": None``, which the ImageNet prompt ignores.
    * OK-VQA: evaluate.py's answer stemmer needs NLTK data (``punkt_tab``,
      ``averaged_perceptron_tagger_eng``, ``wordnet``); its absence is reported before any work.

Differences of the wrapper from OpenFlamingo's eval model, and the two transformers-5 traps
    1. KV cache (transformers >= 5): the cache is a mutable ``DynamicCache`` that a forward EXTENDS IN
       PLACE. OpenFlamingo's classification loop feeds every class name against one cached context;
       written for the immutable tuple caches of transformers 4.x, it would, here, let each class name
       attend to all earlier class names' tokens. The wrapper crops the cache back to the context length
       after each class name (``cache.crop(-n)``: a negative length removes ``n`` tokens, in transformers
       5 and in the 4.x releases whose ``crop`` accepts one); an immutable legacy cache is left as it
       is. This restores upstream's behaviour, it does not change it. The cache is passed as
       ``past_key_values=`` to ``MMFlamingo.forward`` (which names it for the LM with
       ``compat.lm_cache_kwarg``) and read back with ``compat.output_cache``.
    2. Attention mask of the cached class-name tokens: upstream passes ``attention_mask=None`` when it
       feeds the class-name tokens against the cached context, so on a left-padded row those tokens
       attend to the pad positions of the context too (the uncached path masks them). Rows without
       padding are unaffected; positions are the same in both paths (the LM counts pad slots in either,
       and the LLaMA-family LMs used here have relative (rotary) positions). ``cached_mask="extended"``
       (default, correct) passes the context mask extended with ones, so ``use_cache=True`` equals
       ``use_cache=False``; ``cached_mask="upstream"`` reproduces upstream (``None``), which differs
       from the uncached result on padded rows only.
    3. Generation is ``MMFlamingo.generate`` with the vision input passed as OpenFlamingo passes it
       (``generate(vision_x, lang_x, attention_mask, min_new_tokens=..., max_new_tokens=...,
       num_beams=..., length_penalty=...)``), stopping at ``<|endofchunk|>`` (``eos_token_id`` is
       given explicitly, the default of OpenFlamingo's ``Flamingo.generate``; MMFlamingo's own default
       for v1 models is the LM's ``</s>``). MMFlamingo.generate never emits ``<image>`` (it is added to
       ``suppress_tokens``); upstream's could (the token is then dropped by ``skip_special_tokens``).
    4. Without the cache, upstream calls the model with the raw images once per class name (1000
       vision-encoder passes per ImageNet batch); the wrapper encodes them once and passes the
       features (``vision_features=``): the same numbers, computed once.
    5. No autocast: the model runs in the loaded dtype and images are cast to it (upstream's
       ``cast_dtype``); token ids stay integers (upstream casts them to ``cast_dtype`` too, a no-op in
       fp32).

Upstream behaviours reproduced as they are (worth knowing when reading its numbers)
    * "0-shot" = two text-only demos (``<image>`` removed from the demo text). For VQA and captioning
      the demo images are dropped too; for CLASSIFICATION they are NOT (``effective_num_shots > 0``
      decides): the prompt has one ``<image>`` but ``vision_x`` holds [demo1, demo2, query], and with
      v2 semantics (``text_time = cumsum(media)``) the query's ``<image>`` attends to demo 1's image.
    * With RICES, the two text-only demos of "0-shot" are RICES-selected too.
    * The eval subset is ``np.random.choice`` of the test set (seeded), then reordered by the
      ``DistributedSampler`` (shuffle, seed 0); demos are drawn with Python's ``random`` per batch row
      from a ``query_set_size`` random subset of the train set, after ``utils.random_seed(seed + rank)``
      (which reseeds torch, numpy and random of the whole process).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from open_flamingo.eval.eval_model import BaseEvalModel
from PIL import Image

from mmgpt_eval.compat import output_cache

__all__ = [
    "TASKS",
    "ModelEncoderRICES",
    "OpenFlamingoEvalModel",
    "OpenFlamingoResult",
    "OpenFlamingoTrial",
    "cider_without_spice",
    "image_digest",
    "imagenet_dataset_with_ocr",
    "load_evaluate",
    "ok_vqa_stemmer_ready",
    "run_openflamingo_eval",
]

# evaluate.py's sibling modules, in an order in which each one's bare imports are already mapped
_SIBLINGS = (
    "utils",
    "classification_utils",
    "eval_model",
    "coco_metric",
    "eval_datasets",
    "rices",
    "ok_vqa_utils",
    "vqa_metric",
)
_IMPORT_LOCK = threading.Lock()
_MISSING = object()


def load_evaluate():
    """``open_flamingo/eval/evaluate.py`` of the installed wheel, imported as ``open_flamingo.eval.evaluate``."""
    name = "open_flamingo.eval.evaluate"
    if name in sys.modules:
        return sys.modules[name]
    with _IMPORT_LOCK:
        if name in sys.modules:
            return sys.modules[name]
        saved = {n: sys.modules.get(n, _MISSING) for n in _SIBLINGS}
        try:
            for n in _SIBLINGS:
                sys.modules[n] = importlib.import_module(f"open_flamingo.eval.{n}")
            return importlib.import_module(name)
        finally:
            for n, mod in saved.items():
                if mod is _MISSING:
                    sys.modules.pop(n, None)
                else:
                    sys.modules[n] = mod


# ------------------------------------------------------------------------------------------ eval model
def image_digest(image: Image.Image) -> str:
    """sha256 of an image's decoded RGB pixels and size: which image a prompt was given, comparable with
    the same file opened elsewhere (the trial's ``images``)."""
    import hashlib

    rgb = image.convert("RGB")
    return hashlib.sha256(repr(rgb.size).encode() + rgb.tobytes()).hexdigest()


def _unwrap(model):
    return (
        model.module if isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else model
    )


class OpenFlamingoEvalModel(BaseEvalModel):
    """OpenFlamingo's ``BaseEvalModel`` over a :class:`~mmgpt_eval.model.build.LoadedModel`.

    ``cached_mask``: the attention mask of class-name tokens fed against the cached context in
    :meth:`get_rank_classifications` -- ``"extended"`` (context mask + ones: equals the uncached path)
    or ``"upstream"`` (``None``, as OpenFlamingo: padded rows also attend to their pad positions).
    ``record``: keep every call's prompts, image counts and outputs in :attr:`calls`.
    """

    CACHED_MASKS = ("extended", "upstream")

    def __init__(self, loaded, *, cached_mask: str = "extended", record: bool = True):
        super().__init__([])
        if cached_mask not in self.CACHED_MASKS:
            raise ValueError(f"cached_mask must be one of {self.CACHED_MASKS}, got {cached_mask!r}")
        self.loaded = loaded
        self.model = loaded.model
        self.model.eval()
        self.tokenizer = loaded.tokenizer
        self.image_processor = loaded.image_processor
        self.device = loaded.device
        self.cast_dtype = loaded.dtype
        self.lm_name = getattr(getattr(loaded, "spec", None), "name", None) or "model"
        self.cached_mask = cached_mask
        self.calls: list[dict[str, Any]] | None = [] if record else None

    # ------------------------------------------------------------------ BaseEvalModel plumbing
    def set_device(self, device):
        self.device = torch.device(device) if not isinstance(device, torch.device) else device
        self.model = self.model.to(self.device)

    def init_distributed(self):
        """Wrap the model in DDP when more than one process takes part (evaluation only runs forward
        passes; with one process there is nothing to synchronise)."""
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids = [self.device] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    def encode_vision_x(self, image_tensor: torch.Tensor):
        _unwrap(self.model)._encode_vision_x(image_tensor.to(self.device, dtype=self.cast_dtype))

    def cache_media(self, input_ids, vision_x):
        _unwrap(self.model).cache_media(input_ids=input_ids, vision_x=vision_x)

    def uncache_media(self):
        _unwrap(self.model).uncache_media()

    # ------------------------------------------------------------------ inputs
    def _prepare_images(self, batch: Sequence[Sequence[Image.Image]]) -> torch.Tensor | None:
        """Images -> (B, T_img, 1, C, H, W); rows with fewer images keep zero-filled slots at the end."""
        per_row = max((len(x) for x in batch), default=0)
        out = None
        for i, row in enumerate(batch):
            for j, image in enumerate(row):
                px = self.image_processor(image)
                if out is None:
                    out = torch.zeros((len(batch), per_row, 1) + tuple(px.shape), dtype=px.dtype)
                out[i, j, 0] = px
        return None if out is None else out.to(self.device, dtype=self.cast_dtype)

    def _prepare_text(self, batch: Sequence[str], padding="longest", truncation=True, max_length=2000):
        """Left-padded token ids and attention mask (B, T)."""
        enc = self.tokenizer(
            list(batch),
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors="pt",
            padding_side="left",
        )
        return enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)

    def _record(self, kind: str, batch_text, batch_images, outputs) -> None:
        if self.calls is not None:
            self.calls.append(
                {
                    "kind": kind,
                    "batch_text": list(batch_text),
                    "n_images": [len(x) for x in batch_images],
                    "outputs": outputs,
                    "images": [[image_digest(im) for im in row] for row in batch_images],
                }
            )

    # ------------------------------------------------------------------ generation
    def get_outputs(
        self,
        batch_text: list[str],
        batch_images: list[list[Image.Image]],
        min_generation_length: int,
        max_generation_length: int,
        num_beams: int,
        length_penalty: float,
    ) -> list[str]:
        vision_x = self._prepare_images(batch_images)
        input_ids, attention_mask = self._prepare_text(batch_text)
        model = _unwrap(self.model)
        with torch.inference_mode():
            out = model.generate(
                vision_x,
                input_ids,
                attention_mask,
                min_new_tokens=min_generation_length,
                max_new_tokens=max_generation_length,
                num_beams=num_beams,
                length_penalty=length_penalty,
                eos_token_id=model.eoc_token_id,
            )
        texts = self.tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)
        self._record("generate", batch_text, batch_images, list(texts))
        return texts

    # ------------------------------------------------------------------ classification
    def get_rank_classifications(
        self,
        batch_text: list[str],
        batch_images: list[list[Image.Image]],
        all_class_names: list[str],
        use_cache: bool,
        normalize_length: bool,
    ) -> torch.Tensor:
        """(B, len(all_class_names)) log-likelihoods of each class name after each prompt (mean over
        the class name's tokens if ``normalize_length``, else the sum)."""
        model = _unwrap(self.model)
        vision_x = self._prepare_images(batch_images)
        ctx_ids, ctx_mask = self._prepare_text(batch_text)
        n_rows = ctx_ids.shape[0]
        scores = []
        try:
            with torch.inference_mode():
                if use_cache:
                    self.cache_media(input_ids=ctx_ids, vision_x=vision_x)
                    ctx_out = model(
                        vision_x=None,
                        lang_x=ctx_ids,
                        attention_mask=ctx_mask,
                        clear_conditioned_layers=False,
                        use_cache=True,
                    )
                    ctx_logits, ctx_cache = ctx_out.logits, output_cache(ctx_out)
                else:
                    features = model.encode_vision(vision_x) if vision_x is not None else None
                for class_name in all_class_names:
                    cls = self.tokenizer(class_name, add_special_tokens=False, return_tensors="pt")["input_ids"]
                    cls = cls.to(self.device).expand(n_rows, -1)
                    n_tok = cls.shape[1]
                    if use_cache:
                        logits = torch.cat([ctx_logits, self._continue_cached(cls, ctx_cache, ctx_mask)], dim=1)
                    else:
                        logits = model(
                            vision_x=None,
                            vision_features=features,
                            lang_x=torch.cat([ctx_ids, cls], dim=1),
                            attention_mask=torch.cat([ctx_mask, torch.ones_like(cls)], dim=1),
                            clear_conditioned_layers=True,
                        ).logits
                    logprobs = torch.log_softmax(logits, dim=-1)[:, -n_tok - 1 : -1, :]
                    token_lp = torch.gather(logprobs, 2, cls[:, :, None]).squeeze(-1)
                    scores.append(token_lp.mean(dim=1) if normalize_length else token_lp.sum(dim=1))
        finally:
            self.uncache_media()
        result = torch.vstack(scores).T.cpu()
        self._record("rank", batch_text, batch_images, result)
        return result

    def _continue_cached(self, cls: torch.Tensor, ctx_cache, ctx_mask: torch.Tensor) -> torch.Tensor:
        """Feed the class-name tokens one at a time against the cached context (upstream's loop), then
        restore the cache to the context alone (trap 1)."""
        model = _unwrap(self.model)
        ctx_len = ctx_mask.shape[1]
        cache, logits = ctx_cache, []
        try:
            for t in range(cls.shape[1]):
                mask = None
                if self.cached_mask == "extended":
                    mask = torch.cat(
                        [ctx_mask, torch.ones((cls.shape[0], t + 1), dtype=ctx_mask.dtype, device=ctx_mask.device)],
                        dim=1,
                    )
                out = model(
                    vision_x=None,
                    lang_x=cls[:, t : t + 1],
                    attention_mask=mask,
                    clear_conditioned_layers=False,
                    past_key_values=cache,
                    use_cache=True,
                )
                cache = output_cache(out)
                logits.append(out.logits)
        finally:
            _restore_cache(ctx_cache, ctx_len)
        return torch.cat(logits, dim=1)

    # ------------------------------------------------------------------ prompts (OpenFlamingo's strings)
    def get_vqa_prompt(self, question, answer=None) -> str:
        return f"<image>Question:{question} Short answer:{'' if answer is None else answer + '<|endofchunk|>'}"

    def get_caption_prompt(self, caption=None) -> str:
        return f"<image>Output:{'' if caption is None else caption + '<|endofchunk|>'}"

    def get_imagenet_prompt(self, label=None) -> str:
        return f"<image>Output:{'' if label is None else label + '<|endofchunk|>'}"

    def get_hateful_memes_prompt(self, text, label=None) -> str:
        tail = "" if label is None else label + "<|endofchunk|>"
        return f"<image>is an image with: '{text}' written on it. Is it hateful? Answer:{tail}"

    # BaseEvalModel's abstract names for the same prompts
    def vqa_prompt(self, question, answer=None) -> str:
        return self.get_vqa_prompt(question, answer)

    def caption_prompt(self, caption=None) -> str:
        return self.get_caption_prompt(caption)


def _restore_cache(cache, length: int) -> None:
    """Crop a cache that a forward extended in place back to ``length`` tokens (no-op for immutable
    legacy caches, which a forward never changes)."""
    if cache is None or not hasattr(cache, "get_seq_length") or not hasattr(cache, "crop"):
        return
    grown = int(cache.get_seq_length()) - length
    if grown > 0:
        cache.crop(-grown)
    if int(cache.get_seq_length()) != length:  # pragma: no cover - a cache type we do not know
        raise RuntimeError(f"could not restore the KV cache to the context ({cache.get_seq_length()} != {length})")


# ------------------------------------------------------------------------------------------ RICES
class _PooledImageEncoder:
    """``encode_image`` of the loaded model's vision encoder: its pooled output, in float32."""

    def __init__(self, loaded):
        self.loaded = loaded

    def eval(self):
        return self

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        encoder = self.loaded.model.vision_encoder
        return encoder(pixels.to(self.loaded.device, dtype=self.loaded.dtype))[0].float()


def ModelEncoderRICES(loaded) -> type:
    """A subclass of evaluate.py's ``RICES`` whose encoder is ``loaded``'s vision encoder (see module
    docstring); constructed by evaluate.py with upstream's arguments (encoder name/pretrained ignored)."""
    load_evaluate()
    base: Any = sys.modules["open_flamingo.eval.rices"].RICES  # upstream's class (evaluate.RICES may be patched)

    class _ModelEncoderRICES(base):
        def __init__(
            self,
            dataset,
            device,
            batch_size,
            vision_encoder_path=None,
            vision_encoder_pretrained=None,
            cached_features=None,
        ):
            self.dataset = dataset
            self.device = device
            self.batch_size = batch_size
            self.model = _PooledImageEncoder(loaded)
            self.image_processor = loaded.image_processor
            self.encoder_note = (
                f"{getattr(getattr(loaded, 'spec', None), 'name', 'model')} vision encoder "
                f"(pooled) instead of {vision_encoder_path}/{vision_encoder_pretrained}"
            )
            feats = cached_features if cached_features is not None else self._precompute_features()
            self.features = feats.detach().float().cpu()

    _ModelEncoderRICES.__name__ = _ModelEncoderRICES.__qualname__ = "ModelEncoderRICES"
    return _ModelEncoderRICES


# ------------------------------------------------------------------------------------------ ImageNet
def imagenet_dataset_with_ocr() -> type:
    """evaluate.py's ``ImageNetDataset`` with an ``"ocr": None`` entry in every item (see module docstring)."""
    base: Any = importlib.import_module("open_flamingo.eval.eval_datasets").ImageNetDataset

    class ImageNetDatasetWithOCR(base):
        def __getitem__(self, idx):
            item = super().__getitem__(idx)
            item.setdefault("ocr", None)
            return item

    return ImageNetDatasetWithOCR


# ------------------------------------------------------------------------------------------ CIDEr
def cider_without_spice(result_path, annotations_path) -> dict[str, float]:
    """evaluate.py's ``compute_cider`` minus the scorers other than CIDEr (SPICE needs a download):
    the same ``COCO.loadRes``, evaluated image ids, ``PTBTokenizer`` and ``Cider``."""
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocotools.coco import COCO

    coco = COCO(annotations_path)
    res = coco.loadRes(str(result_path))
    ids = res.getImgIds()
    tok = PTBTokenizer()
    gts = tok.tokenize({i: coco.imgToAnns[i] for i in ids})
    preds = tok.tokenize({i: res.imgToAnns[i] for i in ids})
    score, _ = Cider().compute_score(gts, preds)
    return {"CIDEr": float(score)}


def ok_vqa_stemmer_ready() -> str | None:
    """``None`` if evaluate.py's OK-VQA answer stemmer runs, else why not."""
    stemmer = load_evaluate().postprocess_ok_vqa_generation.__globals__["stemmer"]
    try:
        stemmer.stem("dogs running")
    except LookupError as err:
        first = [line.strip() for line in str(err).splitlines() if "Resource" in line]
        return (
            first[0] if first else "NLTK data missing"
        ) + " (python -m nltk.downloader punkt_tab averaged_perceptron_tagger_eng wordnet)"
    return None


# ------------------------------------------------------------------------------------------ driver
@dataclass(frozen=True)
class TaskInfo:
    kind: str  # vqa | caption | classification
    dataset_name: str  # evaluate.py's dataset_name
    prefix: str  # evaluate.py argument prefix of the data paths
    metric: str


TASKS: dict[str, TaskInfo] = {
    "vqav2": TaskInfo("vqa", "vqav2", "vqav2_", "accuracy"),
    "ok_vqa": TaskInfo("vqa", "ok_vqa", "ok_vqa_", "accuracy"),
    "vizwiz": TaskInfo("vqa", "vizwiz", "vizwiz_", "accuracy"),
    "textvqa": TaskInfo("vqa", "textvqa", "textvqa_", "accuracy"),
    "coco": TaskInfo("caption", "coco", "coco_", "CIDEr"),
    "flickr30k": TaskInfo("caption", "flickr", "flickr_", "CIDEr"),
    "hateful_memes": TaskInfo("classification", "hateful_memes", "hateful_memes_", "roc_auc"),
    "imagenet": TaskInfo("classification", "imagenet", "imagenet_", "top1"),
}
ALIASES = {"okvqa": "ok_vqa", "flickr": "flickr30k", "flickr30": "flickr30k"}
# only needed to format EvalAI test-dev files, which this driver does not do
_OPTIONAL_DATA = {"vqav2_final_test_questions_json_path"}


@dataclass
class OpenFlamingoTrial:
    seed: int
    score: float | None
    predictions: list[dict[str, Any]]  # what evaluate.py gathered and scored, flattened as it does
    prompts: list[str] | None  # prompt of each prediction (None when not alignable, see run_openflamingo_eval)
    n_images: list[int] | None  # images passed with each prompt
    raw_outputs: list[Any] | None  # generation: decoded text before post-processing; classification: logprobs
    predictions_file: Path | None
    seconds: float
    images: list[list[str]] | None = None  # image_digest of each image passed with each prompt, in order


@dataclass
class OpenFlamingoResult:
    task: str
    dataset_name: str
    metric: str  # accuracy (VQA, x100) | CIDEr (x100) | top1 (fraction) | roc_auc
    num_shots: int
    rices: bool
    trials: list[OpenFlamingoTrial]
    output_dir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def scores(self) -> list[float | None]:
        return [t.score for t in self.trials]

    @property
    def score(self) -> float | None:
        vals = [s for s in self.scores if s is not None]
        if not vals:
            return None
        finite = [v for v in vals if not math.isnan(v)]
        return sum(finite) / len(finite) if finite else float("nan")  # np.nanmean, as evaluate.main

    @property
    def predictions(self) -> list[dict[str, Any]]:
        return self.trials[0].predictions


def _resolve_task(task: str) -> tuple[str, TaskInfo]:
    name = ALIASES.get(task, task)
    if name not in TASKS:
        raise ValueError(f"unknown OpenFlamingo task {task!r}; known: {', '.join(TASKS)}")
    return name, TASKS[name]


def _build_args(ev, info: TaskInfo, data: dict[str, str], **settings) -> Any:
    args = ev.parser.parse_args([])
    names = sorted(k for k in vars(args) if k.startswith(info.prefix))
    given = set()
    for key, value in data.items():
        full = key if key.startswith(info.prefix) else info.prefix + key
        if full not in names:
            short = [n[len(info.prefix) :] for n in names]
            raise ValueError(f"unknown data key {key!r} for {info.dataset_name}; expected {', '.join(short)}")
        if value is not None:
            setattr(args, full, str(value))
            given.add(full)
    missing = [n[len(info.prefix) :] for n in names if n not in _OPTIONAL_DATA and n not in given]
    if missing:
        raise ValueError(f"{info.dataset_name} needs data paths: {', '.join(missing)}")
    for k, v in settings.items():
        setattr(args, k, v)
    return args


@contextlib.contextmanager
def _process_group() -> Iterator[tuple[int, int]]:
    dist = torch.distributed
    created = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
        created = True
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        if created:
            dist.destroy_process_group()


@contextlib.contextmanager
def swapped_attr(obj: Any, name: str, value: Any) -> Iterator[None]:
    """``obj.name = value`` for the duration of the block, restored after (also on errors)."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _plain(value: Any) -> Any:
    """numpy scalars (ImageNet ids are ``np.int64`` Subset indices) -> Python numbers."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value


def _flatten(kind: str, gathered: list[Any]) -> list[dict[str, Any]]:
    if kind == "caption":  # list of {image_id: {"caption": ...}} dicts, merged as evaluate.py does
        merged = {k: v for d in gathered for k, v in d.items()}
        return [{"image_id": _plain(k), "caption": v["caption"]} for k, v in merged.items()]
    return [{k: _plain(v) for k, v in item.items()} for part in gathered for item in part]


def run_openflamingo_eval(
    loaded,
    task: str,
    *,
    data: dict[str, str],
    num_shots: int,
    seed: int = 42,
    rices: bool = False,
    rices_features: torch.Tensor | None = None,
    batch_size: int = 8,
    num_samples: int = -1,
    query_set_size: int = 2048,
    trials: int = 1,
    output_dir,
    use_kv_cache: bool = True,
    prompt_ensembling: bool = False,
    cached_mask: str = "extended",
    eval_model: OpenFlamingoEvalModel | None = None,
    class_names: Sequence[str] | None = None,
    num_beams: int | None = None,
) -> OpenFlamingoResult:
    """Run OpenFlamingo's ``evaluate_vqa`` / ``evaluate_captioning`` / ``evaluate_classification`` on ``loaded``.

    ``task``: one of :data:`TASKS` (vqav2, ok_vqa, vizwiz, textvqa, coco, flickr30k, hateful_memes,
    imagenet). ``data``: evaluate.py's data-path arguments of that task, with or without the task prefix
    (e.g. for vqav2 ``train_image_dir_path``, ``train_questions_json_path``,
    ``train_annotations_json_path``, ``test_image_dir_path``, ``test_questions_json_path``,
    ``test_annotations_json_path``; coco: ``train_image_dir_path``, ``val_image_dir_path``,
    ``karpathy_json_path``, ``annotations_json_path``; flickr30k: ``image_dir_path``,
    ``karpathy_json_path``, ``annotations_json_path``; hateful_memes: ``image_dir_path``,
    ``train_annotations_json_path``, ``test_annotations_json_path``; imagenet: ``root``).
    VQA/caption tasks are always scored, so test annotations are required.

    ``trials`` runs seeds ``seed, seed+1, ...`` (evaluate.py's ``--trial_seeds``); ``use_kv_cache`` is
    the opposite of ``--no_caching_for_classification``; ``prompt_ensembling`` is
    ``--classification_prompt_ensembling`` (ImageNet only, as in evaluate.main). TextVQA generates up to
    10 tokens, the rest use evaluate.py's defaults (3 beams, length penalty 0; 5 tokens for VQA, 20 for
    captions). ``cached_mask`` is passed to :class:`OpenFlamingoEvalModel` (ignored with ``eval_model``).
    ``num_beams`` (VQA and captions; NOT evaluate.py's command line, which always uses 3) is passed to
    ``evaluate_vqa`` / ``evaluate_captioning``'s own ``num_beams`` parameter (1: greedy).

    ``class_names`` (ImageNet only; NOT upstream's protocol): rank these names instead of all 1000
    ``IMAGENET_CLASSNAMES`` -- they must be the first ``len(class_names)`` of that list, since the dataset
    names class ``i`` by ``IMAGENET_CLASSNAMES[i]``. A much cheaper, different task (each batch ranks
    every class name: about 30 s per batch of 8 for 1000 names on the tiny model on 2 CPU cores), for
    tests and benchmarks.

    Each trial's predictions are written to ``output_dir/<task>_<N>shot_<random|rices>_seed<S>.json``.
    ``prompts``/``n_images``/``images`` (:func:`image_digest` of each image)/``raw_outputs`` are aligned
    with the predictions in one process and without prompt ensembling; otherwise ``None``.
    """
    name, info = _resolve_task(task)
    ev = load_evaluate()
    if num_shots < 0:
        raise ValueError("num_shots must be >= 0")
    if trials < 1:
        raise ValueError("trials must be >= 1")
    args = _build_args(
        ev,
        info,
        data,
        model="open_flamingo",
        batch_size=batch_size,
        num_samples=num_samples,
        query_set_size=query_set_size,
        rices=rices,
        num_trials=trials,
        trial_seeds=[seed + i for i in range(trials)],
        no_caching_for_classification=not use_kv_cache,
        classification_prompt_ensembling=prompt_ensembling,
    )
    if name == "ok_vqa":
        why = ok_vqa_stemmer_ready()
        if why:
            raise RuntimeError(f"OpenFlamingo's OK-VQA post-processing cannot run: {why}")
    if class_names is not None:
        full = list(ev.IMAGENET_CLASSNAMES)
        class_names = list(class_names)
        if name != "imagenet":
            raise ValueError("class_names only applies to imagenet")
        if not class_names or class_names != full[: len(class_names)]:
            raise ValueError("class_names must be the first N entries of IMAGENET_CLASSNAMES")
    out_dir = Path(output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    model = eval_model or OpenFlamingoEvalModel(loaded, cached_mask=cached_mask)
    if model.calls is None:
        model.calls = []
    notes = []
    if rices:
        notes.append(
            f"RICES encoder: the loaded model's vision encoder (pooled), not "
            f"{args.rices_vision_encoder_path}/{args.rices_vision_encoder_pretrained}"
        )
    if name == "imagenet":
        notes.append("ImageNetDataset items carry 'ocr': None (evaluate.py reads batch['ocr'] for every dataset)")
    if info.kind == "caption":
        notes.append("CIDEr: cider_without_spice (pycocoevalcap PTBTokenizer + Cider; other scorers skipped)")

    gathered: list[Any] = []
    real_gather = torch.distributed.all_gather_object

    def recording_gather(object_list, obj, *a, **kw):
        result = real_gather(object_list, obj, *a, **kw)
        gathered.append(copy.deepcopy(list(object_list)))
        return result

    result = OpenFlamingoResult(
        task=name,
        dataset_name=info.dataset_name,
        metric=info.metric,
        num_shots=num_shots,
        rices=rices,
        trials=[],
        output_dir=out_dir,
        notes=notes,
    )
    with contextlib.ExitStack() as stack:
        rank, world = stack.enter_context(_process_group())
        args.rank, args.world_size, args.local_rank = rank, world, rank
        stack.enter_context(_chdir(out_dir))
        stack.enter_context(swapped_attr(torch.distributed, "all_gather_object", recording_gather))
        stack.enter_context(swapped_attr(ev, "RICES", ModelEncoderRICES(loaded)))
        stack.enter_context(swapped_attr(ev, "compute_cider", cider_without_spice))
        stack.enter_context(swapped_attr(ev, "ImageNetDataset", imagenet_dataset_with_ocr()))
        if class_names is not None:
            stack.enter_context(swapped_attr(ev, "IMAGENET_CLASSNAMES", class_names))
            notes.append(f"ImageNet restricted to the first {len(class_names)} class names (not upstream's task)")
        for trial_seed in args.trial_seeds:
            gathered.clear()
            model.calls.clear()
            t0 = time.perf_counter()
            common = {
                "eval_model": model,
                "num_shots": num_shots,
                "seed": trial_seed,
                "dataset_name": info.dataset_name,
                "cached_features": rices_features,
            }
            beams = {} if num_beams is None else {"num_beams": num_beams}
            try:
                if info.kind == "vqa":
                    extra = {"max_generation_length": 10} if name == "textvqa" else {}
                    score = ev.evaluate_vqa(args=args, **common, **extra, **beams)
                elif info.kind == "caption":
                    score = ev.evaluate_captioning(args, **common, **beams)
                else:
                    score = ev.evaluate_classification(
                        args,
                        no_kv_caching=args.no_caching_for_classification,
                        use_prompt_ensembling=prompt_ensembling and name == "imagenet",
                        **common,
                    )
            except ValueError as err:
                if "larger sample than population" in str(err):
                    raise ValueError(
                        f"{err}: evaluate.py samples num_samples ({num_samples}) test items and "
                        f"query_set_size ({query_set_size}) demo candidates without replacement; "
                        f"both must be <= the split's size"
                    ) from err
                raise
            seconds = time.perf_counter() - t0
            if rank != 0:
                result.trials.append(OpenFlamingoTrial(trial_seed, None, [], None, None, None, None, seconds))
                continue
            predictions = _flatten(info.kind, gathered[-1]) if gathered else []
            prompts, n_images, raw, images = _aligned(
                model.calls, info.kind, len(predictions), world == 1 and not (prompt_ensembling and name == "imagenet")
            )
            path = out_dir / f"{name}_{num_shots}shot_{'rices' if rices else 'random'}_seed{trial_seed}.json"
            path.write_text(
                json.dumps(
                    {
                        "task": name,
                        "num_shots": num_shots,
                        "seed": trial_seed,
                        "rices": rices,
                        "metric": info.metric,
                        "score": _jsonable_score(score),
                        "predictions": predictions,
                        "prompts": prompts,
                    },
                    indent=1,
                    default=str,
                )
            )
            result.trials.append(
                OpenFlamingoTrial(
                    seed=trial_seed,
                    score=_jsonable_score(score),
                    predictions=predictions,
                    prompts=prompts,
                    n_images=n_images,
                    raw_outputs=raw,
                    predictions_file=path,
                    seconds=seconds,
                    images=images,
                )
            )
    return result


def _jsonable_score(score: Any) -> float | None:
    return None if score is None else float(score)


def _aligned(calls: list[dict[str, Any]], kind: str, n: int, possible: bool):
    if not possible:
        return None, None, None, None
    prompts = [p for c in calls for p in c["batch_text"]]
    n_images = [k for c in calls for k in c["n_images"]]
    images = [row for c in calls for row in c["images"]]
    if kind == "classification":
        raw = [row.tolist() for c in calls for row in c["outputs"]]
    else:
        raw = [o for c in calls for o in c["outputs"]]
    if len(prompts) != n:
        return None, None, None, None
    return prompts, n_images, raw, images
