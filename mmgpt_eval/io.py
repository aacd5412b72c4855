"""Small I/O helpers: atomic writes and strict JSON/JSONL/TOML readers with file:line errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore


# atomic_writer's temporary files: ".<target name>.<8 random characters>.tmp" beside the target
# (tempfile.mkstemp with this prefix and suffix); a process killed mid-write leaves one behind.
ATOMIC_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def is_atomic_temp(name: str) -> bool:
    """Is ``name`` (a file name) a temporary file of :func:`atomic_writer`?"""
    return ATOMIC_TEMP.match(name) is not None


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


def _no_file_above(p: Path, path: Any, what: str, verb: str) -> Path:
    """The nearest existing ancestor of ``p`` must be a directory (else nothing can be made below it)."""
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot {verb} the {what}: {parent} is a file, not a directory", path)
            break
    return p


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Check, before any work is done, that ``path`` can be written as a file: it must not be an
    existing directory, and no existing parent component may be a file. One-line UserError otherwise."""
    p = Path(path).expanduser()
    if str(path) == "" or p.is_dir():
        raise UserError(f"{what} is a directory, expected a file path", path)
    return _no_file_above(p, path, what, "write")


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` can be used as an output folder: not an existing file (nor below one)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise UserError(f"{what} exists and is not a directory", path)
    return _no_file_above(p, path, what, "create")


def _read_text(path: Path, what: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except IsADirectoryError:
        raise UserError(f"is a directory, expected a {what} file", path) from None
    except PermissionError:
        raise UserError("permission denied", path) from None
    except OSError as e:
        raise UserError(f"cannot read ({e.strerror or type(e).__name__})", path) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8", path) from None


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file; a missing or malformed file is a UserError naming file and position."""
    path = Path(path)
    text = _read_text(path, "JSON")
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
    except IsADirectoryError:
        raise UserError("is a directory, expected a JSONL file", path) from None
    except PermissionError:
        raise UserError("permission denied", path) from None
    with f:
        lineno = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as e:
                raise UserError(f"not UTF-8 text ({e.reason}); save it as UTF-8", path) from None
            if not line:
                return
            lineno += 1
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"malformed JSON line (column {e.colno}: {e.msg})", path, lineno) from None
            yield lineno, obj


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    text = _read_text(path, "TOML")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
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
        raise UserError(
            f'predictions must be a list of {{"{id_key}", "{text_key}"}} objects, got {type(data).__name__}', path
        )
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
            raise UserError(
                f"predictions entry {i} ({id_key} {pid}): {text_key!r} must be a string, "
                f"got {type(p[text_key]).__name__}",
                path,
            )
        yield i, pid, p[text_key]
