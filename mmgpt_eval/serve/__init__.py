"""``mmgpt-eval serve``: an OpenAI-compatible chat-completions server for one loaded model.

* :mod:`~mmgpt_eval.serve.chat`: requests -> MultiModal-GPT prompts and settings, generations -> OpenAI
  responses (no HTTP, no torch);
* :mod:`~mmgpt_eval.serve.worker`: the one thread that owns the model and batches waiting requests
  through :class:`mmgpt_eval.engine.Engine`;
* :mod:`~mmgpt_eval.serve.http`: the FastAPI application and uvicorn (optional extra
  ``mmgpt-eval[serve]``; imported only by the ``serve`` command).
"""
