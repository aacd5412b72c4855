"""``mmgpt-eval run``: evaluate a model (+ checkpoint) on tasks; results.json, per-sample logs, report.

With neither --model nor --tasks it runs the embedded default: the tiny preset on easy-VQA
(a fixed 200-question subset), so the whole path can be seen working offline.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..io import read_toml
from .common import add_generation_args, add_model_args, load_from_args

log = logging.getLogger("mmgpt_eval")

# the tiny MultiModal-GPT made by `make reproduce` (shipped in the package) on 200 easy-VQA questions
EMBEDDED_DEFAULT = {"model": "tiny-openflamingo", "ckpt": "tiny-mmgpt", "tasks": "easyvqa", "limit": 200}
DEFAULT_OUTPUT_DIR = "mmgpt-eval-out"


def include_paths_from_argv(argv: list[str]) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == "--include-path" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--include-path="):
            out.append(a.split("=", 1)[1])
    return out


def add_task_option_args(p: argparse.ArgumentParser, include_paths: list[str]) -> None:
    from ..taskregistry import discover

    try:
        tasks = discover(include_paths)
    except UserError:
        tasks = discover([])  # reported properly when the command runs
    group = p.add_argument_group("task options (data paths etc.; also settable in --task-config)")
    seen: set[str] = set()
    for name in sorted(tasks):
        probe = argparse.ArgumentParser(add_help=False)
        tasks[name].add_arguments(probe.add_argument_group())
        for action in probe._actions:
            if action.dest in seen or action.dest == "help":
                continue
            seen.add(action.dest)
            kwargs: dict[str, Any] = {"dest": action.dest, "default": None, "help": action.help}
            if action.choices:
                kwargs["choices"] = action.choices
            if action.type:
                kwargs["type"] = action.type
            if action.nargs == 0:  # store_true-style flags
                group.add_argument(*action.option_strings, action="store_true", dest=action.dest, default=None,
                                   help=action.help)
            else:
                group.add_argument(*action.option_strings, **kwargs)


def register(sub: argparse._SubParsersAction, argv: list[str] | None = None) -> None:
    p = sub.add_parser("run", help="evaluate a model on tasks (the main command)", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--tasks", default=None, help="comma-separated task names or aliases (see `mmgpt-eval tasks`)")
    p.add_argument("--output-dir", default=None, help=f"results folder (default {DEFAULT_OUTPUT_DIR}); re-running "
                                                      "the same command there resumes")
    p.add_argument("--limit", type=int, default=None, help="evaluate a fixed subset of N samples per task")
    p.add_argument("--num-fewshot", type=int, default=None, help="few-shot demos (OpenFlamingo templates)")
    p.add_argument("--fewshot-zero-mode", choices=["text-demos", "none"], default=None,
                   help="what 0-shot means for few-shot templates: OpenFlamingo's 2 text-only demos "
                        "(default) or no demos")
    p.add_argument("--fewshot-selection", choices=["random", "rices"], default=None,
                   help="few-shot demos: random per item (seeded by seed + item id; default) or RICES (the most "
                        "similar train images by the model's vision encoder, most similar last)")
    p.add_argument("--template", default=None, help="prompt template (default: each task's)")
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
    add_generation_args(p)
    add_task_option_args(p, include_paths_from_argv(argv or sys.argv[1:]))
    p.set_defaults(func=run, _actions={a.dest: a for a in p._actions}, _argv=argv)


def _task_config_options(path: str | None, task_classes: dict) -> dict[str, Any]:
    """``[vqav2] questions = "q.json"`` -> ``{"vqav2_questions": "/abs/q.json"}`` (relative paths resolve
    against the config file's folder)."""
    if not path:
        return {}
    return _task_table_options(read_toml(path), task_classes, path)


def _task_table_options(cfg: dict, task_classes: dict, path) -> dict[str, Any]:
    base = Path(path).resolve().parent if path else Path.cwd()
    known = {n for cls in task_classes.values() for n in cls.option_names()}
    out: dict[str, Any] = {}
    for section, values in cfg.items():
        if not isinstance(values, dict):
            raise UserError(f"top-level key {section!r} must be a [task] table", path)
        for k, v in values.items():
            dest = k if k in known else f"{section}_{k}".replace("-", "_")
            if dest not in known:
                raise UserError(f"unknown option {k!r} in [{section}]", path)
            if isinstance(v, str) and (base / v).exists() and not Path(v).is_absolute():
                v = str((base / v).resolve())
            out[dest] = v
    return out


def collect_task_options(args: argparse.Namespace, task_classes: dict, tables: dict | None = None) -> dict[str, Any]:
    opts = _task_config_options(getattr(args, "task_config", None), task_classes)
    if tables:
        opts.update(_task_table_options(tables, task_classes, getattr(args, "config", None)))
    for cls in task_classes.values():
        for dest in cls.option_names():
            v = getattr(args, dest, None)
            if v is not None:
                opts[dest] = v  # flags override the config file
    return opts


def apply_run_config(args: argparse.Namespace, parser_actions: dict[str, argparse.Action], argv: list[str]) -> dict:
    """``--config run.toml``: top-level keys are this command's flags (``tasks = ["coco", "vqa"]``,
    ``output_dir = "out"``; relative paths resolve against the file's folder), ``[task]`` tables are
    task options. Flags given on the command line win."""
    if not args.config:
        return {}
    cfg = read_toml(args.config)
    base = Path(args.config).resolve().parent
    explicit = {a.dest for a in parser_actions.values()
                if any(tok == o or tok.startswith(o + "=") for tok in argv for o in a.option_strings)}
    tables = {k: v for k, v in cfg.items() if isinstance(v, dict)}
    for key, value in cfg.items():
        if isinstance(value, dict):
            continue
        dest = key.replace("-", "_")
        if dest not in parser_actions or dest in ("config", "func"):
            raise UserError(f"unknown run option {key!r} (use the flag names of `mmgpt-eval run`, e.g. tasks, "
                            f"output_dir, limit)", args.config)
        if dest in explicit:
            continue
        if dest == "tasks" and isinstance(value, list):
            value = ",".join(map(str, value))
        if dest == "batch_size" and value == "auto":
            value = 0
        if dest in ("model", "ckpt", "data_root", "output_dir", "baseline", "task_config") and isinstance(value, str):
            p = Path(value).expanduser()
            if not p.is_absolute() and (dest in ("data_root", "output_dir") or (base / p).exists()):
                value = str(base / p)
        setattr(args, dest, value)
    return tables


def resolve_base_model(args: argparse.Namespace):
    """--ckpt without --model: the base model the checkpoint belongs to (logged and recorded)."""
    from ..model.checkpoint import read_checkpoint
    from ..model.resolve import choose_base
    from ..series import expand_checkpoints

    first = expand_checkpoints(args.ckpt)[0]
    info = read_checkpoint(first, trust=args.trust_checkpoint)
    choice = choose_base(info)
    log.info("base model: %s -- %s", choice.spec.name, choice.reason)
    print(f"base model: {choice.spec.name} ({choice.reason})")
    return choice


def run(args: argparse.Namespace) -> int:
    from ..datapaths import apply_layout, data_root
    from ..runner import RunConfig, prepare_task, run_evaluation
    from ..taskregistry import discover, resolve

    config_tables = apply_run_config(args, getattr(args, "_actions", {}), sys.argv[1:] if args._argv is None else args._argv)
    embedded = args.model is None and args.tasks is None and args.ckpt is None
    base_choice = None
    if args.model is None and args.ckpt:
        base_choice = resolve_base_model(args)
        args.model = base_choice.spec
    if args.model is None:  # neither --model nor --ckpt: the embedded model
        args.model = EMBEDDED_DEFAULT["model"]
        if args.ckpt is None and EMBEDDED_DEFAULT.get("ckpt"):
            args.ckpt = EMBEDDED_DEFAULT["ckpt"]
    if args.tasks is None:
        args.tasks = EMBEDDED_DEFAULT["tasks"]
    limit = args.limit if args.limit is not None else (EMBEDDED_DEFAULT["limit"] if embedded else None)
    if embedded:
        log.info("no --model/--tasks: running the embedded default (%s%s on %s, %d samples)",
                 args.model, f" + {args.ckpt}" if args.ckpt else "", args.tasks, limit)
    task_classes = discover(args.include_path)
    names = resolve(args.tasks.split(","), task_classes)
    options = collect_task_options(args, task_classes, config_tables)
    overrides = {k: getattr(args, k) for k in ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_k",
                                              "top_p") if getattr(args, k, None) is not None}
    if args.no_cache:
        overrides["use_cache"] = False
    cfg = RunConfig(output_dir=Path(args.output_dir or DEFAULT_OUTPUT_DIR), limit=limit, batch_size=args.batch_size,
                    num_fewshot=args.num_fewshot or 0, fewshot_zero_mode=args.fewshot_zero_mode or "text-demos",
                    template=args.template, seed=args.seed, history_mode=args.history_mode or "self",
                    fewshot_selection=args.fewshot_selection or "random",
                    generation_overrides=overrides, argv=sys.argv[1:], progress=not args.no_progress,
                    share_prefix=not args.no_share_prefix)
    if base_choice is not None:
        cfg.extra_run_info["base_model_choice"] = base_choice.to_dict()
    if cfg.num_fewshot < 0:
        raise UserError("--num-fewshot must be >= 0")
    # every task's data is located and checked before the model is loaded
    root = data_root(args.data_root)
    tasks = []
    for n in names:
        task = task_classes[n](dict(options))
        filled = apply_layout(task, root)
        if filled:
            log.info("%s: data from the data root %s (%s)", n, root, ", ".join(filled))
        tasks.append(task)
    prepared = [prepare_task(t, cfg) for t in tasks]
    baseline_run = _baseline_run(args.baseline) if args.baseline else None
    if baseline_run is not None:
        check_baseline_settings(baseline_run, prepared, cfg)
    device = init_distributed_run(args)
    if args.ckpt:
        from ..series import expand_checkpoints

        ckpts = expand_checkpoints(args.ckpt)
        if len(ckpts) > 1:
            return run_checkpoint_series(args, prepared, cfg, ckpts, device)
    loaded = load_from_args(args, device=device)
    results = run_evaluation(prepared, loaded, cfg)
    if results is None:  # a torchrun rank other than 0: rank 0 writes everything
        return 0
    if args.baseline:
        del loaded
        results = attach_baseline(results, prepared, cfg, args, baseline_run)
    print_summary(results)
    log.info("results: %s", cfg.output_dir / "results.json")
    if not args.no_report:
        write_run_report(results, cfg.output_dir)
    return 0


