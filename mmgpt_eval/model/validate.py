"""The one check every checkpoint passes before a model is built from it or it is described.

:func:`mmgpt_eval.model.checkpoint.read_checkpoint` calls :func:`validate_checkpoint` on everything it
reads, so ``run``, ``inspect``, ``predict``, checkpoint series and the baseline's OpenFlamingo
checkpoint all go through here; :func:`check_settings` runs again on the LoRA settings that are finally
injected (``--lora-alpha`` replaces the stored alpha after reading). Each refusal is a one-line
:class:`UserError` naming the file and the tensor or key:

* values: NaN/inf in a floating-point tensor (``--allow-nonfinite`` loads it with a loud warning); a
  stored LoRA rank that disagrees with the tensors' rank;
* LoRA settings: a rank ``r`` that is not an integer in ``[1, MAX_RANK]`` (also per module in
  ``rank_pattern``); an alpha that is not finite (also per module in ``alpha_pattern``);
* suspicious adapters (``--allow-suspicious-adapter`` loads them with a loud warning, recorded in the
  checkpoint's metadata in results): an adapter holding no LoRA tensors (it would evaluate the base model
  under the adapter's name); LoRA tensors of a non-floating dtype (an int or bool tensor is cast and
  scores as noise); an alpha <= 0 or a scaling ``alpha / r`` (``alpha / sqrt(r)`` with rsLoRA) outside
  ``[SCALING_MIN, SCALING_MAX]``.

The module needs nothing from the rest of the model package: it reads a checkpoint through the small
:class:`Checkpoint` / :class:`Settings` protocols that ``checkpoint.CheckpointInfo`` / ``LoraSettings``
satisfy, so the reader can call it without an import cycle.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol

import torch

from ..errors import UserError

log = logging.getLogger("mmgpt_eval")

# Bounds on the LoRA scaling (the factor PEFT multiplies B @ A @ x by). MultiModal-GPT uses 1 (r=16,
# alpha=16); published recipes stay within about 1/4 .. 16 (alpha = r/4 .. 2r; rsLoRA's alpha/sqrt(r)
# at r=256). The bounds leave two orders of magnitude of headroom on either side. Beyond 1e3 a unit-size
# adapter delta overflows fp16 activations (max 65504) within a few layers; below 1e-3 the delta is
# under bf16's resolution (2**-8) relative to unit-size weights, so the run is the base model under the
# adapter's name.
SCALING_MAX = 1e3
SCALING_MIN = 1e-3
# No layer is wider than this; a larger "rank" is a corrupt value (and would print as hundreds of digits).
MAX_RANK = 1 << 20

OVERRIDE_FLAG = "--allow-suspicious-adapter"
METADATA_KEY = "suspicious_adapter_accepted"  # what was accepted, in the checkpoint's metadata (results)

LORA_RE = re.compile(r"\.(lora_[AB]|lora_embedding_[AB]|lora_magnitude_vector)(?:\.[A-Za-z0-9_\-]+)?\.(weight)$")
PEFT_WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")

# set for the duration of one command / one load
_ALLOW_NONFINITE: contextvars.ContextVar[bool] = contextvars.ContextVar("mmgpt_eval_allow_nonfinite", default=False)
_ALLOW_SUSPICIOUS: contextvars.ContextVar[bool] = contextvars.ContextVar("mmgpt_eval_allow_suspicious", default=False)


@contextlib.contextmanager
def allow_nonfinite_tensors(allow: bool = True) -> Iterator[None]:
    """Within the block, checkpoints holding NaN/inf values load with a loud warning instead of an error."""
    token = _ALLOW_NONFINITE.set(bool(allow) or _ALLOW_NONFINITE.get())
    try:
        yield
    finally:
        _ALLOW_NONFINITE.reset(token)


@contextlib.contextmanager
def allow_suspicious_adapters(allow: bool = True) -> Iterator[None]:
    """Within the block, suspicious adapters (see the module docstring) load with a loud warning that
    names what was accepted, recorded under ``metadata["suspicious_adapter_accepted"]``."""
    token = _ALLOW_SUSPICIOUS.set(bool(allow) or _ALLOW_SUSPICIOUS.get())
    try:
        yield
    finally:
        _ALLOW_SUSPICIOUS.reset(token)


def suspicious_allowed() -> bool:
    return _ALLOW_SUSPICIOUS.get()


class Settings(Protocol):
    """What the checks read of LoRA settings (``checkpoint.LoraSettings``)."""

    @property
    def r(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @property
    def use_rslora(self) -> bool: ...
    @property
    def rank_pattern(self) -> dict[str, int]: ...
    @property
    def alpha_pattern(self) -> dict[str, float]: ...
    @property
    def source(self) -> str: ...


class Checkpoint(Protocol):
    """What the checks read of a checkpoint (``checkpoint.CheckpointInfo``)."""

    @property
    def path(self) -> str: ...
    @property
    def format(self) -> str: ...
    @property
    def tensors(self) -> dict[str, torch.Tensor]: ...
    @property
    def lora(self) -> Settings | None: ...
    @property
    def metadata(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Problem:
    """One finding: ``where`` (the file), ``message`` (names the tensor or key); ``suspicious``: may be
    accepted with --allow-suspicious-adapter (else always refused)."""

    where: str
    message: str
    suspicious: bool = False


def is_lora_key(key: str) -> bool:
    return bool(LORA_RE.search(key))


def short(value: Any) -> str:
    """``repr`` of a value, cut to one readable piece (a corrupt number may have hundreds of digits)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:24]}...({len(text)} characters)"


