"""The Flamingo family (OpenFlamingo / MultiModal-GPT): the network (:mod:`.network`), batched
generation (:mod:`.generate`), candidate ranking (:mod:`.rank`) and the seam object the engine
uses (:mod:`.family`). Loading lives in :mod:`mmgpt_eval.model.build` (``load_flamingo``)."""

from .network import (
    FLAMINGO_VERSIONS,
    MMFlamingo,
    MMFlamingoLMMixin,
    MMGatedCrossAttentionBlock,
    MMFlamingoLayer,
    V1MaskedCrossAttention,
    V2MaskedCrossAttention,
)

__all__ = [
    "FLAMINGO_VERSIONS",
    "MMFlamingo",
    "MMFlamingoLMMixin",
    "MMGatedCrossAttentionBlock",
    "MMFlamingoLayer",
    "V1MaskedCrossAttention",
    "V2MaskedCrossAttention",
]
