"""Task plugins of mmgpt-eval (installed as the package ``mmgpt_eval_tasks``): one task per module."""
