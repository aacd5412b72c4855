"""``mmgpt-eval run``: evaluate a model (+ checkpoint) on tasks; results.json, per-sample logs, report.

With neither --model nor --tasks nor --ckpt it runs the embedded default: the tiny MultiModal-GPT on
easy-VQA (a fixed 200-question subset), so the whole path can be seen working offline.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ..api import DEFAULT_OUTPUT_DIR, LoadOptions, SeriesResults, evaluate
from ..errors import UserError
from ..io import read_toml
from .common import add_generation_args, add_model_args, check_sampling_flags, int_arg, output_dir_arg

log = logging.getLogger("mmgpt_eval")


def include_paths_from_argv(argv: list[str]) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == "--include-path" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--include-path="):
            out.append(a.split("=", 1)[1])
    return out


def add_task_option_args(p: argparse.ArgumentParser, include_paths: list[str]) -> None:
    """Every task's declared options as flags (shared keys once)."""
    from ..taskregistry import discover

    try:
        tasks = discover(include_paths)
    except UserError:
        tasks = discover([])  # reported properly when the command runs
    group = p.add_argument_group("task options (data paths etc.; also settable as [task] tables in --config)")
    seen: set[str] = set()
    for name in sorted(tasks):
        for o in tasks[name].OPTIONS:
            key = o.key(name)
            if key not in seen:
                seen.add(key)
                o.add_to(group, name)


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser("run", help="evaluate a model on tasks (the main command)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--tasks", default=None, help="comma-separated task names or aliases (see `mmgpt-eval tasks`)")
    p.add_argument("--output-dir", type=output_dir_arg, default=None, help=f"results folder (default {DEFAULT_OUTPUT_DIR}); re-running "
                                                      "the same command there resumes")
    p.add_argument("--label", default=None, help="what to call this run in reports and comparisons (default: the "
                                                 "checkpoint's or the model's name)")
    p.add_argument("--limit", type=int_arg(1), default=None, help="evaluate a fixed subset of N samples per task")
    p.add_argument("--num-fewshot", type=int_arg(0), default=None, help="few-shot demos (OpenFlamingo templates)")
    p.add_argument("--fewshot-zero-mode", choices=["text-demos", "none"], default=None,
                   help="what 0-shot means for few-shot templates: OpenFlamingo's 2 text-only demos "
                        "(default) or no demos")
    p.add_argument("--fewshot-selection", choices=["random", "rices"], default=None,
                   help="few-shot demos: random per item (seeded by seed + item id; default) or RICES (the most "
                        "similar train images by the model's vision encoder, most similar last)")
    p.add_argument("--rices-encoder", default=None, metavar="ENCODER",
                   help="RICES image features: model (default: the model's own vision encoder) or "
                        "openclip:ARCH:PRETRAINED, e.g. OpenFlamingo's openclip:ViT-L-14:openai (a tag needs its "
                        "weights downloadable or cached; offline, give a local weights file)")
    p.add_argument("--template", default=None, help="prompt template (default: each task's)")
    p.add_argument("--protocol", choices=["mmgpt-eval", "openflamingo"], default=None,
                   help="mmgpt-eval (default): this harness's protocol; openflamingo: OpenFlamingo's evaluate.py "
                        "exactly -- its templates, decoding, answer cleanup, VQA normalisation, OK-VQA stemming, "
                        "seeded subset and demo draws (seed 42 unless --seed), RICES over the whole train split "
                        "(README: Comparing with OpenFlamingo)")
    p.add_argument("--trials", type=int_arg(1), default=None,
                   help="evaluate N times with seeds SEED, SEED+1, ... (OUTDIR/trials/seed-<s>/) and report each "
                        "metric's mean and standard deviation (OpenFlamingo's --num_trials)")
    p.add_argument("--of-num-samples", type=int_arg(1), default=None,
                   help="--protocol openflamingo: evaluate N samples drawn as OpenFlamingo's --num_samples draws them")
    p.add_argument("--of-query-set-size", type=int_arg(1), default=None,
                   help="--protocol openflamingo: size of the random demo query set (OpenFlamingo's "
                        "--query_set_size, default 2048)")
    p.add_argument("--history-mode", choices=["self", "teacher"], default=None,
                   help="dialogue history: the model's own answers (self, default) or the references (teacher)")
    p.add_argument("--include-path", action="append", default=[], metavar="DIR", help="extra task plugin folder")
    p.add_argument("--task-config", default=None, metavar="TOML",
                   help="task options as [task] tables, e.g. [vqav2] questions = \"...\"")
    p.add_argument("--baseline", default=None, metavar="SPEC_OR_RUN",
                   help="also evaluate this baseline (a model spec, no checkpoint) on exactly the same samples and "
                        "settings, or reuse an earlier run folder; results are stored side by side")
    p.add_argument("--intersect", action="store_true", help="with a baseline run on other samples: compare the common ones")
    p.add_argument("--no-report", action="store_true", help="do not write OUTDIR/report.html")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="where tasks find their data (default $MMGPT_EVAL_DATA or ~/.cache/mmgpt-eval/data); "
                        "see `mmgpt-eval data check`")
    p.add_argument("--config", default=None, metavar="TOML",
                   help="a run config: top-level keys are these flags, [task] tables task options; flags win")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--log-to", action="append", default=[], metavar="TRACKER",
                   help="also send metrics, per-task tables, the report and the run's settings to an experiment "
                        "tracker once the run is written: mlflow[:URI] (e.g. mlflow:file:./mlruns, "
                        "mlflow:http://host:5000) or wandb[:PROJECT]; repeatable or comma-separated; needs "
                        "pip install 'mmgpt-eval[mlflow]' / '[wandb]'")
    add_generation_args(p)
    add_task_option_args(p, include_paths_from_argv(argv or sys.argv[1:]))
    p.set_defaults(seed=None)  # 0, or OpenFlamingo's 42 with --protocol openflamingo
    p.set_defaults(func=run, _actions={a.dest: a for a in p._actions}, _argv=argv)


