"""``mmgpt-eval gate --baseline RUN --candidate RUN --policy gate.toml``: the CI regression gate.

``mmgpt-eval gate init --model SPEC [--ckpt CKPT] --tasks a,b --limit N --output DIR
[--policy-out gate.toml] [--config-out run.toml] [--force]``: evaluate the current checkpoint on a
fixed subset into DIR (the stored baseline, to commit to your repository) and, if asked, write a
starter policy (one rule per task's primary metric, ``inconclusive = "warn"``) and the run config
that evaluates candidates on exactly the same subset.

Exit codes: 0 pass, 1 regression (the candidate is worse than a rule's margin with the rule's
confidence), 2 error (missing task or metric, different sample sets, too few samples, malformed
policy; a ``judge.<name>`` rule for a candidate that was not judged, or judged by another judge or
against other baseline answers). Writes a Markdown summary (for a PR comment), JUnit XML (for CI
dashboards) and JSON when asked; the verdict also goes into the HTML report
(``mmgpt-eval report ... --gate gate.json``)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import atomic_write_json, atomic_write_text, check_output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gate",
        help="CI regression gate (exit 0 pass / 1 regression / 2 error)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["init"],
        default=None,
        help="`init`: create the stored baseline (and a starter policy) from a checkpoint",
    )
    p.add_argument("--baseline", default=None, metavar="RUN", help="baseline run folder or results.json")
    p.add_argument("--candidate", default=None, metavar="RUN", help="candidate run folder or results.json")
    p.add_argument("--policy", default=None, metavar="TOML", help="gate policy (see examples/ci/gate.toml)")
    p.add_argument("--intersect", action="store_true", help="compare on the common samples when the sets differ")
    p.add_argument("--markdown", default=None, metavar="FILE", help="write the Markdown summary here")
    p.add_argument("--junit", default=None, metavar="FILE", help="write JUnit XML here")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE", help="write the verdict as JSON")
    g = p.add_argument_group("gate init (create the stored baseline)")
    g.add_argument("--model", default=None, metavar="SPEC", help="model spec (preset name or model-spec TOML)")
    g.add_argument("--ckpt", default=None, metavar="PATH", help="the checkpoint the baseline is made from")
    g.add_argument("--tasks", default=None, metavar="a,b", help="comma-separated tasks of the fixed subset")
    g.add_argument(
        "--limit",
        type=_limit_arg,
        default=200,
        help="samples per task (the fixed subset), or `all` for every sample [200]",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed [0]")
    g.add_argument("--batch-size", type=int, default=8, help="batch size [8]")
    g.add_argument("--output", default=None, metavar="DIR", help="the baseline run folder to create")
    g.add_argument("--policy-out", default=None, metavar="TOML", help="also write a starter gate policy here")
    g.add_argument(
        "--config-out",
        default=None,
        metavar="TOML",
        help="also write the run config that evaluates candidates on the same subset",
    )
    g.add_argument("--force", action="store_true", help="overwrite an existing baseline / policy / config")
    p.set_defaults(func=run)


def _limit_arg(value: str) -> int | None:
    """``--limit``: a positive integer, or ``all`` (None: every sample)."""
    if value.strip().lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or `all`, got {value!r}") from None
    return n


_INIT_ONLY = ("model", "ckpt", "tasks", "output", "policy_out", "config_out")
_GATE_ONLY = ("baseline", "candidate", "policy", "markdown", "junit", "json_out")


def run(args: argparse.Namespace) -> int:
    if args.action == "init":
        bad = [k for k in _GATE_ONLY if getattr(args, k)]
        if bad:
            raise UserError(
                f"gate init: --{bad[0].replace('_out', '').replace('_', '-')} is a flag of the gate "
                "itself, not of `gate init`"
            )
        return run_init(args)
    bad = [k for k in _INIT_ONLY if getattr(args, k)]
    if bad:
        raise UserError(f"gate: --{bad[0].replace('_', '-')} belongs to `mmgpt-eval gate init`")
    missing = [f"--{k}" for k in ("baseline", "candidate", "policy") if not getattr(args, k)]
    if missing:
        raise UserError(
            f"gate: the following arguments are required: {', '.join(missing)} "
            "(or `mmgpt-eval gate init ...` to create a baseline)"
        )
    return run_gate(args)


def run_gate(args: argparse.Namespace) -> int:
    from ..compare import metric_samples
    from ..gate import evaluate_gate, load_policy, to_junit_xml, to_markdown
    from ..gate.judged import check_judged, judge_rule
    from ..results import read_run

    for path, what in (
        (args.markdown, "--markdown file"),
        (args.junit, "--junit file"),
        (args.json_out, "--json file"),
    ):
        if path:
            check_output_file(path, what)  # before any work
    policy = load_policy(args.policy)
    # each run's per-sample logs must belong to its results.json (else a one-line error, exit 2)
    runs = {
        "baseline": read_run(args.baseline),
        "candidate": read_run(args.candidate),
    }

    # rules on judge metrics: the candidate's judge.json, same judge and baseline as the gate's (else exit 2)
    judged = check_judged(policy, args.candidate, args.baseline)

    def fetch(task: str, metric: str, which: str):
        return metric_samples(runs[which], task, metric)

    def on_judge(rule: Any) -> Any:
        assert judged is not None
        return judge_rule(rule, judged)

    result = evaluate_gate(policy, fetch, intersect=args.intersect, judge_rule=on_judge if judged else None)
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


def _toml_str(v: str) -> str:
    return json.dumps(v, ensure_ascii=False)  # a JSON string literal is a valid TOML basic string


def starter_policy(results: Any, *, limit: int | None) -> str:
    """A starter gate policy for a run: one rule per task's primary metric, ``inconclusive = "warn"``.

    Margins: 5 points for a metric reported in percent (``scale`` 100), else 5% of the baseline value
    (``margin_relative = 0.05``). ``min_samples`` is the number of samples each task was evaluated on
    (at most 50), so a candidate run on a smaller subset is an error rather than a meaningless pass.
    """
    lines = [
        "# Starter gate policy written by `mmgpt-eval gate init`; edit the margins to what matters to you.",
        "# A rule fails (exit 1) only when the candidate is worse than the stored baseline by more than its",
        "# margin with 95% one-sided confidence. `inconclusive` = the interval crosses the margin: not proven",
        '# worse, not proven within it either; "warn" keeps exit code 0 but flags it ("pass" / "fail").',
        "[defaults]",
        "confidence = 0.95",
        'inconclusive = "warn"',
        "",
    ]
    for name, tr in results.tasks.items():
        metric = tr.primary_metric
        info = (tr.metric_info or {}).get(metric, {})
        if not metric or metric not in tr.metrics:
            continue
        higher = bool(info.get("higher_is_better", True))
        scale = info.get("scale")
        n = int(tr.n_samples or 0)
        lines += [
            "[[rule]]",
            f"task = {_toml_str(name)}",
            f"metric = {_toml_str(metric)}",
            f'direction = "{"higher" if higher else "lower"}"',
        ]
        if scale == 100 or info.get("unit") == "%":
            lines.append("margin = 5.0            # percentage points")
        else:
            lines.append("margin_relative = 0.05  # 5% of the baseline value")
        lines.append(f"min_samples = {max(1, min(n, 50))}")
        lines.append("")
    return "\n".join(lines)


def run_config(args: argparse.Namespace, tasks: list[str]) -> str:
    """The run config (``mmgpt-eval run --config``) that evaluates a candidate on the baseline's subset."""
    lines = [
        "# Fixed CI subset written by `mmgpt-eval gate init` (keys are `mmgpt-eval run` flags).",
        "# Evaluate a candidate: mmgpt-eval run --config THIS_FILE --ckpt CHECKPOINT --output-dir OUT"
        " --overwrite --no-report",
    ]
    if args.model:
        lines.append(f"model = {_toml_str(args.model)}")
    lines += [
        "tasks = [" + ", ".join(_toml_str(t) for t in tasks) + "]",
        f"limit = {args.limit}" if args.limit is not None else "# limit: none (every sample)",
        f"seed = {args.seed}",
        f"batch_size = {args.batch_size}",
        "no_progress = true",
        "",
    ]
    return "\n".join(lines)


