"""Import path kept for code outside the model package; the code is :mod:`mmgpt_eval.model.flamingo.rank`."""

from .flamingo.rank import Ranker, softmax_of, top_k
from .seam import CandidateScore, RankInput

__all__ = ["CandidateScore", "RankInput", "Ranker", "softmax_of", "top_k"]
