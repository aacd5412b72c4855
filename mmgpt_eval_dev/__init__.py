"""Development code of mmgpt-eval, kept out of the runtime package ``mmgpt_eval``.

Nothing in ``mmgpt_eval`` imports this package (tests/test_architecture.py checks it); it imports the
runtime package freely.

* :mod:`~mmgpt_eval_dev.bench`, :mod:`~mmgpt_eval_dev.bench_openflamingo`,
  :mod:`~mmgpt_eval_dev.bench_ranking`: the throughput benchmarks; :mod:`~mmgpt_eval_dev.bench_command`
  is their ``mmgpt-eval bench`` sub-command, registered under the entry-point group
  ``mmgpt_eval.commands``.
* :mod:`~mmgpt_eval_dev.peers`: other projects' evaluation code run on mmgpt-eval's models (test oracles
  and benchmark peers).
* :mod:`~mmgpt_eval_dev.vqa_reference`: the official VQA scorer's structure, the reference that tests and
  benchmarks hold the fast scorer to.
* :mod:`~mmgpt_eval_dev.tiny_assets`: how the ``tiny`` preset's configuration files were made.
* :mod:`~mmgpt_eval_dev.reproduce`: ``make reproduce`` / ``make reports`` (writes the shipped models into
  the runtime package and the tables into RESULTS.md).
"""
