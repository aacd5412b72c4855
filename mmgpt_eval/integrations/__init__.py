"""Adapters that let other evaluation frameworks drive mmgpt-eval's model loading and generation.

``lmms_eval``: the ``mmgpt`` model backend for lmms-eval (optional extra ``mmgpt-eval[lmms]``).
Nothing here is imported by mmgpt-eval itself.
"""
