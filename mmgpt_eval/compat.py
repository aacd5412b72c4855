"""Every library-version shim of mmgpt-eval lives here, and only here.

Each shim is a subclass or a function applied to an object we own -- no global monkeypatching --
and each has a test in tests/test_compat.py that fails without it.

Tested stack: torch 2.14.1, transformers 5.24.0, peft 0.21.2, open_clip_torch 3.3.0,
open-flamingo 2.0.1 (installed with --no-deps).

1. ``CompatFlamingoLMMixin``: open-flamingo 2.0.1's ``FlamingoLMMixin.forward(input_ids,
   attention_mask, **kw)`` requires ``attention_mask``; transformers >= 5 ``generate()`` drops an
   all-ones mask (batch size 1, or equal-length prompts) and then fails with
   ``forward() missing 1 required positional argument: 'attention_mask'``.
2. ``lm_cache_kwarg``: open-flamingo passes ``past_key_values=`` to the LM; transformers 5 renamed it
   ``cache=`` (a deprecation warning today, removal announced for 5.40). We pass whichever name the
   LM's forward accepts.
3. ``configure_llama_tokenizer``: under transformers 5, when tokenizer.json exists, ``add_bos_token``
   from tokenizer_config.json is ignored, and the ``add_eos_token`` setter rebuilds the
   post-processor with ``add_bos_token`` defaulting to False -- so MultiModal-GPT's
   ``tokenizer.add_eos_token = False`` silently removes BOS. We set ``add_bos_token`` first.
4. ``lora_config``: MultiModal-GPT builds ``LoraConfig(task_type="VL")``, which peft >= 0.14 rejects
   (``Invalid task type``). Old peft mapped the unknown type to the plain PeftModel, exactly what
   ``task_type=None`` gives; we drop unknown task types.
5. ``configure_open_clip_visual``: open_clip <= 2.22 (what OpenFlamingo v1/v2 and MultiModal-GPT were
   trained with, 2023) returned ViT patch tokens *without* ``ln_post``; open_clip >= 2.23 applies
   ``ln_post`` to the tokens unless ``final_ln_after_pool`` is set. QuickGELU for ViT-L-14/openai is
   forced at build time (open_clip 3.x builds it with plain GELU) via ``force_quick_gelu``.
6. ``output_cache``: the KV cache a forward returns is ``output.cache`` in transformers >= 5 and
   ``output.past_key_values`` before (the same rename as shim 2, on the output side).
7. ``cache_select``: a new KV cache holding some batch rows of another (ranking runs many candidate
   rows against one context's cache). transformers >= 4.56 caches are objects whose layers hold
   ``keys``/``values`` tensors and whose own ``batch_select_indices`` works in place (a forward also
   extends a cache in place, so a shared context cache must never be passed on directly); older
   ones are tuples of (key, value) per layer.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from typing import Any

from .errors import OPEN_FLAMINGO_INSTALL as OPEN_FLAMINGO_INSTALL
from .errors import missing_package_error


@contextlib.contextmanager
def _without_optional_wandb():
    """open_flamingo imports open_clip, which imports timm, whose ``timm.utils.summary`` imports wandb
    when it is installed (for timm's own training logs, which nothing here uses): about 3 s of CPU on
    every command that loads a model. While open_flamingo is first imported, ``import wandb`` fails as
    if it were absent (timm catches that); afterwards wandb imports as usual (``--log-to wandb``)."""
    if "wandb" in sys.modules:
        yield
        return
    sys.modules["wandb"] = None  # type: ignore[assignment]  # makes `import wandb` raise ImportError
    try:
        yield
    finally:
        if sys.modules.get("wandb", 0) is None:
            del sys.modules["wandb"]


try:  # the first import of open_flamingo on every path that builds or runs a model
    with _without_optional_wandb():
        from open_flamingo.src.flamingo_lm import FlamingoLMMixin
except ModuleNotFoundError as _err:
    _user = missing_package_error(_err)
    if _user is None:
        raise
    raise _user from None


class CompatFlamingoLMMixin(FlamingoLMMixin):
    """FlamingoLMMixin whose forward accepts a missing attention mask (shim 1)."""

    def forward(self, input_ids=None, attention_mask=None, **kwargs):  # noqa: D401
        return FlamingoLMMixin.forward(self, input_ids, attention_mask, **kwargs)


def lm_forward(lm, **kwargs):
    """Call the *underlying* causal LM's forward, skipping every Flamingo mixin in the MRO."""
    return super(FlamingoLMMixin, lm).forward(**kwargs)


_CACHE_KWARG: dict[type, str] = {}


def lm_cache_kwarg(lm) -> str:
    """Name of the KV-cache argument of the LM's own forward: ``cache`` (transformers >= 5) or
    ``past_key_values`` (older) (shim 2)."""
    cls = type(lm)
    name = _CACHE_KWARG.get(cls)
    if name is None:
        fwd = super(FlamingoLMMixin, lm).forward if isinstance(lm, FlamingoLMMixin) else lm.forward
        params = inspect.signature(fwd).parameters
        name = "cache" if "cache" in params else "past_key_values"
        _CACHE_KWARG[cls] = name
    return name


def output_cache(output) -> Any:
    """The KV cache returned by a causal-LM forward with ``use_cache=True`` (shim 6)."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def cache_select(cache, index) -> Any:
    """A new cache with rows ``index`` (a LongTensor) of ``cache``; ``cache`` is left unchanged (shim 7)."""
    import copy

    if isinstance(cache, tuple):
        return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)
    new = copy.copy(cache)
    new.layers = []
    for layer in cache.layers:
        sel = copy.copy(layer)
        if getattr(layer, "keys", None) is not None and layer.keys.numel():
            sel.keys = layer.keys.index_select(0, index)
            sel.values = layer.values.index_select(0, index)
        new.layers.append(sel)
    return new


def configure_llama_tokenizer(tokenizer, add_bos: bool = True, add_eos: bool = False):
    """Set BOS/EOS insertion the way the 2023 LlamaTokenizer behaved (shim 3).

    ``add_bos_token`` must be assigned before ``add_eos_token``: under transformers 5 the latter's
    setter rebuilds the post-processor from the current ``add_bos_token``.
    """
    if hasattr(tokenizer, "add_bos_token"):
        tokenizer.add_bos_token = add_bos
    if hasattr(tokenizer, "add_eos_token"):
        tokenizer.add_eos_token = add_eos
    return tokenizer


_PEFT_FIELDS: set[str] | None = None


def lora_config(**kwargs: Any):
    """Build a ``peft.LoraConfig`` from settings written by any peft/MultiModal-GPT version (shim 4).

    Unknown task types (MultiModal-GPT's ``"VL"``) are dropped; fields this peft does not know are
    dropped too (older/newer adapter_config.json files carry extra bookkeeping keys).
    """
    import dataclasses

    from peft import LoraConfig
    from peft.utils import TaskType

    global _PEFT_FIELDS
    if _PEFT_FIELDS is None:
        _PEFT_FIELDS = {f.name for f in dataclasses.fields(LoraConfig)}
    task_type = kwargs.pop("task_type", None)
    valid_types = {t.value for t in TaskType}
    if task_type is not None and str(task_type) not in valid_types:
        task_type = None
    clean = {k: v for k, v in kwargs.items() if k in _PEFT_FIELDS}
    if task_type is not None:
        clean["task_type"] = task_type
    return LoraConfig(**clean)


def configure_open_clip_visual(visual, tokens_ln_post: bool) -> None:
    """Make ``visual(x)`` return ``(pooled, patch_tokens)`` with the requested token semantics
    (shim 5). ``tokens_ln_post=False`` reproduces open_clip <= 2.22 (2023)."""
    visual.output_tokens = True
    if hasattr(visual, "final_ln_after_pool"):
        # open_clip >= 2.23: final_ln_after_pool=True -> ln_post on the pooled output only.
        visual.final_ln_after_pool = not tokens_ln_post
    elif tokens_ln_post:  # pragma: no cover - open_clip <= 2.22 cannot do this
        raise RuntimeError("this open_clip version cannot apply ln_post to the patch tokens")
