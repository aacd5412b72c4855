"""Small I/O helpers: atomic writes and strict JSON/JSONL/TOML readers with file:line errors.

Every JSON, JSONL and TOML file the program reads from users (results.json, per-sample logs, task data,
predictions, policies, configs, model specs, adapter configs) is parsed here, within two bounds that no
real file reaches; a file beyond them is a one-line :class:`UserError` naming it (exit 2):

* nesting depth (:data:`MAX_DEPTH`): arrays and objects (TOML: arrays and tables) inside each other;
* size, by kind (:data:`MAX_BYTES`): a whole JSON or TOML file, or one line of a JSONL file.
"""

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


#: the deepest nesting of arrays / objects (tables) accepted in a file the program reads. The deepest real
#: files (a dialogue sample record, a results.json breakdown) nest under 10 levels.
MAX_DEPTH = 64

#: the largest file accepted, by kind, in bytes. ``data``: a JSON task-data or predictions file (the largest
#: public annotation files are under 400 MiB); ``results``: results.json, series.json, a gate verdict;
#: ``config``: a TOML or JSON settings file (run config, gate policy, model spec, adapter config, published
#: numbers); ``jsonl-line``: one line of a JSONL file (a per-sample record, a predict case).
MAX_BYTES = {
    "data": 4 << 30,
    "results": 512 << 20,
    "config": 16 << 20,
    "jsonl-line": 64 << 20,
}


def _size_text(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


def too_deep(path: Any, line: int | None = None) -> UserError:
    """The error for a file nested deeper than :data:`MAX_DEPTH`."""
    return UserError(f"nested deeper than {MAX_DEPTH} levels of arrays/objects (the limit for input files)", path, line)


def depth_exceeds(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Does ``obj`` (parsed JSON/TOML) nest lists/dicts deeper than ``limit``? Iterative: any depth is safe."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        items = o.values() if isinstance(o, dict) else o
        for v in items:
            if isinstance(v, (dict, list)):
                stack.append((v, d + 1))
    return False


def _maybe_deep(text: str | bytes) -> bool:
    """Can ``text`` nest deeper than :data:`MAX_DEPTH`? Not when it has no more openers than that (a fast
    count that spares almost every line and small file the walk of :func:`depth_exceeds`)."""
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{") > MAX_DEPTH
    return text.count("[") + text.count("{") > MAX_DEPTH


def loads_json(text: str | bytes, path: Any, line: int | None = None) -> Any:
    """Parse JSON ``text`` read from ``path`` (at ``line`` of a JSONL file) within :data:`MAX_DEPTH`:
    malformed or too deeply nested text is a one-line UserError."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if line is not None:
            raise UserError(f"malformed JSON line (column {e.colno}: {e.msg})", path, line) from None
        raise UserError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path) from None
    except RecursionError:
        raise too_deep(path, line) from None
    if isinstance(obj, (dict, list)) and _maybe_deep(text) and depth_exceeds(obj):
        raise too_deep(path, line)
    return obj


def line_too_long(path: Any, line: int) -> UserError:
    return UserError(
        f"a line longer than {_size_text(MAX_BYTES['jsonl-line'])} (the limit for one JSONL record)", path, line
    )


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


def _read_text(path: Path, what: str, kind: str) -> str:
    limit = MAX_BYTES[kind]
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except IsADirectoryError:
        raise UserError(f"is a directory, expected a {what} file", path) from None
    except PermissionError:
        raise UserError("permission denied", path) from None
    except OSError as e:
        raise UserError(f"cannot read ({e.strerror or type(e).__name__})", path) from None
    if len(data) > limit:
        raise UserError(f"larger than {_size_text(limit)} (the limit for a {what} {kind} file)", path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8", path) from None


def read_json(path: str | os.PathLike, kind: str = "data") -> Any:
    """Parse a JSON file of ``kind`` (a key of :data:`MAX_BYTES`); a missing, malformed, too large or too
    deeply nested file is a UserError naming file and position."""
    path = Path(path)
    return loads_json(_read_text(path, "JSON", kind), path)


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file (each line within
    :data:`MAX_BYTES` ``["jsonl-line"]`` and :data:`MAX_DEPTH`)."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except IsADirectoryError:
        raise UserError("is a directory, expected a JSONL file", path) from None
    except PermissionError:
        raise UserError("permission denied", path) from None
    cap = MAX_BYTES["jsonl-line"]
    with f:
        lineno = 0
        while True:
            try:
                line = f.readline(cap + 1)
            except UnicodeDecodeError as e:
                raise UserError(f"not UTF-8 text ({e.reason}); save it as UTF-8", path) from None
            if not line:
                return
            lineno += 1
            if len(line) > cap:
                raise line_too_long(path, lineno)
            if not line.strip():
                continue
            yield lineno, loads_json(line, path, lineno)


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML settings file within :data:`MAX_BYTES` ``["config"]`` and :data:`MAX_DEPTH`."""
    path = Path(path)
    text = _read_text(path, "TOML", "config")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"malformed TOML: {e}", path) from None
    except RecursionError:
        raise too_deep(path) from None
    if depth_exceeds(data):  # dotted keys nest tables without brackets: always walked (small files)
        raise too_deep(path)
    return data


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
