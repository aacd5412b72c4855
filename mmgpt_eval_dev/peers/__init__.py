"""Other projects' evaluation code, run on models loaded by mmgpt-eval (test oracles and benchmark peers).

* :mod:`mmgpt_eval_dev.peers.openflamingo`: OpenFlamingo's own ``open_flamingo/eval/evaluate.py`` (the
  copy shipped in the installed open-flamingo wheel), driven through a small ``BaseEvalModel`` wrapper.
"""
