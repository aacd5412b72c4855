"""Small I/O helpers: atomic writes and strict JSON/JSONL/TOML readers with file:line errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so readers
    never see a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if "b" in mode:
            f = os.fdopen(fd, mode)
        else:
            f = os.fdopen(fd, mode, encoding=encoding)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_writer(path, "wb", encoding=None) as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing or malformed file is a UserError naming file and position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except IsADirectoryError:
        raise UserError("is a directory, expected a JSON file", path) from None
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text ({e.reason} at byte {e.start})", path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    with f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"malformed JSON line (column {e.colno}: {e.msg})", path, lineno) from None


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"malformed TOML: {e}", path) from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def is_id(value: Any) -> bool:
    """A JSON id: an integer or a string (not a bool)."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def prediction_records(data: Any, path: Any, id_key: str, text_key: str) -> Iterator[tuple[int, Any, str]]:
    """``(index, id, text)`` of a predictions file in the official results format
    (``[{id_key, text_key}]``); anything else is a one-line :class:`UserError` naming the entry."""
    if not isinstance(data, list):
        raise UserError(f"predictions must be a list of {{\"{id_key}\", \"{text_key}\"}} objects, "
                        f"got {type(data).__name__}", path)
    for i, p in enumerate(data):
        if not isinstance(p, dict):
            raise UserError(f"predictions entry {i} is not an object", path)
        for key in (id_key, text_key):
            if key not in p:
                raise UserError(f"predictions entry {i} has no {key!r} key", path)
        pid = p[id_key]
        if not is_id(pid):
            raise UserError(f"predictions entry {i}: {id_key!r} must be an integer or string, got {pid!r}", path)
        if not isinstance(p[text_key], str):
            raise UserError(f"predictions entry {i} ({id_key} {pid}): {text_key!r} must be a string, "
                            f"got {type(p[text_key]).__name__}", path)
        yield i, pid, p[text_key]
