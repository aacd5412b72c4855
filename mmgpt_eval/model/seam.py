"""The model seam: what the request-answering engine (:mod:`mmgpt_eval.engine`) needs from a loaded
evaluation model, whatever its family (OpenFlamingo / MultiModal-GPT, a text-only causal LM, ...).

A family implements :class:`EvalModel` over its own network; the engine does everything that is the
same for every family -- grouping requests, batching by image count and length, the out-of-memory
back-off, returning answers in input order. The request and answer types live here so that a
family, the engine and their callers share one vocabulary.

Stop rules are symbols, not token ids: a template says "stop at the end of the LM's sequence"
(:data:`STOP_EOS`) or "at the end of the chunk" (:data:`STOP_END_OF_CHUNK`, OpenFlamingo's
``<|endofchunk|>``) or "at the end of the turn" (:data:`STOP_END_OF_TURN`), and each family maps the
symbol to its tokens (:meth:`EvalModel.stop_token_ids`). The symbols' spellings are part of template
hashes, so they never change.

Importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from ..generation_settings import GenerationSettings

STOP_EOS = "lm_eos"  # the language model's end-of-sequence token
STOP_END_OF_CHUNK = "endofchunk"  # OpenFlamingo's <|endofchunk|>, which ends each interleaved chunk
STOP_END_OF_TURN = "end_of_turn"  # the end of an assistant turn (a chat model's end-of-turn token, else EOS)
STOP_RULES = (STOP_EOS, STOP_END_OF_CHUNK, STOP_END_OF_TURN)


@dataclass
class PromptInput:
    """One generation prompt. ``images`` are PIL images or paths; ``image_keys`` identify identical
    images so their features are computed once (defaults: the path, or the object's id)."""

    text: str
    images: list[Any] = field(default_factory=list)
    image_keys: list[str] | None = None

    def keys(self) -> list[str]:
        if self.image_keys is not None:
            return list(self.image_keys)
        return [str(Path(i).resolve()) if isinstance(i, (str, Path)) else f"obj:{id(i)}" for i in self.images]


@dataclass
class RankInput:
    """One context and the continuations to score after it."""

    text: str
    images: list[Any] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    image_keys: list[str] | None = None
    joint: bool = False  # candidate tokens as in tokenize(text + candidate) (else: tokenized alone)

    def prompt(self) -> PromptInput:
        return PromptInput(self.text, list(self.images), self.image_keys)


@dataclass
class Generation:
    token_ids: list[int]  # new tokens, up to and including the stop token, no padding
    text: str  # decoded new tokens (special tokens skipped)
    full_text: str  # decoded prompt + new tokens (special tokens skipped)
    stopped_on_eos: bool
    prompt_tokens: int

    @property
    def num_new_tokens(self) -> int:
        return len(self.token_ids)

    @classmethod
    def cut(cls, tokenizer: Any, prompt_ids: Sequence[int], new: list[int], stops: set[int]) -> "Generation":
        """The generation a decoded row holds: its new tokens up to and including the first stop token."""
        stopped = False
        for i, tok in enumerate(new):
            if tok in stops:
                new, stopped = new[: i + 1], True
                break
        return cls(
            token_ids=new,
            text=tokenizer.decode(new, skip_special_tokens=True),
            full_text=tokenizer.decode(list(prompt_ids) + new, skip_special_tokens=True),
            stopped_on_eos=stopped,
            prompt_tokens=len(prompt_ids),
        )


@dataclass
class CandidateScore:
    sum_logprob: float  # sum of the candidate tokens' log-probabilities
    n_tokens: int
    is_greedy: bool  # every candidate token is the argmax at its position

    @property
    def mean_logprob(self) -> float:
        """OpenFlamingo's length-normalised score (mean over the candidate's tokens)."""
        return self.sum_logprob / self.n_tokens


@runtime_checkable
class EvalModel(Protocol):
    """A loaded model as the engine sees it. One call of :meth:`generate_batch` / :meth:`score_batch`
    is one batch: rows with the same number of images, at most as many as :meth:`batch_capacity`
    allows; the engine forms the batches and backs off on out-of-memory."""

    family: str  # the registry key (:mod:`mmgpt_eval.model.families`)
    accepts_images: bool  # False: requests with images are refused before any work

    def generate_batch(
        self, prompts: Sequence[PromptInput], settings: GenerationSettings, stop: str
    ) -> list[Generation]:
        """Generate for one batch; ``stop`` is one of :data:`STOP_RULES`."""
        ...

    def score_batch(self, inputs: Sequence[RankInput]) -> list[list[CandidateScore]]:
        """Log-likelihood of every candidate of every context of one batch."""
        ...

    def encode_images(self, prompts: Sequence[PromptInput]) -> Any:
        """Image features of one batch's rows (each distinct image encoded once); None without images."""
        ...

    def stop_token_ids(self, stop: str) -> list[int]:
        """The tokens that end a generation under the stop rule ``stop``."""
        ...

    def batch_capacity(self, requested: int, num_beams: int = 1, prompt_tokens: int | None = None) -> int:
        """Rows per batch: ``requested`` when > 0, else this family's automatic size on its device
        (``prompt_tokens``: the padded length of the rows at hand, as :meth:`prompt_tokens` counts it)."""
        ...

    def prompt_tokens(self, prompts: Sequence[PromptInput | RankInput]) -> list[int]:
        """Each row's length for the automatic batch size: its text tokens plus the positions its images
        add to the work of a forward (0 for a text-only family)."""
        ...

    def context_limit(self) -> int | None:
        """The most token positions the language model reads (its configured maximum), None if unbounded."""
        ...

    def text_tokens(self, texts: Sequence[str]) -> list[int]:
        """Each prompt's length in language-model tokens, as the model tokenizes it (images add none)."""
        ...

    def provenance(self) -> dict[str, Any]:
        """What results record about the model (spec, weights, device, ...)."""
        ...


# language-model config keys that hold its maximum positions, in the order they are looked up
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "max_sequence_length", "seq_length", "n_ctx")


def config_context_limit(config: Any) -> int | None:
    """The maximum positions a Hugging Face config declares (the first of :data:`CONTEXT_KEYS` set to a
    positive integer), None when it declares none."""
    for key in CONTEXT_KEYS:
        v = getattr(config, key, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None
