"""CI regression gate: did the candidate run get worse than the baseline run, beyond noise?

The gate compares two runs (a *baseline*, e.g. the last released checkpoint, and a
*candidate*, e.g. a new LoRA checkpoint) that were evaluated on the same samples, one rule per
``(task, metric)`` from a policy file, and ends with an exit code for CI:
``0`` pass, ``1`` at least one regression, ``2`` an error (bad policy, missing required
metric, too few samples, mismatched sample ids, bad values). Errors win over regressions: a
gate that could not check everything must not look like a plain regression or a pass.

* :mod:`.policy` -- the policy file (TOML) and its validation;
* :mod:`.samples` -- what the gate reads from a run (:class:`MetricSamples`) and its checks;
* :mod:`.decision` -- the decision rule (:func:`evaluate_gate`) and its results;
* :mod:`.judged` -- rules on judge metrics (``judge.<name>``, from the candidate's judge.json);
* :mod:`.render` -- the Markdown summary (PR comment) and JUnit XML.
"""

from __future__ import annotations

from .decision import EXIT_ERROR, EXIT_PASS, EXIT_REGRESSION, GateResult, RuleResult, evaluate_gate
from .policy import GatePolicy, Rule, load_policy, parse_policy
from .render import to_junit_xml, to_markdown
from .samples import Fetch, FetchResult, MetricSamples

__all__ = [
    "Rule",
    "GatePolicy",
    "MetricSamples",
    "RuleResult",
    "GateResult",
    "Fetch",
    "FetchResult",
    "load_policy",
    "parse_policy",
    "evaluate_gate",
    "to_markdown",
    "to_junit_xml",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "EXIT_ERROR",
]
