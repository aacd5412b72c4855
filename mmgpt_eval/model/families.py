"""The model-family registry, keyed by a model spec's ``family``.

A family says how to load a spec (+ checkpoint) into its loaded-model object and how to put that
object behind the seam (:class:`~mmgpt_eval.model.seam.EvalModel`) the engine talks to. Both are
named as ``"module:function"`` and imported when first used, so the registry costs nothing to import
and a family's heavy dependencies load only when a spec asks for it.

    register_family(Family("my-family", load="my_pkg.load:load", seam="my_pkg.seam:wrap"))

``load(spec, ckpt, *, allow_partial, trust_checkpoint, lora_alpha, device)`` returns an object with
at least ``spec``, ``device``, ``dtype``, ``checkpoint``, ``base_checkpoint_sha256``, ``load_seconds``
and ``provenance()`` (what the runner records); ``seam(loaded, *, share_prefix)`` returns the
:class:`EvalModel`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    load: str  # "module:function": (spec, ckpt, **options) -> loaded model
    seam: str  # "module:function": (loaded, **options) -> EvalModel

    def loader(self) -> Callable[..., Any]:
        return _resolve(self.load)

    def wrapper(self) -> Callable[..., Any]:
        return _resolve(self.seam)


def _resolve(ref: str) -> Callable[..., Any]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> None:
    if family.name in _FAMILIES and _FAMILIES[family.name] != family:
        raise ValueError(f"model family {family.name!r} is already registered")
    _FAMILIES[family.name] = family


def family_names() -> list[str]:
    return list(_FAMILIES)


def get_family(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown model family {name!r}; known families: {', '.join(_FAMILIES)}") from None


def family_of(loaded: Any) -> Family:
    return get_family(getattr(loaded.spec, "family", "flamingo"))


def eval_model(loaded: Any, *, share_prefix: bool = True) -> Any:
    """The loaded model behind the seam of its family (an :class:`~mmgpt_eval.model.seam.EvalModel`)."""
    return family_of(loaded).wrapper()(loaded, share_prefix=share_prefix)


register_family(
    Family(
        "flamingo",
        "OpenFlamingo / MultiModal-GPT: interleaved images and text (open-flamingo's Flamingo)",
        load="mmgpt_eval.model.build:load_flamingo",
        seam="mmgpt_eval.model.flamingo.family:FlamingoModel",
    )
)
register_family(
    Family(
        "causal-lm",
        "a text-only Hugging Face causal language model (any local folder)",
        load="mmgpt_eval.model.causal_lm:load_causal_lm",
        seam="mmgpt_eval.model.causal_lm:CausalLMModel",
    )
)
