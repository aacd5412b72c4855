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
* refuses requests a family cannot take (images for a text-only model) before any work;
* fits prompts to the model's context (:meth:`Engine.fit`): a prompt with more tokens than the
  language model's maximum positions is refused in one line naming it, or, with ``truncate="left"``
  (an explicit choice), keeps its last tokens -- never cutting an ``<image>`` token.

Feature reuse (each distinct image encoded once, across batches) and the family's own speed-ups
(shared prompt prefix, prompt once per beam, the media-attention fast path) live in the family.

The runner, ``mmgpt-eval predict`` and the lmms-eval backend all answer through :meth:`Engine.answer`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

from .errors import UserError
from .generation_settings import GenerationSettings
from .model.batching import batches_by_image_count, halving_on_oom
from .model.seam import STOP_EOS, STOP_RULES, CandidateScore, EvalModel, Generation, PromptInput, RankInput
from .templates import IMAGE

#: what to do with a prompt longer than the model's context: refuse it, or keep its last tokens
TRUNCATE_MODES = ("none", "left")
FIT_CHUNK = 1024  # prompts tokenized per call when their lengths are checked (bounded memory for large sets)


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

    def __init__(self, model: EvalModel, batch_size: int = 0, truncate: str = "none"):
        if truncate not in TRUNCATE_MODES:
            raise UserError(f"truncate must be one of {', '.join(TRUNCATE_MODES)}, got {truncate!r}")
        self.model = model
        self.requested = batch_size
        self.truncate = truncate
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

    def context_limit(self) -> int | None:
        """The model's maximum positions (None: unknown or unbounded; nothing is checked then)."""
        limit = getattr(self.model, "context_limit", None)
        return limit() if callable(limit) else None

    def fit(self, requests: Sequence[Request], labels: Sequence[str] | None = None) -> tuple[list[Request], list[int]]:
        """``requests`` with every prompt within the model's context, and the indices of those cut.

        A prompt is too long when it has more tokens than the model's maximum positions. With
        ``truncate="none"`` the first such request is refused (a :class:`UserError` naming it by
        ``labels[i]``, its length and the limit); with ``"left"`` it keeps its last tokens -- the
        longest end of its text within the limit less the generation's ``max_new_tokens`` (so the
        answer fits too) -- unless that would cut an ``<image>`` token, which is refused."""
        limit = self.context_limit()
        out = list(requests)
        if limit is None or not out:
            return out, []
        name = (lambda i: labels[i]) if labels is not None else (lambda i: f"request {i}")
        texts = [_text(q) for q in out]
        lengths = [n for i in range(0, len(texts), FIT_CHUNK) for n in self.model.text_tokens(texts[i : i + FIT_CHUNK])]
        cut: list[int] = []
        for i, (q, n) in enumerate(zip(out, lengths)):
            if n <= limit:
                continue
            what = f"{name(i)}: the prompt has {n} tokens, more than the model's context of {limit} positions"
            if self.truncate == "none":
                raise UserError(f"{what} (shorten it, or pass --truncate left to keep its last tokens)")
            room = q.settings.max_new_tokens if isinstance(q, GenerationRequest) else 0
            budget = max(1, limit - room)
            text = _text(q)
            start = self._keep_from(text, budget)
            if start is None:
                raise UserError(f"{what}; no end of it fits in {budget} tokens")
            if text[start:].count(IMAGE) != text.count(IMAGE):
                raise UserError(
                    f"{what}; keeping its last {budget} tokens would cut an {IMAGE} token (--truncate left)"
                )
            out[i] = _with_text(q, text[start:])
            cut.append(i)
        return out, cut

    def _keep_from(self, text: str, budget: int) -> int | None:
        """The first character of the longest end of ``text`` within ``budget`` tokens (binary search
        over character positions; None when even the empty end does not fit)."""
        count = lambda t: self.model.text_tokens([t])[0]  # noqa: E731
        if count("") > budget:
            return None
        lo, hi = 0, len(text)  # text[lo:] does not fit, text[hi:] does
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count(text[mid:]) <= budget:
                hi = mid
            else:
                lo = mid
        return hi

    def answer(
        self, requests: Sequence[Request], batch_size: int | None = None, on_batch: Callable[[int], None] | None = None
    ) -> list[Answer]:
        """A :class:`~mmgpt_eval.model.seam.Generation` per generation request and a list of
        :class:`~mmgpt_eval.model.seam.CandidateScore` (candidate order) per ranking request, in input
        order. ``batch_size``: rows per batch (default :meth:`batch_size` for each group's beams);
        ``on_batch(n)`` is called after each batch of ``n`` requests. Prompts are fitted to the
        context first (:meth:`fit`): callers that record prompts fit them themselves."""
        self.check(requests)
        requests, _ = self.fit(requests)
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


def _text(q: Request) -> str:
    return q.context if isinstance(q, RankingRequest) else q.prompt


def _with_text(q: Request, text: str) -> Request:
    if isinstance(q, RankingRequest):
        return dataclasses.replace(q, context=text)
    return dataclasses.replace(q, prompt=text)


def engine_for(loaded: Any, batch_size: int = 0, share_prefix: bool = True, truncate: str = "none") -> Engine:
    """An engine over a loaded model of any family (:func:`mmgpt_eval.model.families.eval_model`)."""
    from .model.families import eval_model

    return Engine(eval_model(loaded, share_prefix=share_prefix), batch_size, truncate)
