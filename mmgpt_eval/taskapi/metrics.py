"""The metric functions task plugins score with: pure functions, each with golden tests against an
independent reference (``mmgpt_eval.metrics``)."""

from ..metrics.caption import require_java, score_captions
from ..metrics.classification import roc_auc, softmax_p, top_k_correct
from ..metrics.counting import aggregate_counting, count_metrics, parse_count
from ..metrics.dialog import (
    CONVERSATION_METRICS,
    aggregate_conversations,
    aggregate_probes,
    conversation_metrics,
    grounding_probes,
    reference_similarity,
    turn_probes,
)
from ..metrics.semantic import available as semantic_available, semantic_similarity  # optional extra [semantic]
from ..metrics.vqa import (
    exact_match,
    normalize_openflamingo,
    openflamingo_okvqa_postprocess,
    score_vqa,
    vizwiz_accuracy,
    vqa_accuracy,
)

__all__ = [
    "require_java",
    "score_captions",
    "aggregate_counting",
    "count_metrics",
    "parse_count",
    "aggregate_probes",
    "grounding_probes",
    "turn_probes",
    "CONVERSATION_METRICS",
    "conversation_metrics",
    "aggregate_conversations",
    "reference_similarity",
    "normalize_openflamingo",
    "score_vqa",
    "vqa_accuracy",
    "exact_match",
    "vizwiz_accuracy",
    "roc_auc",
    "softmax_p",
    "top_k_correct",
    "openflamingo_okvqa_postprocess",
]
__all__ += ["semantic_available", "semantic_similarity"]
