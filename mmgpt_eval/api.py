"""The library entry point: :func:`evaluate` does what ``mmgpt-eval run`` does, for Python users and
for the CLI alike (the CLI only parses arguments and prints).

    import mmgpt_eval
    res = mmgpt_eval.evaluate(model="tiny-openflamingo", ckpt="tiny-mmgpt", tasks=["easyvqa", "counting"],
                              limit=50, output_dir="out", baseline="tiny-openflamingo")
    res.tasks["easyvqa"].metrics["accuracy"]

    cfg = mmgpt_eval.EvalConfig(tasks="easyvqa", limit=50)   # the same settings as one object
    res = mmgpt_eval.evaluate(cfg)

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
from typing import Any, Mapping, Sequence

from . import distributed
from .config import ALL, DEFAULT_OUTPUT_DIR, EvalConfig, LoadOptions, settings
from .errors import UserError
from .results import RunResults, read_run

log = logging.getLogger("mmgpt_eval")

# the tiny MultiModal-GPT made by `make reproduce` (shipped in the package) on 200 easy-VQA questions
EMBEDDED_DEFAULT: dict[str, Any] = {
    "model": "tiny-openflamingo",
    "ckpt": "tiny-mmgpt",
    "tasks": "easyvqa,easyvqa-mc",
    "limit": 200,
}
__all__ = ["DEFAULT_OUTPUT_DIR", "EMBEDDED_DEFAULT", "EvalConfig", "LoadOptions", "SeriesResults", "evaluate", "load"]


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
    from .model.validate import allow_suspicious_adapters

    o = options or LoadOptions()
    if isinstance(model, ModelSpec):  # e.g. chosen from the checkpoint
        spec = dataclasses.replace(model, **o.spec_overrides())
        spec.validate(spec.source or spec.name)
    else:
        spec = load_spec(model, o.spec_overrides())
    with allow_nonfinite_tensors(o.allow_nonfinite), allow_suspicious_adapters(o.allow_suspicious_adapter):
        return load_model(
            spec, ckpt, allow_partial=o.allow_partial, trust_checkpoint=o.trust_checkpoint, lora_alpha=o.lora_alpha
        )


def choose_base_model(ckpt: str, trust_checkpoint: bool = False):
    """The base model a checkpoint belongs to (its stored spec, a PEFT config naming a preset, or the
    paper's base for MultiModal-GPT trainer files), with the reason."""
    from .model.checkpoint import read_checkpoint
    from .model.resolve import choose_base
    from .series import expand_checkpoints

    choice = choose_base(read_checkpoint(expand_checkpoints(ckpt)[0], trust=trust_checkpoint))
    log.info("base model: %s (%s)", choice.spec.name, choice.reason)
    return choice


def prepare_tasks(
    names: str | Sequence[str],
    cfg,
    task_options: Mapping[str, Any] | None = None,
    data_root: str | os.PathLike | None = None,
    include_paths: Sequence[str] = (),
) -> list:
    """Find, configure and load the tasks; every data problem is raised here, before any model loads."""
    from .datapaths import apply_layout, data_root as default_root, missing, missing_message
    from .protocols import get as get_protocol
    from .runner import prepare_task
    from .taskregistry import discover, normalize_options, resolve

    classes = discover(list(include_paths))
    wanted = resolve(names.split(",") if isinstance(names, str) else list(names), classes)
    options = normalize_options(dict(task_options or {}), classes)
    root = default_root(data_root)
    protocol = get_protocol(cfg.protocol)
    tasks = []
    for n in wanted:
        task = protocol.make_task(classes[n], dict(options))
        filled = apply_layout(task, root)
        if filled:
            log.info("%s: data from the data root %s (%s)", n, root, ", ".join(filled))
        tasks.append(task)
    absent = missing(tasks, root)  # every missing file of every task in one error, as `data check` lists them
    if absent:
        raise UserError(missing_message(absent, root))
    return [prepare_task(task, cfg) for task in tasks]


def evaluate(
    config: EvalConfig | Any = None,
    ckpt: str | os.PathLike | None = None,
    tasks: str | Sequence[str] | None = None,
    /,
    **kwargs: Any,
) -> RunResults | SeriesResults | None:
    """Evaluate with the settings of an :class:`~mmgpt_eval.config.EvalConfig`, or build one from keyword
    arguments (``evaluate(model=..., ckpt=..., tasks=..., limit=...)``; the first three may be positional):
    every field of EvalConfig, plus ``generation`` (a dict of decoding overrides) and ``load_options``
    (:class:`LoadOptions`).

    ``model``: preset name, model-spec TOML or ModelSpec; None with a checkpoint: the checkpoint's base;
    None with neither: the embedded default (tiny MultiModal-GPT on 200 easy-VQA questions). ``ckpt``:
    one checkpoint, or a glob / folder of several (a series). ``baseline``: a model spec evaluated on the
    same samples and settings without a checkpoint, or an earlier run folder; both are stored side by
    side and compared. ``generation``: overrides of the tasks' decoding settings (``max_new_tokens``,
    ``num_beams``...). ``task_options``: ``{"vqav2": {"questions": ...}}`` or flat keys
    (``vqav2_questions``). ``limit``: N samples per task, or ``"all"``. ``batch_size`` 0 means auto.
    ``protocol``: ``"mmgpt-eval"`` or ``"openflamingo"`` (OpenFlamingo's evaluate.py exactly; ``seed``
    defaults to its 42, ``of_num_samples`` / ``of_query_set_size`` are its --num_samples / --query_set_size;
    :mod:`mmgpt_eval.protocols.openflamingo`). ``seed`` otherwise defaults to 0. ``trials``: evaluate
    with seeds ``seed``, ``seed+1``, ... into ``OUTDIR/trials/seed-<s>/`` and report each metric's mean
    and (population) standard deviation over them, as OpenFlamingo's ``--num_trials`` does.
    ``rices_encoder``: ``"model"`` (the model's own vision encoder) or ``"openclip:ARCH:PRETRAINED"``.
    ``log_to``: experiment trackers (``"mlflow[:URI]"``, ``"wandb[:PROJECT]"``; a list or comma-separated)
    that get the metrics, per-task tables, report and settings once everything is written
    (:mod:`mmgpt_eval.trackers`; a missing optional package fails before anything runs).
    ``judge``: a judge spec (``"openai:MODEL@URL"``, ``"local:PATH"``, ``"python:MODULE:FUNCTION"``) or a
    :class:`~mmgpt_eval.judging.JudgeSettings`: the judge is checked before any model loads and the run
    judged afterwards (``judge.json`` in the run folder; read it with
    :func:`mmgpt_eval.judge_results.read_judge`).
    Returns the results (a :class:`SeriesResults` for several checkpoints); None on torchrun ranks
    other than 0, which write nothing.
    """
    judge_spec = kwargs.pop("judge", None)
    if isinstance(config, EvalConfig):
        if ckpt is not None or tasks is not None or kwargs:
            raise TypeError("evaluate(config) takes no other arguments; use config.replace(...)")
        cfg = config
    else:
        given: dict[str, Any] = {
            k: v for k, v in (("model", config), ("ckpt", ckpt), ("tasks", tasks)) if v is not None
        }
        cfg = EvalConfig.from_kwargs(**given, **kwargs)
    if judge_spec is None:
        return evaluate_config(cfg)
    from .judging import JudgeSettings, build_judge

    settings = judge_spec if isinstance(judge_spec, JudgeSettings) else JudgeSettings(str(judge_spec))
    judge = build_judge(settings)  # before any model loads: a judge that cannot answer stops here
    return evaluate_config(cfg, judge=judge, judge_repeats=settings.repeats)


def evaluate_config(cfg: EvalConfig, judge: Any = None, judge_repeats: int = 1) -> RunResults | SeriesResults | None:
    """:func:`evaluate` for one EvalConfig. ``judge`` (a built judge, checked by the caller before this
    runs): the run is judged right after it is evaluated, in its folder and under its lock, before the
    report is written again with the judgments and before the trackers log it (judge metrics included)."""
    from .lock import output_lock
    from .model.checkpoint import allow_nonfinite_tensors
    from .model.validate import allow_suspicious_adapters
    from .progress import third_party_progress
    from .protocols import get as get_protocol
    from .trackers import check_targets, parse_targets

    trackers = parse_targets(list(cfg.log_to))
    check_targets(trackers)  # a missing tracker package fails here, before data or model
    lo = cfg.load_options
    # --allow-nonfinite / --allow-suspicious-adapter for every checkpoint read below (choosing the base,
    # loading, series swaps); progress=False also silences the libraries' own bars (transformers' "Loading
    # weights")
    with (
        allow_nonfinite_tensors(lo.allow_nonfinite),
        allow_suspicious_adapters(lo.allow_suspicious_adapter),
        third_party_progress(cfg.progress),
    ):
        model, ckpt, tasks, limit = cfg.model, cfg.ckpt, cfg.tasks, cfg.limit
        embedded = model is None and tasks is None and ckpt is None
        extra: dict[str, Any] = {}
        if model is None and ckpt:
            base_choice = choose_base_model(str(ckpt), lo.trust_checkpoint)
            model = base_choice.spec
            extra["base_model_choice"] = base_choice.to_dict()
        if model is None:
            model, ckpt = EMBEDDED_DEFAULT["model"], ckpt or EMBEDDED_DEFAULT["ckpt"]
        if tasks is None:
            tasks = EMBEDDED_DEFAULT["tasks"]
        if limit is None and embedded:
            limit = EMBEDDED_DEFAULT["limit"]
            log.info(
                "no model/tasks given: running the embedded default (%s + %s on %s, %d samples)",
                model,
                ckpt,
                tasks,
                limit,
            )
        if limit == ALL:
            limit = None
        if cfg.num_fewshot < 0:
            raise UserError("--num-fewshot must be >= 0")
        protocol = get_protocol(cfg.protocol)
        protocol.check(cfg)
        cfg = protocol.resolve(cfg)
        if cfg.trials < 1:
            raise UserError("--trials must be at least 1")
        if cfg.rices_encoder != "model":
            from .rices import parse_openclip_spec

            parse_openclip_spec(cfg.rices_encoder)  # a malformed spec fails before anything loads
        if cfg.trials > 1 and cfg.baseline:
            raise UserError(
                "--trials with --baseline is not supported; evaluate the baseline with the same --trials "
                "into its own folder and compare the two"
            )
        cfg = cfg.replace(model=model, ckpt=ckpt, tasks=tasks, limit=limit, output_dir=cfg.out_dir)
        with output_lock(cfg.out_dir, list(cfg.argv) or None):  # one run per folder; orphan temporaries removed
            if not cfg.overwrite:
                _check_reuse_settings(cfg, extra)
            out: RunResults | SeriesResults | None
            if cfg.trials > 1:
                out = _evaluate_trials(cfg, extra)
            else:
                out = _evaluate_in_folder(cfg, extra)
            if out is not None and judge is not None:
                _judge_after_run(out, cfg, judge, judge_repeats)
            if out is not None and trackers:  # rank 0 only (other ranks get None), after results and report
                from .trackers import log_to_trackers

                log_to_trackers(trackers, out, cfg.out_dir)
            return out


def _judge_after_run(out: RunResults | SeriesResults, cfg: EvalConfig, judge: Any, repeats: int) -> None:
    """Judge a finished run in its folder (judge.json) and write its report again with the judgments."""
    if isinstance(out, SeriesResults) or out.run_dir is None:
        log.warning("a judge with a checkpoint series: not judged; judge each checkpoint's folder (mmgpt-eval judge)")
        return
    from .judging import judge_run

    judge_run(out.run_dir, judge=judge, repeats=repeats, progress=cfg.progress)
    if cfg.report:
        write_run_report(out, out.run_dir)


def _check_reuse_settings(cfg: EvalConfig, extra: dict[str, Any]) -> None:
    """Before data or model load: a run already in the output folder that this run's settings cannot add
    tasks to is refused (the model and checkpoint are compared once loaded, :func:`runner.open_output_folder`)."""
    from .runner import check_reuse, run_info

    run = run_info(cfg, 0.0, extra)
    if cfg.trials > 1:
        assert cfg.seed is not None  # resolved by the protocol
        run["trials"] = {"seeds": [cfg.seed + i for i in range(cfg.trials)]}
    check_reuse(cfg.out_dir, run)


def _evaluate_in_folder(cfg: EvalConfig, extra: dict[str, Any]) -> RunResults | SeriesResults | None:
    """:func:`evaluate` once its output folder is locked: data first, then the model(s)."""
    from .runner import run_evaluation

    assert cfg.tasks is not None  # the embedded default's when none were given
    prepared = prepare_tasks(cfg.tasks, cfg, cfg.task_options, cfg.data_root, cfg.include_paths)
    baseline_run = earlier_run(cfg.baseline) if cfg.baseline else None
    if baseline_run is not None:
        check_baseline_settings(baseline_run, prepared, cfg)
    lo = _device_options(cfg.load_options)
    ckpts = _expand(cfg.ckpt)
    if len(ckpts) > 1:
        if cfg.baseline:
            raise UserError("--baseline is not supported with a checkpoint series; compare the series folders instead")
        return evaluate_series(cfg.model, ckpts, prepared, cfg, lo, cfg.report, extra)
    loaded = load(cfg.model, ckpts[0] if ckpts else None, lo)
    results = run_evaluation(prepared, loaded, cfg, extra)
    if results is None:  # a torchrun rank other than 0: rank 0 writes everything
        return None
    results.path = cfg.out_dir / "results.json"
    if cfg.baseline:
        del loaded
        results = attach_baseline(results, prepared, cfg, str(cfg.baseline), baseline_run, lo, cfg.intersect)
    if cfg.report:
        write_run_report(results, cfg.out_dir)
    return results


def _device_options(lo: LoadOptions) -> LoadOptions:
    """Under torchrun: this rank's device."""
    device = distributed.init_for_eval(lo.device)
    return dataclasses.replace(lo, device=device) if device else lo


def _evaluate_trials(cfg: EvalConfig, extra: dict[str, Any]) -> RunResults | None:
    """OpenFlamingo's trials: the model loaded once, one complete run per seed in OUTDIR/trials/seed-<s>/
    (each resumable), then OUTDIR/results.json with every metric's mean over the trials."""
    from .runner import run_evaluation

    assert cfg.seed is not None and cfg.tasks is not None  # resolved by the protocol / the embedded default
    seeds = [cfg.seed + i for i in range(cfg.trials)]
    trial_cfgs = [cfg.replace(seed=s, output_dir=cfg.out_dir / "trials" / f"seed-{s}") for s in seeds]
    prepared = [
        prepare_tasks(cfg.tasks, c, cfg.task_options, cfg.data_root, cfg.include_paths) for c in trial_cfgs
    ]  # all data checked before the model
    lo = _device_options(cfg.load_options)
    ckpts = _expand(cfg.ckpt)
    if len(ckpts) > 1:
        raise UserError("--trials is not supported with a checkpoint series")
    loaded = load(cfg.model, ckpts[0] if ckpts else None, lo)
    runs = []
    for c, pts in zip(trial_cfgs, prepared):
        log.info("trial seed %d -> %s", c.seed, c.out_dir)
        r = run_evaluation(pts, loaded, c, extra)
        if r is not None:
            r.path = c.out_dir / "results.json"
            runs.append(r)
    if not runs:  # a torchrun rank other than 0
        return None
    results = combine_trials(runs, seeds, cfg.out_dir)
    results.save(cfg.out_dir / "results.json")
    results.path = cfg.out_dir / "results.json"
    if cfg.report:
        write_run_report(results, cfg.out_dir)
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
        values: dict[str, list[float | None]] = {
            m: [r.tasks[name].metrics.get(m, float("nan")) for r in runs] for m in tr.metrics
        }
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
            f"breakdown.trials; per-sample records (compare, gate, report) are trial seed {seeds[0]}'s"
        ]
        tr.timing = {**tr.timing, "wall_s": round(sum(r.tasks[name].timing.get("wall_s") or 0 for r in runs), 3)}
    return combined


