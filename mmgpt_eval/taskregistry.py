"""Finding task plugins: built-in (``mmgpt_eval_tasks``), ``--include-path`` folders, and the
entry-point group ``mmgpt_eval.tasks`` (value ``module:Class``)."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import pkgutil
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .errors import UserError
from .taskapi import Task

log = logging.getLogger("mmgpt_eval")
ENTRY_POINT_GROUP = "mmgpt_eval.tasks"
BUILTIN_PACKAGE = "mmgpt_eval_tasks"  # the top-level tasks/ folder, installed under this name


def _tasks_in_module(mod) -> list[type[Task]]:
    found = []
    if hasattr(mod, "TASKS"):
        found.extend(mod.TASKS)
    elif hasattr(mod, "TASK"):
        found.append(mod.TASK)
    for t in found:
        if not (isinstance(t, type) and issubclass(t, Task) and t.name):
            raise UserError(f"{getattr(mod, '__file__', mod)}: TASK/TASKS must be Task subclasses with a name")
    return found


def _load_file(path: Path):
    name = f"mmgpt_eval_user_tasks.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError("cannot import task file", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken plugin is the user's to fix; say where
        raise UserError(f"task plugin failed to import: {type(e).__name__}: {e}", path) from None
    return mod


def discover(include_paths: list[str] | None = None) -> dict[str, type[Task]]:
    """All tasks by canonical name (aliases resolved by :func:`resolve`)."""
    classes: list[type[Task]] = []
    builtin = importlib.import_module(BUILTIN_PACKAGE)  # found by name: the library depends on no plugin
    for info in pkgutil.iter_modules(builtin.__path__):
        if info.name.startswith("_"):
            continue
        classes.extend(_tasks_in_module(importlib.import_module(f"{BUILTIN_PACKAGE}.{info.name}")))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001
            raise UserError(f"task entry point {ep.name} ({ep.value}) failed to load: {e}") from None
        classes.extend(_tasks_in_module(obj) if not isinstance(obj, type) else [obj])
    for folder in include_paths or []:
        p = Path(folder)
        if not p.is_dir():
            raise UserError("--include-path is not a folder", p)
        for f in sorted(p.glob("*.py")):
            if not f.name.startswith("_"):
                classes.extend(_tasks_in_module(_load_file(f)))
    out: dict[str, type[Task]] = {}
    for cls in classes:
        if cls.name in out and out[cls.name] is not cls:
            log.warning("task %s from %s overrides an earlier definition", cls.name, cls.__module__)
        out[cls.name] = cls
    return out


def alias_map(tasks: dict[str, type[Task]]) -> dict[str, str]:
    m = {}
    for name, cls in tasks.items():
        m[name] = name
        for a in cls.aliases:
            m.setdefault(a, name)
    return m


def resolve(names: list[str], tasks: dict[str, type[Task]]) -> list[str]:
    """User task names (aliases allowed) -> canonical names, in order, without duplicates."""
    amap = alias_map(tasks)
    out: list[str] = []
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n not in amap:
            close = difflib.get_close_matches(n, list(amap), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"unknown task {n!r}{hint} (see `mmgpt-eval tasks`)")
        if amap[n] not in out:
            out.append(amap[n])
    if not out:
        raise UserError("no tasks given")
    return out


def normalize_options(options: dict[str, Any], tasks: dict[str, type[Task]], where: Any = None) -> dict[str, Any]:
    """Task options as option keys (``vqav2_questions``), from flat keys or ``{task: {name: value}}``
    tables (a table's keys may be short names or full keys). Unknown options are an error."""
    known = {k for cls in tasks.values() for k in cls.option_keys()}
    amap = alias_map(tasks)
    out: dict[str, Any] = {}
    for key, value in options.items():
        if not isinstance(value, dict):
            if key.replace("-", "_") not in known:
                raise UserError(f"unknown task option {key!r}", where)
            out[key.replace("-", "_")] = value
            continue
        cls = tasks.get(amap.get(key, ""))
        short = {o.name: o.key(cls.name) for o in cls.OPTIONS} if cls else {}
        for k, v in value.items():
            dest = short.get(k.replace("-", "_")) or (k if k in known else f"{key}_{k}".replace("-", "_"))
            if dest not in known:
                raise UserError(f"unknown option {k!r} in [{key}]", where)
            out[dest] = v
    return out
