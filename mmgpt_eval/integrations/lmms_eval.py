"""The ``mmgpt`` model backend for lmms-eval: MultiModal-GPT / OpenFlamingo checkpoints, loaded and run by
mmgpt-eval (optional extra ``mmgpt-eval[lmms]``).

    lmms-eval --model mmgpt --model_args base=tiny-openflamingo,ckpt=tiny-mmgpt --tasks ... --device cpu
    lmms-eval --model mmgpt --model_args ckpt=/path/checkpoint_3.pt            # base chosen from the checkpoint
    lmms-eval --model mmgpt --model_args model=openflamingo-9b,ckpt=...,template=raw

Registered through the entry point ``lmms_eval.models`` -> :func:`manifest` (lmms-eval 0.7's model
registry reads that group at import). ``--model_args`` (lmms-eval's ``key=value,...``):

* ``base`` or ``model``: the base model, as ``mmgpt-eval run --model`` takes it (preset name or
  model-spec TOML); ``ckpt``: a checkpoint (``--ckpt``). Neither: the embedded default
  (tiny-openflamingo + tiny-mmgpt). Only ``ckpt``: its base is chosen from the checkpoint.
* ``template``: ``mmgpt`` (default) or ``raw`` -- how lmms-eval's context becomes the prompt (below).
* ``device``, ``precision``, ``batch_size`` (lmms-eval's ``--device`` / ``--batch_size`` fill these;
  ``auto`` = mmgpt-eval's automatic batch size), ``trust_checkpoint``, ``allow_partial``, ``lora_alpha``,
  ``share_prefix``, ``max_new_tokens`` (the default when a task sets none: 128); ``progress=false``:
  no third-party progress bars while the model loads (transformers' "Loading weights").

Prompt (``template``):

* ``mmgpt``: the context is the instruction of MultiModal-GPT's template (``mmgpt_eval.templates``):
  with images, ``### Image:`` holds one ``<image>`` per visual, in doc_to_visual's order; without,
  the language-only form. A context that already contains ``<image>`` tokens keeps them where they
  are (the ``### Image:`` block is left out); their number must equal the number of visuals. The
  answer is the generated text after ``### Response:``, stripped -- MultiModal-GPT's demo rule.
* ``raw``: the context exactly as lmms-eval built it, with the ``<image>`` tokens it lacks prepended
  (one per visual, each followed by a newline: the convention of lmms-eval's own backends), e.g. for
  OpenFlamingo-style few-shot contexts. The answer is the generated text.

generate_until: decoding follows each request's ``generation_kwargs``: ``max_new_tokens``;
``temperature`` (0 or absent: greedy; > 0 samples unless ``do_sample`` is false), ``do_sample``,
``top_p``, ``top_k``, ``num_beams``; ``until``: the answer is cut before the first stop string
(generation itself stops at the LM's end of sequence). Requests with equal settings are batched.

loglikelihood (multiple-choice tasks): the same prompt, and the continuation scored after it with
mmgpt-eval's engine (:mod:`mmgpt_eval.engine`) with ``joint=True``: the continuation's tokens are
those that context + continuation have after the context's own tokens (lm-evaluation-harness's rule,
which lmms-eval keeps; its continuations start with the task's ``target_delimiter``, a space). The
value returned is what lmms-eval's own backends return and what its scoring expects: the LM loss of
the continuation, i.e. the MEAN NEGATIVE log-probability of its tokens (lower is better: lmms-eval's
multiple-choice ``acc`` takes the argmin; its base-class docstring still says "log probability"),
with whether every token is the argmax; as a :class:`LoglikelihoodResult` (a pair that survives
lmms-eval 0.7's response unwrapping). A doc's choices share one context: they are scored together,
the image encoded once.

Not supported: videos and audio (visuals must be images: PIL images or image file paths),
``generate_until_multi_round``, and several processes (lmms-eval's data parallelism).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms
from lmms_eval.models.registry_v2 import ModelManifest

from ..errors import UserError
from ..templates import IMAGE, TEMPLATES

log = logging.getLogger("mmgpt_eval")

MODEL_ID = "mmgpt"
PROMPT_MODES = ("mmgpt", "raw")
DEFAULT_MAX_NEW_TOKENS = 128
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class LoglikelihoodResult(GenerationResult):
    """A ``(loss, is_greedy)`` pair that lmms-eval's evaluator keeps as a pair.

    lmms-eval 0.7.1-0.7.3 pass every response, log-likelihoods included, through
    ``unwrap_generation_output``, which turns a plain ``(float, bool)`` tuple into its string, so
    multiple-choice scoring then fails ("too many values to unpack"; its own ``dummy`` model hits the
    same). A ``GenerationResult`` is unwrapped to its ``text`` as is: holding the pair there reaches the
    task intact. Direct callers can still unpack it: ``loss, greedy = result``."""

    def __init__(self, loss: float, is_greedy: bool):
        super().__init__(text=(float(loss), bool(is_greedy)), token_counts=None)  # type: ignore[arg-type]

    def __iter__(self):
        return iter(self.text)

    def __getitem__(self, i: int):
        return self.text[i]

    def __len__(self) -> int:
        return 2


def manifest() -> ModelManifest:
    """The entry point ``lmms_eval.models: mmgpt = mmgpt_eval.integrations.lmms_eval:manifest``."""
    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.MMGPT", aliases=("multimodal_gpt",))


def _flag(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def build_prompt(context: str, n_images: int, mode: str = "mmgpt") -> str:
    """lmms-eval's context + the number of visuals -> the prompt text (see the module docstring)."""
    if mode not in PROMPT_MODES:
        raise UserError(f"template={mode!r}: choose one of {', '.join(PROMPT_MODES)}")
    have = context.count(IMAGE)
    if mode == "raw":
        if have > n_images:
            raise UserError(f"the context has {have} {IMAGE} tokens but the doc has {n_images} images")
        return f"{IMAGE}\n" * (n_images - have) + context
    if have:
        if have != n_images:
            raise UserError(f"the context has {have} {IMAGE} tokens but the doc has {n_images} images")
        return TEMPLATES["mmgpt-text"].render(question=context)
    if n_images == 0:
        return TEMPLATES["mmgpt-text"].render(question=context)
    return TEMPLATES["mmgpt"].render(question=context).replace(IMAGE, IMAGE * n_images, 1)