def _expand(ckpt: Any) -> list[Any]:
    if not ckpt:
        return []
    from .series import expand_checkpoints

    return expand_checkpoints(str(ckpt))


def evaluate_series(
    model: Any,
    ckpts: list[Path],
    prepared: list,
    cfg: EvalConfig,
    lo: LoadOptions,
    report: bool = True,
    extra: dict[str, Any] | None = None,
) -> SeriesResults | None:
    """Load the base once, swap checkpoints, evaluate each into OUTDIR/<name>/, write series.json."""
    from .compare import step_from_metadata
    from .model.checkpoint import read_checkpoint
    from .runner import run_evaluation
    from .series import CheckpointSwapper, step_of_path, write_series

    for ck in ckpts:  # every checkpoint validated before the base model loads
        read_checkpoint(ck, trust=lo.trust_checkpoint, hash_file=False)
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
        results = run_evaluation(prepared, loaded, cfg.replace(output_dir=cfg.out_dir / name), extra)
        if results is None:
            continue
        results.path = cfg.out_dir / name / "results.json"
        out.runs.append(results)
        out.entries.append(
            {
                "checkpoint": str(ck),
                "name": name,
                "step": step,
                "sha256": info.sha256,
                "results": f"{name}/results.json",
                "metrics": {t: tr.metrics for t, tr in results.tasks.items()},
            }
        )
    if not out.entries:
        return None
    out.path = write_series(cfg.out_dir, out.entries)
    if report:
        from .report import write_report

        write_report(cfg.out_dir / "report.html", out.runs)
        log.info("report: %s", (cfg.out_dir / "report.html").resolve())
    return out


