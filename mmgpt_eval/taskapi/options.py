"""A task's options, declared once. From the declarations follow its command-line flags
(``--<task>-<name>``), its ``[task]`` table keys in a run config, the data-root layout, ``data check``
and the data part of the run fingerprint.

    OPTIONS = (
        DataFile("questions", "questions JSON", layout="vqav2/questions.json", source="https://..."),
        Option("split", "split to evaluate", choices=("test", "train"), default="test"),
    )
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

# a layout entry: a path under the data root, or a function of the task's current options giving one
# (or None where it does not apply)
Layout = Union[str, Callable[[dict[str, Any]], Union[str, None]], None]


@dataclass(frozen=True)
class Option:
    """A task option. ``name`` is short (``split``); its key in results and run configs is
    ``<prefix>_<name>`` and its flag ``--<prefix>-<name>`` (prefix: the task's name), unless
    ``shared_key`` names one key that several tasks read (``vqa_normalization``)."""

    name: str
    help: str = ""
    type: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None
    default: Any = None  # what Task.option() returns when unset; never written into results
    shared_key: str | None = None

    def key(self, prefix: str) -> str:
        return self.shared_key or f"{prefix}_{self.name}".replace("-", "_")

    def flag(self, prefix: str) -> str:
        return "--" + self.key(prefix).replace("_", "-")

    def add_to(self, group: Any, prefix: str) -> None:
        """Add the flag to an argparse group (default None, so config files can fill it)."""
        kwargs: dict[str, Any] = {"dest": self.key(prefix), "default": None, "help": self.help or None}
        if self.type is bool:
            group.add_argument(self.flag(prefix), action="store_true", **kwargs)
            return
        if self.choices:
            kwargs["choices"] = list(self.choices)
        if self.type is not str:
            kwargs["type"] = self.type
        group.add_argument(self.flag(prefix), **kwargs)


@dataclass(frozen=True)
class DataFile(Option):
    """A file or folder a task reads. ``layout``: where it lives under the data root
    (``--data-root``); ``source``: where to get it (mmgpt-eval never downloads); ``required=False``
    for files only some settings need (few-shot train splits: filled from the data root only when
    present)."""

    layout: Layout = None
    source: str = ""
    required: bool = True

    def layout_path(self, root: Path, options: dict[str, Any]) -> Path | None:
        rel = self.layout(options) if callable(self.layout) else self.layout
        return None if rel is None else root / rel
