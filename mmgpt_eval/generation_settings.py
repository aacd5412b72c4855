"""How to decode: one dataclass, importable without torch (tasks and templates carry defaults)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

# Each field's type and range, declared once: (type, test, what the test requires). Used by
# GenerationSettings.validate and by the command line's argparse types (cli/common.py).
_RULES: dict[str, tuple[type, Callable[[Any], bool], str]] = {
    "max_new_tokens": (int, lambda v: v >= 1, "an integer >= 1"),
    "num_beams": (int, lambda v: v >= 1, "an integer >= 1"),
    "do_sample": (bool, lambda v: True, "true or false"),
    "temperature": (float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0 (> 0 when sampling)"),
    "top_k": (int, lambda v: v >= 0, "an integer >= 0 (0: no top-k filter)"),
    "top_p": (float, lambda v: 0 < v <= 1, "a number with 0 < top_p <= 1"),
    "length_penalty": (float, lambda v: math.isfinite(v), "a finite number"),
    "min_new_tokens": (int, lambda v: v >= 0, "an integer >= 0"),
    "no_repeat_ngram_size": (int, lambda v: v >= 0, "an integer >= 0"),
    "use_cache": (bool, lambda v: True, "true or false"),
    "seed": (int, lambda v: True, "an integer"),
}


def check_value(name: str, value: Any) -> Any:
    """``value`` converted to field ``name``'s type (ints accepted for floats); ``ValueError`` with a
    message saying what the field requires when it is of the wrong type or out of range."""
    typ, ok, what = _RULES[name]
    if isinstance(value, str):
        try:
            if typ is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                value = value.lower() in ("true", "1")
            else:
                value = typ(value)
        except ValueError:
            raise ValueError(f"{name} must be {what}, got {value!r}") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    if not ok(value):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


@dataclass
class GenerationSettings:
    max_new_tokens: int = 32
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    length_penalty: float = 1.0
    min_new_tokens: int = 0
    no_repeat_ngram_size: int = 0
    use_cache: bool = True
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self, where: str = "generation settings") -> "GenerationSettings":
        """Raise a one-line :class:`~mmgpt_eval.errors.UserError` naming ``where`` and the field when a
        value has the wrong type or is out of range; returns ``self`` (values normalised, e.g. int -> float)."""
        from .errors import UserError

        for name in _RULES:
            try:
                setattr(self, name, check_value(name, getattr(self, name)))
            except ValueError as e:
                raise UserError(str(e), where) from None
        if self.do_sample and self.temperature <= 0:
            raise UserError(f"temperature must be > 0 when sampling (do_sample), got {self.temperature!r}", where)
        if self.min_new_tokens > self.max_new_tokens:
            raise UserError(
                f"min_new_tokens ({self.min_new_tokens}) exceeds max_new_tokens ({self.max_new_tokens})", where
            )
        return self

    def hf_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "num_beams": self.num_beams,
            "do_sample": self.do_sample,
            "length_penalty": self.length_penalty,
            "use_cache": self.use_cache,
        }
        if self.min_new_tokens:
            kw["min_new_tokens"] = self.min_new_tokens
        if self.no_repeat_ngram_size:
            kw["no_repeat_ngram_size"] = self.no_repeat_ngram_size
        if self.do_sample:
            kw.update(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k or 0)
        return kw
