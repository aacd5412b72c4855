"""mmgpt-eval: evaluation harness for MultiModal-GPT-style models (OpenFlamingo + LoRA).

One sample's path, top-down:
  model spec (model/spec.py) -> model (model/build.py, model/checkpoint.py, model/lora.py)
  -> task (mmgpt_eval_tasks.*, taskapi.py) -> batches + generations (model/generate.py, runner.py)
  -> postprocess (templates.py) -> metrics (metrics/*) -> results (results.py)
  -> report / gate (report.py, gate.py)

Library quirks are shimmed in exactly one place: mmgpt_eval.compat.
"""

__version__ = "0.1.0"
