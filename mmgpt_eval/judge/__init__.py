"""Judging open-ended answers with a model: judge backends (an OpenAI-compatible endpoint, a local
causal LM through the model seam, a Python callable), our judge prompt templates with strict reply
parsing, a content-keyed judgment cache, the judgment modes (rubric, reference-guided relative,
position-swapped pairwise) and the reliability statistics (agreement across repeats, position bias,
parse failures, intervals that carry judge noise)."""
