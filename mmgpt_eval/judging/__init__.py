"""The judging stage: a run's answers (its per-sample logs) judged by a model, as its tasks declare
(:class:`mmgpt_eval.taskapi.judging.Judging`), written to ``RUN/judge.json`` and ``RUN/judge/``."""

from .spec import JudgeSettings, build_judge
from .stage import judge_run

__all__ = ["JudgeSettings", "build_judge", "judge_run"]