def weights_file(info: Checkpoint) -> str:
    """The file holding the tensors (a PEFT folder's weights file, else the checkpoint itself)."""
    name = info.metadata.get("weights_file")
    return str(Path(info.path) / name) if info.format == "peft" and name else info.path


def config_file(info: Checkpoint) -> str:
    """The file holding the LoRA settings: a PEFT folder's adapter_config.json, else the checkpoint."""
    return str(Path(info.path) / "adapter_config.json") if info.format == "peft" else info.path


def _key_names(info: Checkpoint | None) -> tuple[str, str]:
    """How the rank and alpha keys are spelled where the settings came from."""
    if info is not None and info.format == "peft":
        return "'r'", "'lora_alpha'"
    return "tuning_config 'lora_r'", "tuning_config 'lora_alpha'"


# ------------------------------------------------------------------------------------ LoRA settings
def scaling_of(alpha: float, r: int, rslora: bool) -> float:
    return alpha / (math.sqrt(r) if rslora else r)


def settings_problems(settings: Settings, where: str, info: Checkpoint | None = None) -> list[Problem]:
    """Rank, alpha and scaling of LoRA settings (and of each ``rank_pattern`` / ``alpha_pattern`` entry)."""
    if settings.source.startswith(("assumed:", "unknown:")):
        return []  # inferred from the tensors; a missing alpha is asked for when the adapter is attached
    r_key, a_key = _key_names(info)
    if settings.source.startswith("--lora-alpha"):
        a_key = "--lora-alpha"
    out: list[Problem] = []
    ranks: dict[str, int] = {"": settings.r, **settings.rank_pattern}
    for pat, r in ranks.items():
        name = f"'rank_pattern' entry {pat!r}" if pat else r_key
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_RANK:
            out.append(
                Problem(where, f"{name} (a LoRA rank) must be an integer >= 1 (at most {MAX_RANK}), got {short(r)}")
            )
    if out:
        return out  # the scaling needs a rank
    alphas: dict[str, float] = {"": settings.alpha, **settings.alpha_pattern}
    for pat, alpha in alphas.items():
        name = f"'alpha_pattern' entry {pat!r}" if pat else a_key
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
            out.append(Problem(where, f"{name} must be a finite number, got {short(alpha)}"))
            continue
        # the ranks this alpha is used with: an alpha_pattern entry's modules have the rank_pattern entry of
        # the same key (else r); the global alpha goes with r and the rank_pattern entries it applies to
        if pat:
            with_ranks = [settings.rank_pattern.get(pat, settings.r)]
        else:
            with_ranks = [settings.r] + [r for k, r in settings.rank_pattern.items() if k not in settings.alpha_pattern]
        if alpha <= 0:
            out.append(
                Problem(
                    where,
                    f"{name} = {alpha:g}: a LoRA alpha <= 0 "
                    f"{'switches the adapter off' if alpha == 0 else 'inverts the adapter'}",
                    suspicious=True,
                )
            )
            continue
        scalings = [(r, scaling_of(float(alpha), r, settings.use_rslora)) for r in with_ranks]
        outside = [(r, s) for r, s in scalings if not SCALING_MIN <= s <= SCALING_MAX]
        if outside:
            r, s = outside[0]
            out.append(
                Problem(
                    where,
                    f"{name} = {alpha:g} with rank {r} gives a LoRA scaling of {s:.3g}, outside "
                    f"[{SCALING_MIN:g}, {SCALING_MAX:g}] (MultiModal-GPT uses 1)",
                    suspicious=True,
                )
            )
    return out