def extract_answer(prompt: str, generated: str, mode: str) -> str:
    if mode == "mmgpt":
        return TEMPLATES["mmgpt"].extract(prompt + generated, generated)
    return generated


def cut_at_stop(text: str, until: Sequence[str] | None) -> str:
    """``text`` before the first occurrence of any stop string (empty strings ignored)."""
    cut = len(text)
    for s in until or []:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def settings_from(gen_kwargs: dict[str, Any] | None, default_max_new_tokens: int):
    """lmms-eval generation kwargs -> (GenerationSettings, stop strings)."""
    from ..generation_settings import GenerationSettings

    g = dict(gen_kwargs or {})
    until = g.pop("until", None)
    if isinstance(until, str):
        until = [until]
    elif until is not None and not isinstance(until, (list, tuple)):
        raise UserError(f"generation_kwargs until must be a string or a list, got {type(until).__name__}")
    explicit_sample = g.get("do_sample")
    temperature = g.get("temperature")
    temperature = float(temperature) if temperature is not None else (1.0 if _flag(explicit_sample) else 0.0)
    do_sample = _flag(explicit_sample) if explicit_sample is not None else temperature > 0
    if temperature <= 0:
        do_sample = False  # temperature 0 means greedy in lmms-eval's tasks
    top_p = g.get("top_p")
    s = GenerationSettings(
        max_new_tokens=int(g.get("max_new_tokens") or default_max_new_tokens),
        num_beams=int(g.get("num_beams") or 1),
        do_sample=do_sample,
        temperature=temperature if do_sample else 1.0,
        top_k=int(g.get("top_k") or 0),
        top_p=float(top_p) if top_p not in (None, 0) else 1.0,
    )
    return s.validate("lmms-eval generation_kwargs"), list(until or [])


