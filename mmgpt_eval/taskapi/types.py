"""What a task hands the runner and gets back: samples with their images (defined with the readers in
:mod:`mmgpt_eval.data.sample`, re-exported here), requests (generation:
:class:`Request`; log-likelihood ranking of candidate continuations: :class:`RankRequest`), the
finished outputs (:class:`Output`, :class:`Ranking`), metric declarations and the aggregate. Plain
dataclasses; no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..data.sample import ImageRef, Sample
from ..generation_settings import GenerationSettings
from ..templates import Template

__all__ = ["ImageRef", "Sample", "Request", "RankRequest", "Ranking", "Output", "MetricInfo", "Aggregate"]


@dataclass
class Request:
    """One generation to make. ``key`` names it within the sample ("main", "t0", "blank", ...)."""

    key: str
    prompt: str
    images: list[ImageRef]
    template: Template
    settings: GenerationSettings | None = None  # None: the run's settings

    @property
    def image_keys(self) -> list[str]:
        return [i.key for i in self.images]


@dataclass
class RankRequest:
    """One ranking to make: every candidate continuation of ``prompt`` (with its images) scored by its
    log-likelihood. Candidates are tokenized on their own and appended to the prompt's tokens, as
    OpenFlamingo's classification does. ``normalize``: rank by the mean log-probability per candidate
    token (OpenFlamingo), else by the sum. Multiple choice is a ranking over the sample's choices."""

    key: str
    prompt: str
    images: list[ImageRef]
    template: Template
    candidates: list[str]
    normalize: bool = True
    top_k: int = 5  # how many of the best candidates the per-sample log keeps

    @property
    def joint_tokens(self) -> bool:
        """Candidates tokenized as they read after the prompt (else alone: the template says)."""
        return self.template.rank_tokens == "joint"

    @property
    def image_keys(self) -> list[str]:
        return [i.key for i in self.images]


@dataclass
class Ranking:
    """A finished ranking request. ``scores`` rank the candidates (mean or summed log-probability, as
    the request asked); the per-sample log keeps the ``top_k`` best with their scores."""

    prompt: str
    prompt_sha256: str
    image_keys: list[str]
    candidates: list[str]
    scores: list[float]
    sum_logprobs: list[float]
    n_tokens: list[int]
    normalize: bool
    top_k: int

    @property
    def order(self) -> list[int]:
        """Candidate indices, best first (ties: candidate order)."""
        return sorted(range(len(self.scores)), key=lambda i: (-self.scores[i], i))

    @property
    def prediction(self) -> str:
        return self.candidates[self.order[0]]

    raw = prediction
    num_new_tokens = 0
    stopped_on_eos = None

    def rank_of(self, candidate: str) -> int:
        """1-based rank of ``candidate``."""
        return self.order.index(self.candidates.index(candidate)) + 1

    def score_of(self, candidate: str) -> float:
        return self.scores[self.candidates.index(candidate)]

    def top(self, k: int | None = None) -> list[dict[str, Any]]:
        return [
            {
                "candidate": self.candidates[i],
                "score": self.scores[i],
                "sum_logprob": self.sum_logprobs[i],
                "n_tokens": self.n_tokens[i],
            }
            for i in self.order[: self.top_k if k is None else k]
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "prompt_sha256": self.prompt_sha256,
            "image_keys": self.image_keys,
            "prediction": self.prediction,
            "n_candidates": len(self.candidates),
            "normalize": self.normalize,
            "ranking": self.top(),
        }


@dataclass
class Output:
    """A finished request, as stored in the per-sample log."""

    prompt: str
    prompt_sha256: str
    raw: str
    prediction: str
    token_ids: list[int]
    stopped_on_eos: bool
    num_new_tokens: int
    max_new_tokens: int
    image_keys: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MetricInfo:
    kind: str  # "binary" | "continuous" | "corpus" (see mmgpt_eval.stats); "corpus-only": no per-sample values
    higher_is_better: bool = True
    scale: float = 1.0  # corpus value = scale * mean(per-sample values) for binary/continuous metrics
    unit: str = ""  # "%", "", "words" ...
    per_sample: str | None = None  # key in a sample record's "metrics"; None: corpus-only
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Aggregate:
    metrics: dict[str, float | None]
    breakdown: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # per-sample metric values only known once the whole set is scored (e.g. fixed-IDF CIDEr):
    # merged into the records' "metrics" and written back to the per-sample log
    per_sample: dict[str, dict[str, float]] = field(default_factory=dict)
