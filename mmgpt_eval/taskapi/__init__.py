"""The task plugin API: everything a task file imports comes from this package.

A task is one Python module in ``tasks/`` (installed as ``mmgpt_eval_tasks``) -- or in a folder given
with ``--include-path``, or registered under the entry-point group ``mmgpt_eval.tasks`` -- that
defines a subclass of :class:`Task` (module attribute ``TASK``, or ``TASKS`` for several). It declares
its options and data files once (``OPTIONS``; flags, run-config keys, the data-root layout, ``data
check`` and the fingerprint follow from them), loads samples, turns each into requests through a
named template, and scores. See README "Writing a task".

Submodules: ``types`` (Sample, Request, RankRequest, Output, Ranking...), ``options`` (Option,
DataFile), ``task`` (Task, RunContext), ``judging`` (Judging, JudgedItem: answers judged by a model),
``demos`` (few-shot selection), ``reporting`` (report views), ``datasets`` (readers and embedded data),
``metrics`` (metric functions), ``captioning`` (the caption tasks' shared scoring), ``vqa`` (the VQA
tasks' shared declaration), ``breakdowns`` (accuracy per group), ``openended`` (tasks a judge model
grades). Importing a task does not import torch.
"""

from ..errors import UserError
from ..generation_settings import GenerationSettings
from ..jsonable import jsonable
from ..templates import TEMPLATES, Template, get_template, render_mmgpt_dialog
from .demos import DemoSelector, RandomDemos, item_rng
from .judging import JUDGMENT_MODES, JudgedItem, Judging
from .options import DataFile, Option
from .task import RunContext, Task, demos_needed, fixed_subset
from .types import Aggregate, ImageRef, MetricInfo, Output, RankRequest, Ranking, Request, Sample

__all__ = [
    "UserError",
    "GenerationSettings",
    "TEMPLATES",
    "Template",
    "get_template",
    "render_mmgpt_dialog",
    "DemoSelector",
    "RandomDemos",
    "item_rng",
    "JUDGMENT_MODES",
    "JudgedItem",
    "Judging",
    "DataFile",
    "Option",
    "RunContext",
    "Task",
    "demos_needed",
    "fixed_subset",
    "Aggregate",
    "ImageRef",
    "MetricInfo",
    "Output",
    "RankRequest",
    "Ranking",
    "Request",
    "Sample",
    "jsonable",
]
