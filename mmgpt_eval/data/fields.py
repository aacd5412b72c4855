"""Checked fields of data-file entries: a value of the wrong type (a question that is an object, an
answer that is a number, an id that is a list) is refused in one line naming the file and the entry,
instead of being rendered into a prompt as Python text or crashing a reader."""

from __future__ import annotations

import os
from typing import Any

from ..errors import UserError
from ..io import is_id


def kind(value: Any) -> str:
    """What a JSON value is, in words ("an object", "a list", "a float"...)."""
    names = {dict: "an object", list: "a list", bool: "a boolean", type(None): "null", int: "an integer"}
    return names.get(type(value), {float: "a number", str: "a string"}.get(type(value), type(value).__name__))


def text(value: Any, what: str, path: str | os.PathLike, where: str, line: int | None = None) -> str:
    """``value`` when it is a string."""
    if not isinstance(value, str):
        raise UserError(f"{where}: {what!r} must be a string, got {kind(value)}", path, line)
    return value


def ident(value: Any, what: str, path: str | os.PathLike, where: str, line: int | None = None) -> int | str:
    """``value`` when it is an id: an integer or a string."""
    if not is_id(value):
        raise UserError(f"{where}: {what!r} must be an integer or a string, got {kind(value)}", path, line)
    return value


def texts(value: Any, what: str, path: str | os.PathLike, where: str, line: int | None = None) -> list[str]:
    """``value`` when it is a list of strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        bad = next((v for v in value if not isinstance(v, str)), None) if isinstance(value, list) else value
        raise UserError(f"{where}: {what!r} must be a list of strings, found {kind(bad)}", path, line)
    return value
