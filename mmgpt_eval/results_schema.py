"""The types of a results file's fields (``results.json``, schema ``mmgpt-eval/results``), checked before
anything reads them: a field of the wrong type is a one-line :class:`UserError` naming the file and the
field (``tasks.easyvqa.n_samples: expected an integer, got "ten"``), never a traceback further on.

Checked: every field of the top level, of each task (:class:`mmgpt_eval.results.TaskResult`) and of each
``metric_info`` entry; the fields of ``run``, ``model``, ``model.checkpoint`` and ``baseline`` that the
readers (compare, report, gate, export, trackers, published numbers) use. Other keys of the free-form
sections (``run``'s settings, ``provenance``, ``breakdown``, ``timing``) are kept as written; only their
section must be an object. A field may be absent where the writer leaves it out (those with a default).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

from .errors import UserError

#: metric kinds (:mod:`mmgpt_eval.stats`); ``corpus-only`` has no per-sample values
METRIC_KINDS = ("binary", "continuous", "corpus", "corpus-only")

Check = Callable[[Any], bool]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _count(v: Any) -> bool:
    return _int(v) and v >= 0


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _num(v) and math.isfinite(v)


def _opt(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _is(t: type) -> Check:
    return lambda v: isinstance(v, t)


_str, _bool, _dict, _list = _is(str), _is(bool), _is(dict), _is(list)

# what a check expects, said in the error message
_WORDS: dict[Any, str] = {}


def _say(check: Check, words: str) -> Check:
    _WORDS[check] = words
    return check


STR = _say(_str, "a string")
OPT_STR = _say(_opt(_str), "a string or null")
BOOL = _say(_bool, "true or false")
INT = _say(_int, "an integer")
COUNT = _say(_count, "an integer >= 0")
OPT_COUNT = _say(_opt(_count), "an integer >= 0 or null")
OPT_NUMBER = _say(_opt(_num), "a number or null")
SCALE = _say(lambda v: _finite(v) and v > 0, "a finite number > 0")
DICT = _say(_dict, "an object")
OPT_DICT = _say(_opt(_dict), "an object or null")
LIST = _say(_list, "an array")
OPT_LIST = _say(_opt(_list), "an array or null")
STR_LIST = _say(lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "an array of strings")
KIND = _say(lambda v: v in METRIC_KINDS, f"one of {', '.join(METRIC_KINDS)}")

# field -> (check, required)
TOP: dict[str, tuple[Check, bool]] = {
    "schema": (STR, True),
    "schema_version": (INT, True),
    "created": (STR, False),
    "run": (DICT, True),
    "model": (DICT, True),
    "tasks": (DICT, True),
    "provenance": (DICT, True),
    "baseline": (OPT_DICT, False),
}
TASK: dict[str, tuple[Check, bool]] = {
    "task": (STR, True),
    "version": (STR, True),
    "metrics": (DICT, True),
    "metric_info": (DICT, True),
    "primary_metric": (STR, True),
    "n_samples": (COUNT, True),
    "n_available": (COUNT, True),
    "limit": (OPT_COUNT, True),
    "subset": (STR, True),
    "template": (DICT, True),
    "generation": (DICT, True),
    "num_fewshot": (COUNT, False),
    "fewshot_mode": (OPT_STR, False),
    "options": (DICT, False),
    "breakdown": (DICT, False),
    "notes": (STR_LIST, False),
    "timing": (DICT, False),
    "samples_file": (STR, False),
    "fingerprint": (STR, False),
}
METRIC_INFO: dict[str, tuple[Check, bool]] = {
    "kind": (KIND, True),
    "higher_is_better": (BOOL, False),
    "scale": (SCALE, False),
    "unit": (STR, False),
    "per_sample": (OPT_STR, False),
    "description": (STR, False),
}
TEMPLATE: dict[str, tuple[Check, bool]] = {"name": (STR, False), "sha256": (STR, False)}
RUN: dict[str, tuple[Check, bool]] = {
    "label": (OPT_STR, False),
    "argv": (OPT_LIST, False),
    "output_dir": (OPT_STR, False),
}
MODEL: dict[str, tuple[Check, bool]] = {"checkpoint": (OPT_DICT, False)}
CHECKPOINT: dict[str, tuple[Check, bool]] = {
    "path": (OPT_STR, False),
    "format": (OPT_STR, False),
    "metadata": (OPT_DICT, False),
}
BASELINE: dict[str, tuple[Check, bool]] = {
    "results": (STR, True),
    "comparisons": (LIST, False),
}


def _show(v: Any) -> str:
    """A value as a message shows it: JSON-like, cut short."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif v is None:
        text = "null"
    elif isinstance(v, str):
        text = '"' + v + '"'
    elif isinstance(v, dict):
        text = "an object"
    elif isinstance(v, list):
        text = "an array"
    else:
        text = repr(v)
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def _key(k: str) -> str:
    """A key as a field path shows it (quoted when it holds a dot or space)."""
    k = " ".join(str(k).split())
    k = k if len(k) <= 40 else k[:37] + "..."
    return k if k and not any(c in k for c in ". ") else repr(k)


def _fields(d: Mapping[str, Any], spec: dict[str, tuple[Check, bool]], at: str, where: Any) -> None:
    for name, (check, required) in spec.items():
        if name not in d:
            if required:
                raise UserError(f"{at}{name}: missing (a required field of the results file)", where)
            continue
        if not check(d[name]):
            raise UserError(f"{at}{name}: expected {_WORDS[check]}, got {_show(d[name])}", where)


def check_results_dict(d: Mapping[str, Any], where: Any) -> None:
    """Every field of a results file's parsed JSON ``d`` has its type (see the module docstring); a
    one-line UserError naming ``where`` (the file) and the field otherwise."""
    _fields(d, TOP, "", where)
    _fields(d["run"], RUN, "run.", where)
    _fields(d["model"], MODEL, "model.", where)
    if isinstance(d["model"].get("checkpoint"), dict):
        _fields(d["model"]["checkpoint"], CHECKPOINT, "model.checkpoint.", where)
    if isinstance(d.get("baseline"), dict):
        _fields(d["baseline"], BASELINE, "baseline.", where)
    for name, t in d["tasks"].items():
        at = f"tasks.{_key(name)}."
        if not isinstance(t, dict):
            raise UserError(f"{at[:-1]}: expected an object, got {_show(t)}", where)
        _fields(t, TASK, at, where)
        _fields(t["template"], TEMPLATE, at + "template.", where)
        for metric, v in t["metrics"].items():
            if not OPT_NUMBER(v):
                raise UserError(f"{at}metrics.{_key(metric)}: expected {_WORDS[OPT_NUMBER]}, got {_show(v)}", where)
        for metric, info in t["metric_info"].items():
            mi = f"{at}metric_info.{_key(metric)}"
            if not isinstance(info, dict):
                raise UserError(f"{mi}: expected an object, got {_show(info)}", where)
            _fields(info, METRIC_INFO, mi + ".", where)