# ------------------------------------------------------------------------------------------ baseline
def earlier_run(ref: str | os.PathLike) -> RunResults | None:
    """An earlier run folder / results.json, or None when ``ref`` is a model spec."""
    p = Path(ref)
    if (p.is_dir() and (p / "results.json").is_file()) or (p.is_file() and p.suffix == ".json"):
        return read_run(p)  # validated as every reader validates a run folder
    if p.is_dir():
        raise UserError("baseline folder has no results.json", p)
    return None


def check_baseline_settings(base: RunResults, prepared: list, cfg: EvalConfig) -> None:
    """A baseline run must have used the same prompts and settings for every task: its template,
    decoding and task options, and every setting whose metadata names where the baseline recorded it."""

    def differs(where: str) -> list[str]:
        out = []
        for f in settings():
            s = f.metadata["setting"]
            if s.baseline and s.baseline.split(".", 1)[0] == where:
                attr = s.baseline.split(".", 1)[1]
                recorded = getattr(tr, attr, None) if where == "task" else base.run.get(attr)
                recorded = s.baseline_default if recorded in (None, "") else recorded
                if recorded != getattr(cfg, f.name):
                    out.append(f"{f.name} {recorded} vs {getattr(cfg, f.name)}")
        return out

    for pt in prepared:
        tr = base.tasks.get(pt.task.name)
        if tr is None:
            raise UserError(f"the baseline run has no task {pt.task.name}", base.path)
        diffs = []
        if tr.template.get("sha256") != pt.template.sha256:
            diffs.append(f"template {tr.template.get('name')} vs {pt.template.name}")
        if tr.generation != pt.settings.to_dict():
            diffs.append("generation settings")
        diffs += differs("task")
        if tr.options != pt.task.public_options():
            diffs.append("task options")
        diffs += differs("run")
        if diffs:
            raise UserError(
                f"the baseline run used different settings for task {pt.task.name}: {', '.join(diffs)}", base.path
            )