def run_checkpoint_series(args, prepared, cfg, ckpts, device) -> int:
    """Load the base once, swap checkpoints, evaluate each into OUTDIR/<name>/, write series.json."""
    import dataclasses

    from ..model.checkpoint import read_checkpoint
    from ..runner import run_evaluation
    from ..series import CheckpointSwapper, step_of, write_series

    if args.baseline:
        raise UserError("--baseline is not supported with a checkpoint series; compare the series folders instead")
    loaded = load_from_args(args, ckpt=None, device=device)
    swapper = CheckpointSwapper(loaded)
    entries, runs = [], []
    for ck in ckpts:
        info = read_checkpoint(ck, trust=args.trust_checkpoint)
        swapper.apply(info, args.allow_partial, args.lora_alpha)
        name = ck.stem if ck.is_file() else ck.name
        sub = dataclasses.replace(cfg, output_dir=cfg.output_dir / name)
        log.info("checkpoint %s (step %g)", ck, step_of(info))
        results = run_evaluation(prepared, loaded, sub)
        if results is None:
            continue
        runs.append(results)
        entries.append({"checkpoint": str(ck), "name": name, "step": step_of(info), "sha256": info.sha256,
                        "results": f"{name}/results.json",
                        "metrics": {t: tr.metrics for t, tr in results.tasks.items()}})
    if entries:
        path = write_series(cfg.output_dir, entries)
        print_series(entries)
        log.info("series: %s", path)
        if not args.no_report:
            try:
                from ..report import write_report

                write_report(cfg.output_dir / "report.html", runs)
                print(f"report: {(cfg.output_dir / 'report.html').resolve()}")
            except ImportError:  # pragma: no cover
                pass
    return 0


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


