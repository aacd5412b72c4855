"""mmgpt-eval: evaluation harness for MultiModal-GPT-style models (OpenFlamingo + LoRA).

    import mmgpt_eval
    res = mmgpt_eval.evaluate(model="tiny-openflamingo", ckpt="tiny-mmgpt", tasks="easyvqa,counting", limit=50)

One sample's path, top-down (the folder layout follows it):
  api.evaluate            the engine the CLI (cli/) and Python users call; config.EvalConfig its settings
  protocols/              how a protocol picks templates, subsets, demos (mmgpt-eval's own, OpenFlamingo's)
  model spec -> model     model/spec.py, model/build.py, model/checkpoint.py, model/lora.py
  task -> requests        taskapi/ (the plugin API), tasks/ (the plugins, installed as mmgpt_eval_tasks)
  batches -> generations  runner.py, model/generate.py (generation_settings.py, templates.py)
  postprocess -> metrics  templates.py (answer extraction), metrics/ (pure functions)
  records -> results      records.py, sample_store.py, results.py
  compare / report / gate compare.py, report/, gate/
  judged by a model       judging/ (the stage: judge_run), judge/ (backends, prompts, cache, modes)

Library quirks are shimmed in exactly one place: mmgpt_eval.compat.
"""

from .version import __version__

__all__ = [
    "evaluate",
    "EvalConfig",
    "load",
    "RunResults",
    "SeriesResults",
    "SampleRecord",
    "compare_runs",
    "judge_run",
    "JudgeSettings",
    "build_judge",
    "metrics_frame",
    "samples_frame",
    "__version__",
]


def __getattr__(name: str):  # lazy: importing mmgpt_eval (e.g. from a task plugin) stays light
    if name in ("evaluate", "load", "SeriesResults", "LoadOptions"):
        from . import api

        return getattr(api, name)
    if name == "EvalConfig":
        from .config import EvalConfig

        return EvalConfig
    if name == "RunResults":
        from .results import RunResults

        return RunResults
    if name == "SampleRecord":
        from .records import SampleRecord

        return SampleRecord
    if name in ("metrics_frame", "samples_frame"):
        from . import frames

        return getattr(frames, name)
    if name in ("judge_run", "JudgeSettings", "build_judge"):
        from . import judging

        return getattr(judging, name)
    if name == "compare_runs":
        from .compare import compare_runs

        return compare_runs
    raise AttributeError(f"module 'mmgpt_eval' has no attribute {name!r}")
