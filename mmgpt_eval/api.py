"""The library entry point: :func:`evaluate` does what ``mmgpt-eval run`` does, for Python users and
for the CLI alike (the CLI only parses arguments and prints).

    import mmgpt_eval
    res = mmgpt_eval.evaluate(model="tiny-openflamingo", ckpt="tiny-mmgpt", tasks=["easyvqa", "counting"],
                              limit=50, output_dir="out", baseline="tiny-openflamingo")
    res.tasks["easyvqa"].metrics["accuracy"]

Steps, in order: choose the base model (from the checkpoint when no model is given) -> find the tasks,
fill their data from the data root, load and subset their samples (every data problem fails here,
before a model is loaded) -> join torchrun's process group -> load the model (once; a checkpoint
series swaps adapters) -> run the tasks -> evaluate or reuse the baseline and compare -> report.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import distributed
from .errors import UserError
from .results import RunResults

log = logging.getLogger("mmgpt_eval")

# the tiny MultiModal-GPT made by `make reproduce` (shipped in the package) on 200 easy-VQA questions
EMBEDDED_DEFAULT: dict[str, Any] = {"model": "tiny-openflamingo", "ckpt": "tiny-mmgpt", "tasks": "easyvqa,easyvqa-mc", "limit": 200}
DEFAULT_OUTPUT_DIR = "mmgpt-eval-out"


@dataclass
class LoadOptions:
    """How to load: device/precision overrides and the checkpoint safety switches."""

    device: str | None = None
    precision: str | None = None
    allow_partial: bool = False
    trust_checkpoint: bool = False
    lora_alpha: float | None = None
    allow_nonfinite: bool = False  # load checkpoints holding NaN/inf values (loud warning) instead of refusing

    def spec_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in (("precision", self.precision), ("device", self.device)) if v}


@dataclass
class SeriesResults:
    """A checkpoint series: one run per checkpoint (``OUTDIR/<name>/``) and ``OUTDIR/series.json``."""

    runs: list[RunResults]
    entries: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None


def load(model: Any, ckpt: Any = None, options: LoadOptions | None = None):
    """A model spec (preset name, TOML path or ModelSpec) + optional checkpoint -> LoadedModel."""
    from .model.build import load_model
    from .model.checkpoint import allow_nonfinite_tensors
    from .model.spec import ModelSpec, load_spec

    o = options or LoadOptions()
    if isinstance(model, ModelSpec):  # e.g. chosen from the checkpoint
        spec = dataclasses.replace(model, **o.spec_overrides())
        spec.validate(spec.source or spec.name)
    else:
        spec = load_spec(model, o.spec_overrides())
    with allow_nonfinite_tensors(o.allow_nonfinite):
        return load_model(spec, ckpt, allow_partial=o.allow_partial, trust_checkpoint=o.trust_checkpoint,
                          lora_alpha=o.lora_alpha)


def choose_base_model(ckpt: str, trust_checkpoint: bool = False):
    """The base model a checkpoint belongs to (its stored spec, a PEFT config naming a preset, or the
    paper's base for MultiModal-GPT trainer files), with the reason."""
    from .model.checkpoint import read_checkpoint
    from .model.resolve import choose_base
    from .series import expand_checkpoints

    choice = choose_base(read_checkpoint(expand_checkpoints(ckpt)[0], trust=trust_checkpoint))
    log.info("base model: %s (%s)", choice.spec.name, choice.reason)
    return choice


def prepare_tasks(names: str | Sequence[str], cfg, task_options: dict[str, Any] | None = None,
                  data_root: str | os.PathLike | None = None, include_paths: Sequence[str] = ()) -> list:
    """Find, configure and load the tasks; every data problem is raised here, before any model loads."""
    from .datapaths import apply_layout, data_root as default_root
    from .runner import prepare_task
    from .taskregistry import discover, normalize_options, resolve

    classes = discover(list(include_paths))
    wanted = resolve(names.split(",") if isinstance(names, str) else list(names), classes)
    options = normalize_options(task_options or {}, classes)
    root = default_root(data_root)
    prepared = []
    for n in wanted:
        task = classes[n](dict(options))
        filled = apply_layout(task, root)
        if filled:
            log.info("%s: data from the data root %s (%s)", n, root, ", ".join(filled))
        prepared.append(prepare_task(task, cfg))
    return prepared


def evaluate(model: Any = None, ckpt: str | os.PathLike | None = None, tasks: str | Sequence[str] | None = None, *,
             output_dir: str | os.PathLike | None = None, limit: int | None = None, label: str | None = None,
             baseline: str | os.PathLike | None = None, intersect: bool = False,
             template: str | None = None, num_fewshot: int = 0, fewshot_zero_mode: str = "text-demos",
             fewshot_selection: str = "random", history_mode: str = "self", seed: int | None = None,
             generation: dict[str, Any] | None = None, batch_size: int = 8, share_prefix: bool = True,
             task_options: dict[str, Any] | None = None, data_root: str | os.PathLike | None = None,
             include_paths: Sequence[str] = (), load_options: LoadOptions | None = None, report: bool = True,
             progress: bool = True, argv: Sequence[str] | None = None,
             log_to: str | Sequence[str] | None = None, protocol: str = "mmgpt-eval",
             of_num_samples: int | None = None, of_query_set_size: int | None = None, trials: int = 1,
             rices_encoder: str = "model") -> RunResults | SeriesResults | None:
    """Evaluate ``model`` (+ ``ckpt``: one checkpoint, or a glob / folder of several) on ``tasks``.

    ``model``: preset name, model-spec TOML or ModelSpec; None with a checkpoint: the checkpoint's base;
    None with neither: the embedded default (tiny MultiModal-GPT on 200 easy-VQA questions).
    ``baseline``: a model spec evaluated on the same samples and settings without a checkpoint, or an
    earlier run folder; both are stored side by side and compared. ``generation``: overrides of the
    tasks' decoding settings (``max_new_tokens``, ``num_beams``...). ``task_options``: ``{"vqav2":
    {"questions": ...}}`` or flat keys (``vqav2_questions``). ``batch_size`` 0 means auto.
    ``protocol``: ``"mmgpt-eval"`` or ``"openflamingo"`` (OpenFlamingo's evaluate.py exactly; ``seed``
    defaults to its 42, ``of_num_samples`` / ``of_query_set_size`` are its --num_samples / --query_set_size;
    :mod:`mmgpt_eval.openflamingo_protocol`). ``seed`` otherwise defaults to 0. ``trials``: evaluate
    with seeds ``seed``, ``seed+1``, ... into ``OUTDIR/trials/seed-<s>/`` and report each metric's mean
    and (population) standard deviation over them, as OpenFlamingo's ``--num_trials`` does.
    ``rices_encoder``: ``"model"`` (the model's own vision encoder) or ``"openclip:ARCH:PRETRAINED"``.
    ``log_to``: experiment trackers (``"mlflow[:URI]"``, ``"wandb[:PROJECT]"``; a list or comma-separated)
    that get the metrics, per-task tables, report and settings once everything is written
    (:mod:`mmgpt_eval.trackers`; a missing optional package fails before anything runs).
    Returns the results (a :class:`SeriesResults` for several checkpoints); None on torchrun ranks
    other than 0, which write nothing.
    """
    from .lock import output_lock
    from .model.checkpoint import allow_nonfinite_tensors
    from .runner import RunConfig
    from .trackers import check_targets, parse_targets

    trackers = parse_targets(log_to)
    check_targets(trackers)  # a missing tracker package fails here, before data or model
    lo = load_options or LoadOptions()
    # --allow-nonfinite for every checkpoint read below (choosing the base, loading, series swaps)
    with allow_nonfinite_tensors(lo.allow_nonfinite):
        embedded = model is None and tasks is None and ckpt is None
        base_choice = None
        if model is None and ckpt:
            base_choice = choose_base_model(str(ckpt), lo.trust_checkpoint)
            model = base_choice.spec
        if model is None:
            model, ckpt = EMBEDDED_DEFAULT["model"], ckpt or EMBEDDED_DEFAULT["ckpt"]
        if tasks is None:
            tasks = EMBEDDED_DEFAULT["tasks"]
        if limit is None and embedded:
            limit = EMBEDDED_DEFAULT["limit"]
            log.info("no model/tasks given: running the embedded default (%s + %s on %s, %d samples)",
                     model, ckpt, tasks, limit)
        if num_fewshot < 0:
            raise UserError("--num-fewshot must be >= 0")
        from .openflamingo_protocol import DEFAULT_QUERY_SET_SIZE, DEFAULT_TRIAL_SEEDS, PROTOCOLS

        if protocol not in PROTOCOLS:
            raise UserError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
        if protocol != "openflamingo" and (of_num_samples is not None or of_query_set_size is not None):
            raise UserError("--of-num-samples / --of-query-set-size need --protocol openflamingo")
        if seed is None:
            seed = DEFAULT_TRIAL_SEEDS[0] if protocol == "openflamingo" else 0
        if trials < 1:
            raise UserError("--trials must be at least 1")
        if rices_encoder != "model":
            from .rices import parse_openclip_spec

            parse_openclip_spec(rices_encoder)  # a malformed spec fails before anything loads
        if trials > 1 and baseline:
            raise UserError("--trials with --baseline is not supported; evaluate the baseline with the same --trials "
                            "into its own folder and compare the two")
        cfg = RunConfig(output_dir=Path(output_dir or DEFAULT_OUTPUT_DIR), limit=limit, batch_size=batch_size,
                        num_fewshot=num_fewshot, fewshot_zero_mode=fewshot_zero_mode, template=template, seed=seed,
                        history_mode=history_mode, fewshot_selection=fewshot_selection,
                        protocol=protocol, of_num_samples=of_num_samples,
                        of_query_set_size=of_query_set_size or DEFAULT_QUERY_SET_SIZE, rices_encoder=rices_encoder,
                        generation_overrides=dict(generation or {}), argv=list(argv or []), progress=progress,
                        share_prefix=share_prefix)
        if label:
            cfg.extra_run_info["label"] = label
        if base_choice is not None:
            cfg.extra_run_info["base_model_choice"] = base_choice.to_dict()
        with output_lock(cfg.output_dir, cfg.argv or None):  # one run per folder; orphan temporaries removed
            out: RunResults | SeriesResults | None
            if trials > 1:
                out = _evaluate_trials(cfg, trials, model, ckpt, tasks, lo, task_options, data_root, include_paths,
                                       report)
            else:
                out = _evaluate_in_folder(cfg, model, ckpt, tasks, lo, baseline, intersect, task_options, data_root,
                                          include_paths, report)
            if out is not None and trackers:  # rank 0 only (other ranks get None), after results and report
                from .trackers import log_to_trackers

                log_to_trackers(trackers, out, cfg.output_dir)
            return out


def _evaluate_in_folder(cfg, model: Any, ckpt: Any, tasks: str | Sequence[str], lo: LoadOptions,
                        baseline: Any, intersect: bool, task_options: dict[str, Any] | None,
                        data_root: Any, include_paths: Sequence[str], report: bool) -> RunResults | SeriesResults | None:
    """:func:`evaluate` once its output folder is locked: data first, then the model(s)."""
    from .runner import run_evaluation

    prepared = prepare_tasks(tasks, cfg, task_options, data_root, include_paths)
    baseline_run = earlier_run(baseline) if baseline else None
    if baseline_run is not None:
        check_baseline_settings(baseline_run, prepared, cfg)
    device = distributed.init_for_eval(lo.device)
    if device:
        lo = dataclasses.replace(lo, device=device)
    ckpts = _expand(ckpt)
    if len(ckpts) > 1:
        if baseline:
            raise UserError("--baseline is not supported with a checkpoint series; compare the series folders instead")
        return evaluate_series(model, ckpts, prepared, cfg, lo, report)
    loaded = load(model, ckpts[0] if ckpts else None, lo)
    results = run_evaluation(prepared, loaded, cfg)
    if results is None:  # a torchrun rank other than 0: rank 0 writes everything
        return None
    results.path = cfg.output_dir / "results.json"
    if baseline:
        del loaded
        results = attach_baseline(results, prepared, cfg, str(baseline), baseline_run, lo, intersect)
    if report:
        write_run_report(results, cfg.output_dir)
    return results


def _evaluate_trials(cfg, trials: int, model: Any, ckpt: Any, tasks: str | Sequence[str], lo: LoadOptions,
                     task_options: dict[str, Any] | None, data_root: Any, include_paths: Sequence[str],
                     report: bool) -> RunResults | None:
    """OpenFlamingo's trials: the model loaded once, one complete run per seed in OUTDIR/trials/seed-<s>/
    (each resumable), then OUTDIR/results.json with every metric's mean over the trials."""
    from .runner import run_evaluation

    seeds = [cfg.seed + i for i in range(trials)]
    folders = [cfg.output_dir / "trials" / f"seed-{s}" for s in seeds]
    prepared = [prepare_tasks(tasks, dataclasses.replace(cfg, seed=s, output_dir=f), task_options, data_root,
                              include_paths) for s, f in zip(seeds, folders)]  # all data checked before the model
    device = distributed.init_for_eval(lo.device)
    if device:
        lo = dataclasses.replace(lo, device=device)
    ckpts = _expand(ckpt)
    if len(ckpts) > 1:
        raise UserError("--trials is not supported with a checkpoint series")
    loaded = load(model, ckpts[0] if ckpts else None, lo)
    runs = []
    for s, f, pts in zip(seeds, folders, prepared):
        log.info("trial seed %d -> %s", s, f)
        r = run_evaluation(pts, loaded, dataclasses.replace(cfg, seed=s, output_dir=f))
        if r is not None:
            r.path = f / "results.json"
            runs.append(r)
    if not runs:  # a torchrun rank other than 0
        return None
    results = combine_trials(runs, seeds, cfg.output_dir)
    results.save(cfg.output_dir / "results.json")
    results.path = cfg.output_dir / "results.json"
    if report:
        write_run_report(results, cfg.output_dir)
    return results


def combine_trials(runs: list[RunResults], seeds: list[int], folder: Path) -> RunResults:
    """One RunResults for several trials: each metric is the mean over the trials (NaN-aware, as
    OpenFlamingo's np.nanmean), ``breakdown["trials"]`` has every trial's value and the standard
    deviation (np.nanstd); per-sample records are the first trial's (named in the notes)."""
    import math
    import statistics

    first = runs[0]
    combined = RunResults.from_dict(first.to_dict())
    combined.run["trials"] = {"seeds": seeds, "folders": [f"trials/seed-{s}" for s in seeds]}
    combined.run["output_dir"] = str(folder)
    for name, tr in combined.tasks.items():
        values: dict[str, list[float | None]] = {m: [r.tasks[name].metrics.get(m, float("nan")) for r in runs]
                                          for m in tr.metrics}
        mean: dict[str, float | None] = {}
        std: dict[str, float] = {}
        for m, vs in values.items():
            finite = [v for v in vs if isinstance(v, (int, float)) and not math.isnan(v)]
            mean[m] = round(statistics.fmean(finite), 4) if finite else float("nan")
            std[m] = round(statistics.pstdev(finite), 4) if finite else float("nan")
        tr.metrics = mean
        tr.breakdown = {**tr.breakdown, "trials": {"seeds": seeds, "values": values, "mean": mean, "std": std}}
        tr.samples_file = f"trials/seed-{seeds[0]}/{tr.samples_file}"
        tr.notes = list(tr.notes) + [
            f"{len(seeds)} trials (seeds {', '.join(map(str, seeds))}): metrics are the mean over trials, std in "
            f"breakdown.trials; per-sample records (compare, gate, report) are trial seed {seeds[0]}'s"]
        tr.timing = {**tr.timing, "wall_s": round(sum(r.tasks[name].timing.get("wall_s") or 0 for r in runs), 3)}
    return combined


def _expand(ckpt: Any) -> list[Any]:
    if not ckpt:
        return []
    from .series import expand_checkpoints

    return expand_checkpoints(str(ckpt))


def evaluate_series(model: Any, ckpts: list[Path], prepared: list, cfg, lo: LoadOptions,
                    report: bool = True) -> SeriesResults | None:
    """Load the base once, swap checkpoints, evaluate each into OUTDIR/<name>/, write series.json."""
    from .compare import step_from_metadata
    from .model.checkpoint import read_checkpoint
    from .runner import run_evaluation
    from .series import CheckpointSwapper, step_of_path, write_series

    loaded = load(model, None, lo)
    swapper = CheckpointSwapper(loaded)
    out = SeriesResults(runs=[])
    for ck in ckpts:
        info = read_checkpoint(ck, trust=lo.trust_checkpoint)
        swapper.apply(info, lo.allow_partial, lo.lora_alpha)
        name = ck.stem if ck.is_file() else ck.name
        step = step_from_metadata(info.metadata)
        step = step_of_path(Path(info.path)) if step is None else step
        log.info("checkpoint %s (step %g)", ck, step)
        results = run_evaluation(prepared, loaded, dataclasses.replace(cfg, output_dir=cfg.output_dir / name))
        if results is None:
            continue
        results.path = cfg.output_dir / name / "results.json"
        out.runs.append(results)
        out.entries.append({"checkpoint": str(ck), "name": name, "step": step, "sha256": info.sha256,
                            "results": f"{name}/results.json",
                            "metrics": {t: tr.metrics for t, tr in results.tasks.items()}})
    if not out.entries:
        return None
    out.path = write_series(cfg.output_dir, out.entries)
    if report:
        from .report import write_report

        write_report(cfg.output_dir / "report.html", out.runs)
        log.info("report: %s", (cfg.output_dir / "report.html").resolve())
    return out


# ------------------------------------------------------------------------------------------ baseline
def earlier_run(ref: str | os.PathLike) -> RunResults | None:
    """An earlier run folder / results.json, or None when ``ref`` is a model spec."""
    p = Path(ref)
    if (p.is_dir() and (p / "results.json").is_file()) or (p.is_file() and p.suffix == ".json"):
        return RunResults.load(p)
    if p.is_dir():
        raise UserError("baseline folder has no results.json", p)
    return None


def check_baseline_settings(base: RunResults, prepared: list, cfg) -> None:
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
        if (base.run.get("protocol") or "mmgpt-eval") != cfg.protocol:
            diffs.append(f"protocol {base.run.get('protocol') or 'mmgpt-eval'} vs {cfg.protocol}")
        if diffs:
            raise UserError(f"the baseline run used different settings for task {pt.task.name}: {', '.join(diffs)}",
                            base.path)


def attach_baseline(results: RunResults, prepared: list, cfg, source: str, baseline_run: RunResults | None,
                    lo: LoadOptions, intersect: bool) -> RunResults:
    """Evaluate (or reuse) the baseline, compare, and store both side by side in results.json."""
    from .compare import compare_runs
    from .model.spec import load_spec
    from .runner import run_evaluation

    if baseline_run is None:
        log.info("evaluating the baseline %s (no checkpoint) on the same samples", source)
        base_cfg = dataclasses.replace(cfg, output_dir=cfg.output_dir / "baseline",
                                       extra_run_info={k: v for k, v in cfg.extra_run_info.items()
                                                       if k not in ("label", "base_model_choice")})
        run_evaluation(prepared, load(load_spec(source, lo.spec_overrides()), None, lo), base_cfg)
        baseline_run = RunResults.load(base_cfg.output_dir)
        kind = "model"
    else:
        kind = "run"
    comps = compare_runs(baseline_run, results, intersect=intersect)
    # relative to this run's folder (so the pair can move together), whatever the working directory
    assert baseline_run.path is not None  # read from (or written to) a results file
    rel = Path(os.path.relpath(Path(baseline_run.path).resolve(), cfg.output_dir.resolve()))
    results.baseline = {"source": source, "kind": kind, "results": str(rel),
                        "comparisons": [c.to_dict() for c in comps]}
    results.save(cfg.output_dir / "results.json")
    return RunResults.load(cfg.output_dir)


def baseline_of(results: RunResults) -> RunResults | None:
    """The baseline run stored beside ``results`` (``results.baseline``), if any."""
    if not results.baseline or results.run_dir is None:
        return None
    p = Path(results.baseline["results"])
    return RunResults.load(p if p.is_absolute() else results.run_dir / p)


def write_run_report(results: RunResults, out_dir: Path) -> Path:
    from .report import write_report

    path = write_report(out_dir / "report.html", [results], baseline=baseline_of(results))
    log.info("report: %s", path.resolve())
    return path