def init_distributed_run(args) -> str | None:
    """Under torchrun: join the process group (nccl on GPU, gloo on CPU), pick this rank's device and
    split the CPU threads between the local ranks. Returns the device override, or None."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    use_cuda = torch.cuda.is_available() and (args.device in (None, "auto") or str(args.device).startswith("cuda"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return None  # CPU: the spec's device ("auto" -> cpu) stays as it is


def _baseline_run(ref: str):
    """An earlier run folder / results.json, or None when ``ref`` is a model spec."""
    from ..results import RunResults

    p = Path(ref)
    if (p.is_dir() and (p / "results.json").is_file()) or (p.is_file() and p.suffix == ".json"):
        return RunResults.load(p)
    if p.is_dir():
        raise UserError("baseline folder has no results.json", p)
    return None


def check_baseline_settings(base, prepared, cfg) -> None:
    """A baseline run must have used the same prompts and settings for every task."""
    for pt in prepared:
        tr = base.tasks.get(pt.task.name)
        if tr is None:
            raise UserError(f"the baseline run has no task {pt.task.name}", base.path)
        diffs = []
        if tr.template.get("sha256") != pt.template.sha256:
            diffs.append(f"template {tr.template.get('name')} vs {pt.template.name}")
        if tr.generation != pt.settings.to_dict():
            diffs.append("generation settings")
        if (tr.num_fewshot or 0) != cfg.num_fewshot:
            diffs.append(f"num_fewshot {tr.num_fewshot} vs {cfg.num_fewshot}")
        if tr.options != pt.task.public_options():
            diffs.append("task options")
        if diffs:
            raise UserError(f"the baseline run used different settings for task {pt.task.name}: {', '.join(diffs)}",
                            base.path)


def attach_baseline(results, prepared, cfg, args, baseline_run):
    """Evaluate (or reuse) the baseline, compare, and store both side by side in results.json."""
    import dataclasses

    from ..compare import compare_runs
    from ..model.build import load_model
    from ..model.spec import load_spec
    from ..results import RunResults
    from ..runner import run_evaluation
    from .common import spec_overrides

    if baseline_run is None:
        spec = load_spec(args.baseline, spec_overrides(args))
        log.info("evaluating the baseline %s (no checkpoint) on the same samples", args.baseline)
        base_cfg = dataclasses.replace(cfg, output_dir=cfg.output_dir / "baseline")
        base_loaded = load_model(spec, None)
        run_evaluation(prepared, base_loaded, base_cfg)
        baseline_run = RunResults.load(base_cfg.output_dir)
        kind = "model"
    else:
        kind = "run"
    results.path = cfg.output_dir / "results.json"
    comps = compare_runs(baseline_run, results, intersect=args.intersect)
    # relative to this run's folder (so the pair can move together), whatever the working directory
    rel = Path(os.path.relpath(Path(baseline_run.path).resolve(), cfg.output_dir.resolve()))
    results.baseline = {"source": args.baseline, "kind": kind, "results": str(rel),
                        "comparisons": [c.to_dict() for c in comps]}
    results.save(cfg.output_dir / "results.json")
    print_comparison(comps)
    return RunResults.load(cfg.output_dir)


def write_run_report(results, out_dir: Path) -> None:
    try:
        from ..report import write_report
    except ImportError:  # pragma: no cover - report module not available
        return
    from ..results import RunResults

    baseline = None
    if results.baseline:
        p = Path(results.baseline["results"])
        baseline = RunResults.load(p if p.is_absolute() else out_dir / p)
    path = out_dir / "report.html"
    write_report(path, [results], baseline=baseline)
    log.info("report: %s", path.resolve())
    print(f"report: {path.resolve()}")


def print_comparison(comps) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="vs baseline (paired, 95% CI)", title_justify="left")
    for col in ("task", "metric", "baseline", "candidate", "delta", "95% CI", "p"):
        t.add_column(col, justify="left" if col in ("task", "metric") else "right")
    for c in comps:
        f = (lambda v: "-" if v is None else f"{v:.4g}")
        t.add_row(c.task, c.metric, f(c.baseline), f(c.candidate), f(c.delta),
                  "-" if c.ci_low is None else f"[{c.ci_low:.3g}, {c.ci_high:.3g}]",
                  "-" if c.p_value is None else f"{c.p_value:.3g}")
    Console().print(t)


def print_summary(results) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="mmgpt-eval results", title_justify="left")
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
