"""``mmgpt-eval gate --baseline RUN --candidate RUN --policy gate.toml``: the CI regression gate.

Exit codes: 0 pass, 1 regression (the candidate is worse than a rule's margin with the rule's
confidence), 2 error (missing task or metric, different sample sets, too few samples, malformed
policy). Writes a Markdown summary (for a PR comment), JUnit XML (for CI dashboards) and JSON when
asked; the verdict also goes into the HTML report (``mmgpt-eval report ... --gate gate.json``)."""

from __future__ import annotations

import argparse
import sys

from ..io import atomic_write_json, atomic_write_text, check_output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="CI regression gate (exit 0 pass / 1 regression / 2 error)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", required=True, metavar="RUN", help="baseline run folder or results.json")
    p.add_argument("--candidate", required=True, metavar="RUN", help="candidate run folder or results.json")
    p.add_argument("--policy", required=True, metavar="TOML", help="gate policy (see examples/ci/gate.toml)")
    p.add_argument("--intersect", action="store_true", help="compare on the common samples when the sets differ")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the Markdown summary here")
    p.add_argument("--junit", default=None, metavar="FILE", help="write JUnit XML here")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="write the verdict as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compare import metric_samples
    from ..gate import evaluate_gate, load_policy, to_junit_xml, to_markdown
    from ..results import RunResults, check_run

    for path, what in ((args.markdown, "--markdown file"), (args.junit, "--junit file"), (args.json_out, "--json file")):
        if path:
            check_output_file(path, what)  # before any work
    policy = load_policy(args.policy)
    # each run's per-sample logs must belong to its results.json (else a one-line error, exit 2)
    runs = {"baseline": check_run(RunResults.load(args.baseline)),
            "candidate": check_run(RunResults.load(args.candidate))}

    def fetch(task: str, metric: str, which: str):
        return metric_samples(runs[which], task, metric)

    result = evaluate_gate(policy, fetch, intersect=args.intersect)
    md = to_markdown(result)
    print(md)
    if args.markdown:
        atomic_write_text(args.markdown, md)
    if args.junit:
        atomic_write_text(args.junit, to_junit_xml(result))
    if args.json_out:
        atomic_write_json(args.json_out, result.to_dict())
    if result.exit_code == 2:
        print("mmgpt-eval: gate error (see the summary above)", file=sys.stderr)
    return result.exit_code
