"""Import path kept for code outside the model package; the code is :mod:`mmgpt_eval.model.flamingo.generate`."""

from ..generation_settings import GenerationSettings
from .batching import batches_by_image_count, halving_on_oom, is_oom
from .flamingo.generate import Generator
from .seam import Generation, PromptInput

__all__ = [
    "GenerationSettings",
    "Generation",
    "Generator",
    "PromptInput",
    "batches_by_image_count",
    "halving_on_oom",
    "is_oom",
]
