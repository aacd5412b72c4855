"""The request-answering engine: generation and ranking requests in, answers out in input order, for
a model of any family behind the seam (:class:`~mmgpt_eval.model.seam.EvalModel`).

What it does for every family, once:

* groups generation requests by stop rule and decoding settings (one ``generate`` call decodes
  one way), in first-seen order; ranking requests form one group;
* batches each group by image count and prompt length (one image count per batch, little padding;
  :func:`~mmgpt_eval.model.batching.batches_by_image_count`); with the automatic batch size, a batch
  also holds no more rows than the family's capacity at its padded prompt length (on a CPU, a token
  budget: :func:`~mmgpt_eval.model.batching.auto_rows`);
* backs off on out-of-memory: the batch is halved and retried, and the smaller size is kept as a
  cap for every later batch (:meth:`Engine.batch_size` reports it);
* refuses requests a family cannot take (images for a text-only model) before any work.

Feature reuse (each distinct image encoded once, across batches) and the family's own speed-ups
(shared prompt prefix, prompt once per beam, the media-attention fast path) live in the family.

The runner, ``mmgpt-eval predict`` and the lmms-eval backend all answer through :meth:`Engine.answer`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

from .errors import UserError
from .generation_settings import GenerationSettings
from .model.batching import batches_by_image_count, halving_on_oom
from .model.seam import STOP_EOS, STOP_RULES, CandidateScore, EvalModel, Generation, PromptInput, RankInput


@dataclass
class GenerationRequest:
    """Generate a continuation of ``prompt`` (its ``<image>`` tokens mark ``images``, in order)."""

    prompt: str
    images: list[Any] = field(default_factory=list)
    image_keys: list[str] | None = None  # identical keys = identical images (encoded once)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    stop: str = STOP_EOS  # a symbolic stop rule (mmgpt_eval.model.seam.STOP_RULES)

    def as_input(self) -> PromptInput:
        return PromptInput(self.prompt, list(self.images), self.image_keys)


@dataclass
class RankingRequest:
    """Score every candidate continuation of ``context``."""

    context: str
    candidates: list[str]
    images: list[Any] = field(default_factory=list)
    image_keys: list[str] | None = None
    joint: bool = False  # candidate tokens as in tokenize(context + candidate) (else: tokenized alone)

    def as_input(self) -> RankInput:
        return RankInput(self.context, list(self.images), list(self.candidates), self.image_keys, self.joint)


Request = Union[GenerationRequest, RankingRequest]
Answer = Union[Generation, "list[CandidateScore]"]


def _settings_key(s: GenerationSettings) -> str:
    return json.dumps(s.to_dict(), sort_keys=True)


class Engine:
    """Answers requests on one loaded model. ``batch_size``: rows per batch (0: automatic, the
    family's :meth:`~mmgpt_eval.model.seam.EvalModel.batch_capacity`)."""

    def __init__(self, model: EvalModel, batch_size: int = 0):
        self.model = model
        self.requested = batch_size
        self._cap: int | None = None  # largest batch known to fit (set by the out-of-memory back-off)
        self.oom_events = 0

    def batch_size(self, num_beams: int = 1, requested: int | None = None) -> int:
        """Rows per batch: the requested size (or the family's automatic one), never above a size that
        has run out of memory before."""
        want = self.model.batch_capacity(self.requested if requested is None else requested, num_beams)
        return min(want, self._cap) if self._cap else want

    def rows_that_fit(self, requests: Sequence[Request], num_beams: int = 1) -> int:
        """How many of ``requests`` (in order, sorted by image count and length as a caller batches
        them) one automatic batch takes: at most :meth:`batch_size`, and within the family's capacity
        at their padded length. A caller that slices its work into chunks uses this as the chunk size,
        so a chunk is one batch rather than, say, 8 + 8 + 5 rows. With a fixed batch size: all of them,
        up to it."""
        n = min(len(requests), self.batch_size(num_beams))
        if n == 0 or (self.requested and self.requested > 0):
            return n
        tokens = self.model.prompt_tokens([q.as_input() for q in requests[:n]])
        width = 0
        for i, t in enumerate(tokens):
            width = max(width, t)
            if i + 1 > self.model.batch_capacity(0, num_beams, width):
                return max(1, i)
        return n

    def check(self, requests: Sequence[Request]) -> None:
        """Refuse what this model cannot answer, before any work."""
        for i, q in enumerate(requests):
            if q.images and not self.model.accepts_images:
                raise UserError(
                    f"model family {self.model.family} takes no images, but request {i} has {len(q.images)}"
                )
            if isinstance(q, GenerationRequest) and q.stop not in STOP_RULES:
                raise UserError(f"request {i}: unknown stop rule {q.stop!r} (known: {', '.join(STOP_RULES)})")

    def answer(
        self, requests: Sequence[Request], batch_size: int | None = None, on_batch: Callable[[int], None] | None = None
    ) -> list[Answer]:
        """A :class:`~mmgpt_eval.model.seam.Generation` per generation request and a list of
        :class:`~mmgpt_eval.model.seam.CandidateScore` (candidate order) per ranking request, in input
        order. ``batch_size``: rows per batch (default :meth:`batch_size` for each group's beams);
        ``on_batch(n)`` is called after each batch of ``n`` requests."""
        self.check(requests)
        out: list[Any] = [None] * len(requests)
        groups: dict[tuple[str, str], list[int]] = {}
        ranked: list[int] = []
        for i, q in enumerate(requests):
            if isinstance(q, RankingRequest):
                ranked.append(i)
            else:
                groups.setdefault((q.stop, _settings_key(q.settings)), []).append(i)
        for (stop, _), idx in groups.items():
            settings = requests[idx[0]].settings  # type: ignore[union-attr]
            size = batch_size or self.batch_size(settings.num_beams)
            inputs = [requests[i].as_input() for i in idx]
            for batch in self._batches(inputs, size, settings.num_beams):
                gens = halving_on_oom(
                    self,
                    lambda part, st=settings, rule=stop: self.model.generate_batch(part, st, rule),
                    [inputs[j] for j in batch],
                )
                for j, g in zip(batch, gens):
                    out[idx[j]] = g
                if on_batch:
                    on_batch(len(batch))
        if ranked:
            size = batch_size or self.batch_size()
            inputs = [requests[i].as_input() for i in ranked]
            for batch in self._batches(inputs, size, 1):
                scores = halving_on_oom(self, self.model.score_batch, [inputs[j] for j in batch])
                for j, s in zip(batch, scores):
                    out[ranked[j]] = s
                if on_batch:
                    on_batch(len(batch))
        return out

    def _batches(self, inputs: Sequence[PromptInput | RankInput], size: int, num_beams: int) -> list[list[int]]:
        """Batches of at most ``size`` rows; with the automatic batch size also within the family's
        capacity at each batch's padded prompt length (e.g. a CPU token budget)."""
        if self.requested and self.requested > 0:
            return batches_by_image_count(inputs, size)
        tokens = self.model.prompt_tokens(inputs)
        return batches_by_image_count(
            inputs, size, tokens, lambda width: self.model.batch_capacity(0, num_beams, width)
        )

    def generate(self, requests: Sequence[GenerationRequest], batch_size: int | None = None) -> list[Generation]:
        return self.answer(requests, batch_size)  # type: ignore[return-value]

    def rank(self, requests: Sequence[RankingRequest], batch_size: int | None = None) -> list[list[CandidateScore]]:
        return self.answer(requests, batch_size)  # type: ignore[return-value]


def engine_for(loaded: Any, batch_size: int = 0, share_prefix: bool = True) -> Engine:
    """An engine over a loaded model of any family (:func:`mmgpt_eval.model.families.eval_model`)."""
    from .model.families import eval_model

    return Engine(eval_model(loaded, share_prefix=share_prefix), batch_size)
