"""The Flamingo family behind the model seam: a :class:`~mmgpt_eval.model.build.LoadedModel` with
its :class:`~.generate.Generator` (vision-feature cache, shared prefix, prompt once per beam) and
:class:`~.rank.Ranker` (sharing that cache)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...generation_settings import GenerationSettings
from ..batching import auto_rows
from ..build import LoadedModel
from ..seam import CandidateScore, Generation, PromptInput, RankInput, config_context_limit
from .generate import Generator
from .rank import Ranker


class FlamingoModel:
    """:class:`~mmgpt_eval.model.seam.EvalModel` over an OpenFlamingo / MultiModal-GPT model."""

    family = "flamingo"
    accepts_images = True

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        share_prefix: bool = True,
        feature_cache_bytes: int | None = None,
        candidate_batch: int | None = None,
        generator: Generator | None = None,
    ):
        self.loaded = loaded
        self.generator = generator or Generator(
            loaded, share_prefix=share_prefix, feature_cache_bytes=feature_cache_bytes
        )
        self.ranker = Ranker(self.generator, candidate_batch=candidate_batch)
        self.tokenizer = loaded.tokenizer

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    def generate_batch(
        self, prompts: Sequence[PromptInput], settings: GenerationSettings, stop: str
    ) -> list[Generation]:
        return self.generator.generate(prompts, settings, stop)

    def score_batch(self, inputs: Sequence[RankInput]) -> list[list[CandidateScore]]:
        return self.ranker.score_batch(inputs)

    def encode_images(self, prompts: Sequence[PromptInput]) -> torch.Tensor | None:
        return self.generator.vision_features(prompts)

    def stop_token_ids(self, stop: str) -> list[int]:
        return [self.generator.eos_token_id(stop)]

    def batch_capacity(self, requested: int, num_beams: int = 1, prompt_tokens: int | None = None) -> int:
        return requested if requested and requested > 0 else auto_rows(self.device.type, num_beams, prompt_tokens)

    def prompt_tokens(self, prompts: Sequence[PromptInput | RankInput]) -> list[int]:
        """Text tokens plus the perceiver's latents per image (the positions cross-attention reads)."""
        latents = self.loaded.spec.perceiver_num_latents
        ids = self.tokenizer([p.text for p in prompts])["input_ids"]
        return [len(t) + latents * len(p.images) for t, p in zip(ids, prompts)]

    def context_limit(self) -> int | None:
        return config_context_limit(getattr(self.loaded.model.lang_encoder, "config", None))

    def text_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t) for t in self.tokenizer(list(texts))["input_ids"]]

    def provenance(self) -> dict[str, Any]:
        return self.loaded.provenance()