def attach_baseline(
    results: RunResults,
    prepared: list,
    cfg: EvalConfig,
    source: str,
    baseline_run: RunResults | None,
    lo: LoadOptions,
    intersect: bool,
) -> RunResults:
    """Evaluate (or reuse) the baseline, compare, and store both side by side in results.json."""
    from .compare import compare_runs
    from .model.spec import load_spec
    from .runner import run_evaluation

    if baseline_run is None:
        log.info("evaluating the baseline %s (no checkpoint) on the same samples", source)
        base_cfg = cfg.replace(output_dir=cfg.out_dir / "baseline", label=None)  # not this run's label
        run_evaluation(prepared, load(load_spec(source, lo.spec_overrides()), None, lo), base_cfg)
        baseline_run = RunResults.load(base_cfg.out_dir)
        kind = "model"
    else:
        kind = "run"
    comps = compare_runs(baseline_run, results, intersect=intersect)
    # relative to this run's folder (so the pair can move together), whatever the working directory
    assert baseline_run.path is not None  # read from (or written to) a results file
    rel = Path(os.path.relpath(Path(baseline_run.path).resolve(), cfg.out_dir.resolve()))
    results.baseline = {
        "source": source,
        "kind": kind,
        "results": str(rel),
        "comparisons": [c.to_dict() for c in comps],
    }
    results.save(cfg.out_dir / "results.json")
    return RunResults.load(cfg.out_dir)


def write_run_report(results: RunResults, out_dir: Path) -> Path:
    from .report import write_report

    path = write_report(out_dir / "report.html", [results], baseline=results.stored_baseline())
    log.info("report: %s", path.resolve())
    return path