def _resolve_table_paths(tables: dict[str, Any], base: Path) -> dict[str, Any]:
    """``[task]`` table values that name an existing path relative to the config file's folder."""
    out: dict[str, Any] = {}
    for section, values in tables.items():
        if not isinstance(values, dict):
            raise UserError(f"top-level key {section!r} must be a [task] table", base)
        out[section] = {k: str((base / v).resolve()) if isinstance(v, str) and not Path(v).is_absolute()
                        and (base / v).exists() else v for k, v in values.items()}
    return out


def task_options(args: argparse.Namespace, config_tables: dict[str, Any]) -> dict[str, Any]:
    """--task-config tables, then --config tables, then flags (flags win), as the API takes them."""
    opts: dict[str, Any] = {}
    if getattr(args, "task_config", None):
        opts.update(_resolve_table_paths(read_toml(args.task_config), Path(args.task_config).resolve().parent))
    if config_tables:
        base = Path(args.config).resolve().parent if args.config else Path.cwd()
        for section, values in _resolve_table_paths(config_tables, base).items():
            opts.setdefault(section, {}).update(values)
    from ..taskregistry import discover

    flags = {}
    for cls in discover(args.include_path).values():
        for key in cls.option_keys():
            if getattr(args, key, None) is not None:
                flags[key] = getattr(args, key)
    return {**opts, **flags}


def _config_value(action: argparse.Action, key: str, value: Any, path: str) -> Any:
    """A run-config value checked exactly as the flag would be: the action's ``type`` and ``choices``
    (a TOML value of the right native type is passed as text through the same type function)."""
    flag = action.option_strings[-1] if action.option_strings else key
    if action.nargs == 0:  # store_true / store_false / count
        if not isinstance(value, bool):
            raise UserError(f"{key} = {value!r}: expected true or false (flag {flag})", path)
        return (not value) if isinstance(action, argparse._StoreFalseAction) else value
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        # action.type is never a registry name here (the parser is built with callables)
        return [_config_value(argparse.Action([], key, type=action.type, choices=action.choices),  # type: ignore[arg-type]
                              key, v, path)
                for v in values]
    if isinstance(value, (dict, list, bool)) or (action.type is None and not isinstance(value, str)):
        raise UserError(f"{key} = {value!r}: expected {'a string' if action.type is None else 'a single value'} "
                        f"(flag {flag})", path)
    if action.type is not None and callable(action.type):
        text = value if isinstance(value, str) else str(value)
        try:
            value = action.type(text)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
            why = str(e) if isinstance(e, argparse.ArgumentTypeError) else \
                f"expected {getattr(action.type, '__name__', 'a valid value')}"
            raise UserError(f"{key} = {text!r}: {why} (flag {flag})", path) from None
    if action.choices is not None and value not in action.choices:
        raise UserError(f"{key} = {value!r}: choose from {', '.join(map(str, action.choices))} (flag {flag})", path)
    return value


def apply_run_config(args: argparse.Namespace, parser_actions: dict[str, argparse.Action], argv: list[str]) -> dict:
    """``--config run.toml``: top-level keys are this command's flags (``tasks = ["coco", "vqa"]``,
    ``output_dir = "out"``; relative paths resolve against the file's folder), ``[task]`` tables are
    task options. Flags given on the command line win. Every value is checked with the flag's own
    argparse type and choices, so a bad value is one line naming the file and the key. Returns the tables."""
    if not args.config:
        return {}
    cfg = read_toml(args.config)
    base = Path(args.config).resolve().parent
    explicit = {a.dest for a in parser_actions.values()
                if any(tok == o or tok.startswith(o + "=") for tok in argv for o in a.option_strings)}
    for key, value in cfg.items():
        if isinstance(value, dict):
            continue
        dest = key.replace("-", "_")
        if dest not in parser_actions or dest in ("config", "func", "help"):
            raise UserError(f"unknown run option {key!r} (use the flag names of `mmgpt-eval run`, e.g. tasks, "
                            f"output_dir, limit)", args.config)
        if dest in explicit:
            continue
        if dest == "tasks" and isinstance(value, list):
            value = ",".join(map(str, value))
        if dest in ("model", "ckpt", "data_root", "output_dir", "baseline", "task_config") and isinstance(value, str):
            p = Path(value).expanduser()
            if not p.is_absolute() and (dest in ("data_root", "output_dir") or (base / p).exists()):
                value = str(base / p)
        value = _config_value(parser_actions[dest], key, value, args.config)
        setattr(args, dest, value)
    return {k: v for k, v in cfg.items() if isinstance(v, dict)}


