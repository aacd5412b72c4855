"""The data root: where tasks find their files when no per-task flags are given.

``--data-root DIR``, else ``$MMGPT_EVAL_DATA``, else ``$XDG_CACHE_HOME/mmgpt-eval/data`` (default
``~/.cache/mmgpt-eval/data``). Each task defines its fixed layout under it (``Task.data_layout``), e.g.
``coco/dataset_coco.json`` + ``coco/val2014/``; ``vqav2/v2_OpenEnded_mscoco_val2014_questions.json``,
``vqav2/v2_mscoco_val2014_annotations.json`` + ``vqav2/val2014/``. mmgpt-eval never downloads them:
``mmgpt-eval data check`` says what is missing and where each file comes from.
"""

from __future__ import annotations

import os
from pathlib import Path

from .taskapi import Task


def data_root(arg: str | os.PathLike | None = None) -> Path:
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get("MMGPT_EVAL_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mmgpt-eval" / "data"


def apply_layout(task: Task, root: Path) -> list[str]:
    """Fill the task's unset data options from the layout; returns the options filled in. Optional
    files (few-shot train splits) are filled only when present."""
    filled = []
    optional = task.optional_data()
    for opt, path in task.data_layout(root).items():
        if task.options.get(opt) is None and (opt not in optional or path.exists()):
            task.options[opt] = str(path)
            filled.append(opt)
    return filled


def check(task: Task, root: Path) -> list[dict[str, object]]:
    """Every layout entry of ``task``: expected path (or the flag's value), present or not, source."""
    rows = []
    sources = task.data_sources()
    layout = task.data_layout(root)
    optional = task.optional_data()
    for opt, default in layout.items():
        given = task.options.get(opt)
        path = Path(given) if given else default
        rows.append({"task": task.name, "option": opt, "path": str(path), "present": path.exists(),
                     "required": opt not in optional, "source": sources.get(opt, ""),
                     "from": "flag" if given else "data root"})
    return rows
