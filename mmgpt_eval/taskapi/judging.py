"""How a task asks for its answers to be judged by a model (issue 26).

A task whose quality is open-ended declares ``JUDGING = Judging(...)``: which judgment modes apply and
how one per-sample log record (what ``run`` wrote to ``samples/<task>.jsonl``: ``id``, ``prompt``,
``raw``, ``prediction``, ``references``, ``meta``, ``metrics``) becomes the :class:`JudgedItem` the
judge reads. Judging works from the logs alone (``mmgpt-eval judge RUN`` regenerates nothing), so
everything the judge needs must be in the record: the user messages, the answers, the reference, a
text description of the image and the image's identity.

Modes (the judge's side lives in :mod:`mmgpt_eval.judge`):

* ``rubric`` -- every turn graded alone on banded 1-10 dimensions, with the conversation before it;
* ``relative`` -- the last turn's answer and the reference answer both scored 1-10; the task's score
  is 100 x mean(candidate) / mean(reference), as LLaVA-Bench reports it;
* ``grade`` -- the last turn's answer graded for correctness against the reference, 0.0-1.0 in steps
  of 0.1 (MM-Vet);
* ``pairwise`` -- against the baseline run's answers to the same item, judged in both orders (two
  verdicts that disagree are a tie).

Importing this module imports no torch: importing a task stays light."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import UserError
from ..judge_results import JUDGMENT_MODES


@dataclass(frozen=True)
class JudgedItem:
    """One sample's answers as the judge reads them.

    ``turns``: (user message, model answer) in order; single-turn tasks have one. ``image``: the text
    the judge reads about the image(s) (a caption; None when the sample has none); ``image_id``:
    what identifies the image content itself (e.g. its sha256), so that a changed image with the same
    caption is judged again. ``reference``: the reference answer to the last turn (``relative`` and
    ``grade`` need it). ``group``: the breakdown key (a capability, a category), or None."""

    id: str
    turns: tuple[tuple[str, str], ...]
    image: str | None = None
    image_id: str | None = None
    reference: str | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise UserError(f"judged item id must be a non-empty string, got {self.id!r}")
        if not self.turns or not all(
            isinstance(t, tuple) and len(t) == 2 and all(isinstance(x, str) for x in t) for t in self.turns
        ):
            raise UserError(f"judged item {self.id}: turns must be (user message, answer) string pairs")


@dataclass(frozen=True)
class Judging:
    """A task's judging declaration: the modes that apply (a subset of :data:`JUDGMENT_MODES`, in the
    order they are reported), the function from a per-sample log record to its :class:`JudgedItem`,
    and the rubric's dimensions when the task wants other than the judge's default ones."""

    modes: tuple[str, ...]
    item: Callable[[Mapping[str, Any]], JudgedItem]
    dimensions: tuple[str, ...] | None = None
    description: str = field(default="")

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in JUDGMENT_MODES]
        if not self.modes or unknown:
            raise UserError(f"Judging.modes must be a non-empty subset of {JUDGMENT_MODES}, got {self.modes!r}")
