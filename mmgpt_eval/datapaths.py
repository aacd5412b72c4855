"""The data root: where tasks find their files when no per-task flags are given.

``--data-root DIR``, else ``$MMGPT_EVAL_DATA``, else ``$XDG_CACHE_HOME/mmgpt-eval/data`` (default
``~/.cache/mmgpt-eval/data``). Each task declares its fixed layout under it (``DataFile(layout=...)`` in
``Task.OPTIONS``), e.g. ``coco/dataset_coco.json`` + ``coco/val2014/``;
``vqav2/v2_OpenEnded_mscoco_val2014_questions.json``, ``vqav2/v2_mscoco_val2014_annotations.json`` + ``vqav2/val2014/``.
mmgpt-eval never downloads them: ``mmgpt-eval data check`` says what is missing and where each file comes from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .taskapi import DataFile, Task


def data_root(arg: str | os.PathLike | None = None) -> Path:
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get("MMGPT_EVAL_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmgpt-eval" / "data"


def _layout(task: Task, root: Path) -> list[tuple[DataFile, str, Path]]:
    """The task's data files that have a place under ``root`` (with the current options)."""
    out = []
    for o in task.OPTIONS:
        if isinstance(o, DataFile):
            path = o.layout_path(root, task.options)
            if path is not None:
                out.append((o, o.key(task.name), path))
    return out


def apply_layout(task: Task, root: Path) -> list[str]:
    """Fill the task's unset data options from the layout; returns the options filled in. Optional
    files (few-shot train splits) are filled only when present."""
    filled = []
    for o, key, path in _layout(task, root):
        if task.options.get(key) is None and (o.required or path.exists()):
            task.options[key] = str(path)
            filled.append(key)
    return filled


def check(task: Task, root: Path) -> list[dict[str, object]]:
    """Every layout entry of ``task``: expected path (or the flag's value), present or not, source."""
    rows = []
    for o, key, default in _layout(task, root):
        given = task.options.get(key)
        path = Path(given) if given else default
        rows.append(
            {
                "task": task.name,
                "option": key,
                "path": str(path),
                "present": path.exists(),
                "required": o.required,
                "source": o.source,
                "from": "flag" if given else "data root",
            }
        )
    return rows


def missing(tasks: Sequence[Task], root: Path) -> dict[str, list[str]]:
    """Per task (in the order given), the paths of its required data files that do not exist: the rows of
    :func:`check` that ``data check`` marks MISSING. Tasks with nothing missing are left out."""
    out: dict[str, list[str]] = {}
    for task in tasks:
        paths = [str(r["path"]) for r in check(task, root) if r["required"] and not r["present"]]
        if paths:
            out[task.name] = paths
    return out


def missing_message(absent: dict[str, list[str]], root: Path) -> str:
    """One line naming every missing file of every task (``missing``'s result), and the command that
    says where to get each."""
    listed = "; ".join(f"{task}: {', '.join(paths)}" for task, paths in absent.items())
    where = "" if root == data_root() else f" --data-root {root}"
    return (
        f"data not found: {listed} (`mmgpt-eval data check --tasks {','.join(absent)}{where}` "
        "says where to get each file)"
    )
