"""Evaluation protocols as strategy objects (``--protocol``). A protocol decides, for every task of a
run: the template, the evaluated subset, the few-shot pool and demo selection, the post-processing a
task declares for it, what the fingerprint and results record beyond the settings, the notes that
describe the run, and which combinations of settings it refuses.

One file per protocol in this package (``native``: mmgpt-eval's own; ``openflamingo``: OpenFlamingo's
evaluate.py); each defines a :class:`~mmgpt_eval.protocols.base.Protocol` subclass with a ``name``.
A new protocol is one more file here: the registry finds every module of the package.
"""

from __future__ import annotations

import importlib
import pkgutil

from ..errors import UserError
from .base import Protocol

_REGISTRY: dict[str, type[Protocol]] = {}


def _load() -> dict[str, type[Protocol]]:
    if not _REGISTRY:
        for mod in pkgutil.iter_modules(__path__):
            if mod.name != "base" and not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        found: dict[str, type[Protocol]] = {}
        for cls in _subclasses(Protocol):
            if cls.name:
                if cls.name in found and found[cls.name] is not cls:
                    raise RuntimeError(f"two protocols are called {cls.name!r}")
                found[cls.name] = cls
        # mmgpt-eval's own first (the default), then by name
        _REGISTRY.update(sorted(found.items(), key=lambda kv: (kv[0] != "mmgpt-eval", kv[0])))
    return _REGISTRY


def _subclasses(cls: type[Protocol]) -> list[type[Protocol]]:
    out: list[type[Protocol]] = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def names() -> tuple[str, ...]:
    """Every protocol's name (``--protocol``'s choices)."""
    return tuple(_load())


def get(name: str) -> Protocol:
    """The protocol called ``name``."""
    protocols = _load()
    if name not in protocols:
        raise UserError(f"unknown protocol {name!r}; known: {', '.join(protocols)}")
    return protocols[name]()


__all__ = ["Protocol", "get", "names"]