# ------------------------------------------------------------------------------------ tensors
def nonfinite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[tuple[str, int]]:
    """``(key, count)`` of the floating-point tensors holding NaN or inf values."""
    bad = []
    for k, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            n = int((~torch.isfinite(t)).sum())
            if n:
                bad.append((k, n))
    return bad


def check_finite(info: Checkpoint, weights: str | Path | None = None) -> None:
    """Refuse a checkpoint whose tensors hold NaN/inf (one-line UserError naming the tensor and the
    file), unless --allow-nonfinite is in effect (then a loud warning, recorded in the metadata)."""
    bad = nonfinite_tensors(info.tensors)
    if not bad:
        return
    where = weights or info.path
    k, n = bad[0]
    more = f" (and {len(bad) - 1} more tensors)" if len(bad) > 1 else ""
    if not _ALLOW_NONFINITE.get():
        raise UserError(
            f"tensor {k} holds {n} NaN/inf value(s){more}; the checkpoint is corrupt or diverged. "
            f"Pass --allow-nonfinite to load it anyway (not recommended)",
            where,
        )
    log.warning(
        "NON-FINITE WEIGHTS ALLOWED (--allow-nonfinite): %s: tensor %s holds %d NaN/inf value(s)%s; "
        "outputs are likely garbage",
        where,
        k,
        n,
        more,
    )
    info.metadata["nonfinite_tensors"] = [key for key, _ in bad[:20]]


def check_lora_rank(info: Checkpoint) -> None:
    """A stored LoRA rank must agree with the tensors' rank (lora_A rows), per module where the
    settings carry a rank_pattern; a disagreement is a one-line error naming both."""
    if info.lora is None or not info.lora.r or info.lora.source.startswith(("assumed:", "unknown:")):
        return  # settings inferred from the tensors themselves
    pattern = info.lora.rank_pattern
    for k, t in info.tensors.items():
        if not (".lora_A" in k and t.ndim == 2):
            continue
        r_t = int(t.shape[0])
        mod = re.sub(r"\.lora_A(\.[^.]+)?\.weight$", "", k)
        want = info.lora.r
        for pat, val in pattern.items():
            if re.match(rf"(.*\.)?({pat})$", mod):
                want = int(val)
                break
        if r_t != want:
            raise UserError(
                f"LoRA rank mismatch: the settings ({info.lora.source or 'stored config'}) say r={want} "
                f"but tensor {k} has rank {r_t}",
                info.path,
            )