def generation_overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = {k: getattr(args, k) for k in ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_k", "top_p")
           if getattr(args, k, None) is not None}
    if args.no_cache:
        out["use_cache"] = False
    return out


def run(args: argparse.Namespace) -> int:
    argv = sys.argv[1:] if args._argv is None else args._argv
    tables = apply_run_config(args, getattr(args, "_actions", {}), argv)
    try:  # combinations of flags (and config values) that no single flag's type can see
        check_sampling_flags(args)
    except UserError as e:
        if not args.config:
            raise
        raise UserError(f"{e} (flags and config combined)", args.config) from None
    results = evaluate(
        args.model, args.ckpt, args.tasks, output_dir=args.output_dir, limit=args.limit, label=args.label,
        baseline=args.baseline, intersect=args.intersect, template=args.template, num_fewshot=args.num_fewshot or 0,
        fewshot_zero_mode=args.fewshot_zero_mode or "text-demos", fewshot_selection=args.fewshot_selection or "random",
        history_mode=args.history_mode or "self", seed=args.seed, generation=generation_overrides(args),
        batch_size=args.batch_size, share_prefix=not args.no_share_prefix, task_options=task_options(args, tables),
        data_root=args.data_root, include_paths=args.include_path,
        load_options=LoadOptions(device=args.device, precision=args.precision, allow_partial=args.allow_partial,
                                 trust_checkpoint=args.trust_checkpoint, lora_alpha=args.lora_alpha,
                                 allow_nonfinite=args.allow_nonfinite),
        report=not args.no_report, progress=not args.no_progress, argv=argv, log_to=args.log_to,
        protocol=args.protocol or "mmgpt-eval", of_num_samples=args.of_num_samples,
        of_query_set_size=args.of_query_set_size, trials=args.trials or 1, rices_encoder=args.rices_encoder or "model")
    if results is None:  # a torchrun rank other than 0: rank 0 writes everything
        return 0
    if isinstance(results, SeriesResults):
        print_series(results.entries)
        print(f"series: {results.path}")
        assert results.path is not None  # results come back saved
        out_dir = results.path.parent
    else:
        if results.baseline:
            print_comparison(results.baseline["comparisons"])
        print_summary(results)
        print_published_numbers(results)
        print(f"results: {results.path}")
        assert results.run_dir is not None  # results come back saved
        out_dir = results.run_dir
    if not args.no_report:
        print(f"report: {(out_dir / 'report.html').resolve()}")
    return 0


# ------------------------------------------------------------------------------------------ printing
def print_series(entries) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="checkpoint series (metric vs step)", title_justify="left")
    t.add_column("step", justify="right")
    t.add_column("checkpoint")
    cols = [(task, m) for task, ms in entries[0]["metrics"].items() for m in ms]
    for task, m in cols:
        t.add_column(f"{task}/{m}", justify="right")
    for e in entries:
        vals = [e["metrics"].get(task, {}).get(m) for task, m in cols]
        t.add_row(f"{e['step']:g}", e["name"], *["-" if v is None else f"{v:.4g}" for v in vals])
    Console().print(t)


def print_comparison(comps: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="vs baseline (paired, 95% CI)", title_justify="left")
    for col in ("task", "metric", "baseline", "candidate", "delta", "95% CI", "p"):
        t.add_column(col, justify="left" if col in ("task", "metric") else "right")
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.4g}"

    for c in comps:
        t.add_row(c["task"], c["metric"], f(c.get("baseline")), f(c.get("candidate")), f(c.get("delta")),
                  "-" if c.get("ci_low") is None else f"[{c['ci_low']:.3g}, {c['ci_high']:.3g}]",
                  "-" if c.get("p_value") is None else f"{c['p_value']:.3g}")
    Console().print(t)


def print_published_numbers(results) -> None:
    """Published OpenFlamingo rows beside the run's numbers where task, preset, shots and protocol match."""
    from ..published import print_published

    print_published([results])


def print_summary(results) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..compare import run_label

    t = Table(title=f"mmgpt-eval results: {run_label(results)}", title_justify="left")
    for col in ("task", "metric", "value", "n", "template", "samples/s"):
        t.add_column(col, justify="right" if col in ("value", "n", "samples/s") else "left")
    for name, tr in results.tasks.items():
        first = True
        for metric, value in tr.metrics.items():
            unit = tr.metric_info.get(metric, {}).get("unit", "")
            sps = tr.timing.get("samples_per_s")
            t.add_row(name if first else "", metric, f"{value:.4g}{unit}" if isinstance(value, float) else str(value),
                      str(tr.n_samples) if first else "", tr.template["name"] if first else "",
                      f"{sps:.1f}" if first and sps else "")
            first = False
    Console().print(t)