def portable_paths(value: Any, folder: Path) -> Any:
    """``value`` with every absolute path string made relative to ``folder`` (nested dicts and lists
    walked): a committed baseline then names the model files and checkpoint the way they lie beside
    it, not where they lay on the machine that made it."""
    if isinstance(value, dict):
        return {k: portable_paths(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [portable_paths(v, folder) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and len(value) > 1:
        return os.path.relpath(value, folder)
    return value


def next_steps(args: argparse.Namespace, out: Path, open_flamingo_install: str) -> list[str]:
    """What to do after `gate init`, for the CI job of the training repository (printed)."""
    config = args.config_out or "RUN_CONFIG"
    policy = f" --policy {args.policy_out}" if args.policy_out else ""
    return [
        "next steps:",
        f"  1. commit {' '.join(str(p) for p in (out, args.policy_out, args.config_out) if p)}",
        "  2. in CI, install mmgpt-eval with the tested set, then open-flamingo on its own:",
        '       pip install -c CONSTRAINTS "mmgpt-eval @ git+https://github.com/<org>/mmgpt-eval"  '
        "(CONSTRAINTS: constraints.txt of the same mmgpt-eval commit)",
        f"       {open_flamingo_install}",
        "  3. for every candidate checkpoint:",
        f"       mmgpt-eval run --config {config} --ckpt CANDIDATE --output-dir ci-out --overwrite --no-report",
        f"       mmgpt-eval gate --baseline {out} --candidate ci-out{policy} --markdown ci-out/gate.md",
    ]


def run_init(args: argparse.Namespace) -> int:
    from ..api import evaluate

    if not args.output:
        raise UserError("gate init: --output DIR (the baseline folder to create) is required")
    if not args.tasks:
        raise UserError("gate init: --tasks a,b (the fixed subset) is required")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"gate init: --limit must be at least 1, got {args.limit}")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    out = Path(args.output)
    extra = [(args.policy_out, "--policy-out file"), (args.config_out, "--config-out file")]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.force:
            raise UserError(f"{out}: a baseline already exists there; pass --force to replace it")
        if not out.is_dir() or not (out / "results.json").is_file():
            raise UserError(f"{out}: exists and is not a run folder (no results.json); refusing to replace it")
        shutil.rmtree(out)
    for path, what in extra:
        if path:
            if Path(path).exists() and not args.force:
                raise UserError(f"{path}: already exists; pass --force to replace it")
            check_output_file(path, what)
    res = evaluate(
        args.model,
        args.ckpt,
        tasks,
        output_dir=out,
        limit=args.limit,
        seed=args.seed,
        batch_size=args.batch_size,
        report=False,
        progress=True,  # a bar with rate and ETA on a terminal, periodic log lines in CI
    )
    from ..compat import OPEN_FLAMINGO_INSTALL  # loaded already: evaluate built the model
    from ..results import RunResults

    if isinstance(res, RunResults):  # one checkpoint: the stored baseline (a series has no single one)
        res.model = portable_paths(res.model, out.resolve())
        res.save(out / "results.json")
    print(f"baseline: {out}")
    if args.policy_out:
        Path(args.policy_out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.policy_out, starter_policy(res, limit=args.limit))
        print(f"policy: {args.policy_out}")
    if args.config_out:
        Path(args.config_out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.config_out, run_config(args, tasks))
        print(f"config: {args.config_out}")
    print("\n".join(next_steps(args, out, OPEN_FLAMINGO_INSTALL)))
    return 0