def adapter_tensor_problems(info: Checkpoint) -> list[Problem]:
    """An adapter without LoRA tensors; LoRA tensors that are not floating point."""
    where = weights_file(info)
    lora = [k for k in info.tensors if is_lora_key(k)]
    if not lora and (info.format == "peft" or info.lora is not None or not info.tensors):
        if info.tensors:
            first = sorted(info.tensors)[0]
            held = (
                f"its {len(info.tensors)} tensors (e.g. {first}) match no LoRA name (...lora_A.weight / lora_B.weight)"
            )
        else:
            held = "it holds no tensors"
        return [
            Problem(
                where,
                f"the adapter holds no LoRA tensors: {held}; evaluating it would evaluate the base model "
                f"under the adapter's name",
                suspicious=True,
            )
        ]
    bad = [k for k in lora if not info.tensors[k].is_floating_point()]
    if not bad:
        return []
    t = info.tensors[bad[0]]
    more = f" (and {len(bad) - 1} more LoRA tensors)" if len(bad) > 1 else ""
    return [
        Problem(
            where,
            f"LoRA tensor {bad[0]} has dtype {_dtype(t)}{more}; LoRA weights are floating point (a cast "
            f"{'complex' if t.is_complex() else 'integer/bool'} tensor scores as noise)",
            suspicious=True,
        )
    ]


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


# ------------------------------------------------------------------------------------ the validator
def settle(problems: list[Problem], info: Checkpoint | None = None) -> None:
    """Raise the first problem that is refused; accept the suspicious ones under the override with a
    loud warning each, recorded in ``info.metadata`` (results' provenance)."""
    hard = [p for p in problems if not p.suspicious]
    soft = [p for p in problems if p.suspicious]
    if hard:
        raise UserError(hard[0].message, hard[0].where)
    if not soft:
        return
    if not _ALLOW_SUSPICIOUS.get():
        p = soft[0]
        more = f" (and {len(soft) - 1} more problems)" if len(soft) > 1 else ""
        raise UserError(f"{p.message}{more}. Pass {OVERRIDE_FLAG} to evaluate it anyway (not recommended)", p.where)
    for p in soft:
        log.warning("SUSPICIOUS ADAPTER ACCEPTED (%s): %s: %s", OVERRIDE_FLAG, p.where, p.message)
    if info is not None:
        accepted = info.metadata.setdefault(METADATA_KEY, [])
        for p in soft:
            if p.message not in accepted:
                accepted.append(p.message)


def check_settings(settings: Settings, info: Checkpoint) -> None:
    """The LoRA settings about to be injected (the stored ones, or with ``--lora-alpha``'s alpha)."""
    where = info.path if settings.source.startswith("--lora-alpha") else config_file(info)
    settle(settings_problems(settings, where, info), info)


def validate_checkpoint(info: Checkpoint, *, values: bool = True) -> None:
    """Every check of the module docstring on a checkpoint just read. ``values=False`` (``inspect``):
    NaN/inf values and rank mismatches are described by the caller instead of refused."""
    problems: list[Problem] = []
    if info.lora is not None:
        problems += settings_problems(info.lora, config_file(info), info)
    settle([p for p in problems if not p.suspicious])  # malformed settings first
    if values:
        check_finite(info, weights_file(info) if info.format == "peft" else None)
        check_lora_rank(info)
    if info.format in ("mmgpt-trainer", "mmgpt-weights", "mmgpt-raw", "peft"):
        problems += adapter_tensor_problems(info)
    settle(problems, info)


def check_casts(casts: list[tuple[str, torch.Tensor, torch.Tensor]], where: str) -> str | None:
    """``(key, tensor, parameter)`` of non-floating tensors about to be cast into floating-point
    parameters (any tensor of any format: the adapter checks above see only LoRA tensors before a
    model exists): refused, one line naming the first, unless --allow-suspicious-adapter; then the note
    for the load report."""
    if not casts:
        return None
    key, tensor, target = casts[0]
    more = f" (and {len(casts) - 1} more tensors)" if len(casts) > 1 else ""
    msg = f"tensor {key} has dtype {_dtype(tensor)} but the model's parameter is {_dtype(target)}{more}"
    settle([Problem(where, f"{msg}; a cast non-floating tensor scores as noise", suspicious=True)])
    return f"{msg}: cast ({OVERRIDE_FLAG})"