class MMGPT(lmms):
    """lmms-eval model class backed by :func:`mmgpt_eval.load` and mmgpt-eval's request-answering engine."""

    is_simple = True

    def __init__(
        self,
        model: str | None = None,
        base: str | None = None,
        ckpt: str | None = None,
        template: str = "mmgpt",
        device: str | None = None,
        precision: str | None = None,
        batch_size: int | str | None = 8,
        max_batch_size: int | None = None,
        trust_checkpoint: bool = False,
        allow_partial: bool = False,
        lora_alpha: float | None = None,
        allow_nonfinite: bool = False,
        share_prefix: bool = True,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        progress: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from ..api import EMBEDDED_DEFAULT, LoadOptions, choose_base_model, load
        from ..engine import engine_for
        from ..progress import third_party_progress

        if kwargs:
            raise UserError(
                f"unknown model_args for --model {MODEL_ID}: {', '.join(sorted(kwargs))} (see "
                f"mmgpt_eval.integrations.lmms_eval)"
            )
        if model is not None and base is not None and str(model) != str(base):
            raise UserError("model_args: give the base model once (base= or model=)")
        if template not in PROMPT_MODES:
            raise UserError(f"model_args template={template!r}: choose one of {', '.join(PROMPT_MODES)}")
        spec = base if base is not None else model
        ckpt = None if ckpt in (None, "", "none", "None") else str(ckpt)
        opts = LoadOptions(
            device=str(device) if device else None,
            precision=precision,
            allow_partial=_flag(allow_partial),
            trust_checkpoint=_flag(trust_checkpoint),
            lora_alpha=None if lora_alpha is None else float(lora_alpha),
            allow_nonfinite=_flag(allow_nonfinite),
        )
        if spec is None and ckpt:
            spec = choose_base_model(ckpt, opts.trust_checkpoint).spec
        if spec is None:
            spec, ckpt = EMBEDDED_DEFAULT["model"], EMBEDDED_DEFAULT["ckpt"]
        with third_party_progress(_flag(progress)):
            self.loaded = load(str(spec) if isinstance(spec, (str, Path)) else spec, ckpt, opts)
        self.template = template
        bs = batch_size if batch_size is not None else 8
        self.batch_size = 0 if str(bs).startswith("auto") else int(bs)
        if max_batch_size:
            self.batch_size = min(self.batch_size or int(max_batch_size), int(max_batch_size))
        self.engine = engine_for(self.loaded, self.batch_size, share_prefix=_flag(share_prefix))
        self.default_max_new_tokens = int(max_new_tokens)
        log.info(
            "lmms-eval backend %s: %s%s on %s, template %s",
            MODEL_ID,
            self.loaded.spec.name,
            f" + {ckpt}" if ckpt else "",
            self.loaded.device,
            template,
        )

    # ------------------------------------------------------------------ helpers
    def _visuals(self, doc_to_visual: Any, task: str, split: str, doc_id: int) -> list[Any]:
        if doc_to_visual is None:
            return []
        vis = doc_to_visual(self.task_dict[task][split][doc_id])
        out = []
        for v in vis if isinstance(vis, (list, tuple)) else [vis]:
            if v is None:
                continue
            if isinstance(v, (str, Path)) and Path(v).suffix.lower() not in _IMAGE_SUFFIXES:
                raise UserError(f"--model {MODEL_ID} takes images only; task {task} gave {v!r} (video or audio?)")
            if not isinstance(v, (str, Path)) and not hasattr(v, "convert"):
                raise UserError(f"--model {MODEL_ID} takes images only; task {task} gave a {type(v).__name__}")
            out.append(v)
        return out

    @staticmethod
    def _keys(visuals: list[Any], task: str, split: str, doc_id: Any) -> list[str]:
        # stable within a run: a doc's images are encoded once for all its requests (choices, repeats)
        return [
            str(Path(v).resolve()) if isinstance(v, (str, Path)) else f"lmms:{task}:{split}:{doc_id}:{i}"
            for i, v in enumerate(visuals)
        ]

    # ------------------------------------------------------------------ lmms API
    def generate_until(self, requests: list[Instance]) -> list[str]:
        from ..engine import GenerationRequest

        asked, untils = [], []
        for req in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args[:6]
            settings, until = settings_from(gen_kwargs, self.default_max_new_tokens)
            visuals = self._visuals(doc_to_visual, task, split, doc_id)
            prompt = build_prompt(context, len(visuals), self.template)
            asked.append(GenerationRequest(prompt, visuals, self._keys(visuals, task, split, doc_id), settings))
            untils.append(until)
        out = []
        for req, q, until, g in zip(requests, asked, untils, self.engine.generate(asked)):
            answer = cut_at_stop(extract_answer(q.prompt, g.text, self.template), until)
            out.append(answer)
            self.cache_hook.add_partial("generate_until", req.args, answer)
        return out

    def loglikelihood(self, requests: list[Instance]) -> list[LoglikelihoodResult]:
        from ..engine import RankingRequest

        contexts: OrderedDict[tuple, RankingRequest] = OrderedDict()
        where: list[tuple[tuple, int]] = []
        for req in requests:
            args = req.args
            if len(args) >= 6:
                context, continuation, doc_to_visual, doc_id, task, split = args[:6]
                if callable(continuation):  # output_type loglikelihood: doc_to_target
                    continuation = continuation(self.task_dict[task][split][doc_id])
                visuals = self._visuals(doc_to_visual, task, split, doc_id)
                key = (task, split, doc_id, context)
            else:  # ("", choice): the unconditional scores acc_mutual_info asks for
                context, continuation = args[0], args[1]
                visuals, task, split, doc_id = [], "", "", None
                key = ("", "", None, context)
            continuation = str(continuation)
            if key not in contexts:
                contexts[key] = RankingRequest(
                    build_prompt(context, len(visuals), self.template),
                    [],
                    visuals,
                    self._keys(visuals, task, split, doc_id),
                    joint=True,
                )
            rq = contexts[key]
            if continuation not in rq.candidates:
                rq.candidates.append(continuation)
            where.append((key, rq.candidates.index(continuation)))
        keys = list(contexts)
        by_key = dict(zip(keys, self.engine.rank([contexts[k] for k in keys])))
        out = []
        for req, (key, j) in zip(requests, where):
            s = by_key[key][j]
            loss = -s.mean_logprob if math.isfinite(s.sum_logprob) else math.inf
            res = LoglikelihoodResult(loss, s.is_greedy)
            self.cache_hook.add_partial("loglikelihood", req.args, tuple(res))
            out.append(res)
        return out

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError(f"--model {MODEL_ID} does not implement generate_until_multi_round")
