"""The evaluation runner: one task on one loaded model, top-down.

``prepare_task`` (data, subset, template, settings, few-shot pool, every image file it reads decoded:
no model needed) -> ``plan_prompts`` (every sample's round-0 requests, fitted to the model's context,
for every task before anything is written) -> ``run_task``: resume from the sample store -> this
rank's pending samples -> sorted into batches -> generations (or log-likelihood rankings of candidates) ->
post-processing -> per-sample scores, streamed to the store as :class:`~mmgpt_eval.records.SampleRecord`
lines -> gathered on rank 0 -> ``finish_task``: aggregate, final log in task order,
:class:`~mmgpt_eval.results.TaskResult`. ``run_evaluation`` runs every task and keeps results.json;
in a folder that already holds a run it adds its tasks to that run's results when model, checkpoint
and settings are the same and refuses otherwise (:func:`open_output_folder`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, cast

from . import distributed
from .engine import Engine, GenerationRequest, RankingRequest, engine_for
from .engine import Request as EngineRequest
from .errors import UserError
from .images import check_images
from .generation_settings import GenerationSettings
from .model.build import LoadedModel
from .model.seam import CandidateScore, Generation
from .progress import progress_bars
from .records import SampleRecord
from .results import RunResults, TaskResult, provenance
from .sample_store import SampleStore, move_aside
from .config import EvalConfig, fingerprint_settings, settings
from .protocols import get as get_protocol
from .taskapi import Output, Ranking, RankRequest, Request, RunContext, Sample, Task, demos_needed
from .templates import Template, prompt_sha256

log = logging.getLogger("mmgpt_eval")


@dataclass
class PreparedTask:
    task: Task
    samples: list[Sample]  # the evaluated ones, in task order
    n_available: int
    template: Template
    settings: GenerationSettings
    population: list[Sample] = field(default_factory=list)  # every sample the task has (subset draws index it)


# ------------------------------------------------------------------------------------ before the model
def prepare_task(task: Task, cfg: EvalConfig) -> PreparedTask:
    """Load and subset a task's data, resolve its template and settings, check its few-shot pool."""
    protocol = get_protocol(cfg.protocol)
    cfg = protocol.resolve(cfg)
    template = protocol.template(task, cfg)
    task.check_template(template)
    if cfg.num_fewshot and template.demo is None:
        raise UserError(
            f"--num-fewshot needs a few-shot template (of-vqa, of-caption); task {task.name} uses {template.name}"
        )
    samples = task.load()
    if not samples:
        raise UserError(f"task {task.name} has no samples")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise UserError(f"task {task.name} has duplicate sample ids")
    task.check_fewshot(template, cfg.num_fewshot, cfg.fewshot_zero_mode, protocol.pool_limit)
    subset = protocol.subset(task, samples, cfg)
    settings = task.generation_settings(template)
    settings = GenerationSettings(**{**settings.to_dict(), **cfg.generation_overrides, "seed": cfg.seed})
    check_images(images_read(task, subset, template, cfg, protocol), cfg.progress)
    return PreparedTask(task, subset, len(samples), template, settings, population=samples)


def images_read(
    task: Task, subset: list[Sample], template: Template, cfg: EvalConfig, protocol
) -> list[tuple[str, str]]:
    """The image files the selected samples' prompts will read, with who reads them: each sample's own,
    and the few-shot pool's (first image of each demo) when demos bring images. Generated images
    (an ImageRef with a loader) are not files."""
    out = [
        (img.path, f"task {task.name}, sample {s.id}")
        for s in subset
        for img in s.images
        if img.loader is None and img.path
    ]
    k = demos_needed(template, cfg.num_fewshot, cfg.fewshot_zero_mode)
    if k and (cfg.num_fewshot or protocol.zero_shot_ranking_demo_images):
        for d in task.demo_pool(protocol.pool_limit):
            out += [
                (img.path, f"task {task.name}, few-shot demo {d.id}")
                for img in d.images[:1]
                if img.loader is None and img.path
            ]
    return out


#: model-spec keys that name or place a model without changing what it computes (not in the fingerprint)
SPEC_NAMING_KEYS = ("name", "source", "description", "device")


def model_identity(loaded: LoadedModel) -> dict[str, Any]:
    spec = loaded.spec.to_dict()
    for k in SPEC_NAMING_KEYS:
        spec.pop(k, None)
    ck = loaded.checkpoint
    return {
        "spec": spec,
        "checkpoint_sha256": ck.sha256 if ck else None,
        "openflamingo_checkpoint_sha256": loaded.base_checkpoint_sha256,
        "device_type": loaded.device.type,
        "dtype": str(loaded.dtype),
    }


def _data_signature(task: Task) -> dict[str, Any]:
    sig = {}
    for name, p in task.data_files().items():
        if p is None:
            continue
        sig[name] = {"path": str(p.resolve()), "size": p.stat().st_size if p.is_file() else None}
    return sig


def fingerprint(pt: PreparedTask, cfg: EvalConfig, identity: dict[str, Any]) -> str:
    """What the per-sample log's results depend on; a different one starts the task over: the task, its
    data, template and decoding, the model, the fingerprinted settings (EvalConfig's metadata) and what
    the protocol adds (nothing for mmgpt-eval's own: older logs keep their fingerprint)."""
    t = pt.task
    protocol = get_protocol(cfg.protocol)
    cfg = protocol.resolve(cfg)
    payload = {
        "task": t.name,
        "task_version": t.version,
        "options": t.public_options(),
        "data": _data_signature(t),
        "template": {"name": pt.template.name, "sha256": pt.template.sha256},
        "generation": pt.settings.to_dict(),
        **fingerprint_settings(pt, cfg, protocol),
        "model": identity,
    }
    extras = protocol.fingerprint_extras(cfg)
    if extras:
        payload["protocol"] = extras
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


# ------------------------------------------------------------------------------------ generation / ranking
def _engine_request(q: Request | RankRequest, settings: GenerationSettings) -> EngineRequest:
    if isinstance(q, RankRequest):
        return RankingRequest(q.prompt, list(q.candidates), list(q.images), q.image_keys, q.joint_tokens)
    return GenerationRequest(q.prompt, list(q.images), q.image_keys, q.settings or settings, q.template.stop)


def answer_requests(
    pt: PreparedTask,
    chunk: list[Sample],
    first: dict[str, Sequence[Request | RankRequest]],
    engine: Engine,
    ctx: RunContext,
    batch_size: int,
    truncated: set[str] | None = None,
) -> dict[str, dict[str, Output | Ranking]]:
    """Every round of every request of ``chunk`` (round 0 given, fitted); outputs by sample id and
    request key. Per round: the tasks' requests -> fitted to the context (later rounds; cut samples'
    ids go to ``truncated``) -> :meth:`Engine.answer` -> an Output or a Ranking each."""
    task = pt.task
    outputs: dict[str, dict[str, Output | Ranking]] = {s.id: {} for s in chunk}
    for r in range(max(task.rounds(s) for s in chunk)):
        # the Task API types earlier outputs as Output; a ranking request's is a Ranking (same reading API)
        asked = [
            (s, q)
            for s in chunk
            if r < task.rounds(s)
            for q in (first[s.id] if r == 0 else task.requests(s, r, outputs[s.id], ctx))  # type: ignore[arg-type]
        ]
        if r > 0:
            asked = _fit(pt, engine, asked, truncated if truncated is not None else set())
        answers = engine.answer([_engine_request(q, pt.settings) for _, q in asked], batch_size)
        for (s, q), a in zip(asked, answers):
            sha = prompt_sha256(q.prompt, q.image_keys)
            if isinstance(q, RankRequest):
                a = cast("list[CandidateScore]", a)
                outputs[s.id][q.key] = Ranking(
                    prompt=q.prompt,
                    prompt_sha256=sha,
                    image_keys=q.image_keys,
                    candidates=q.candidates,
                    scores=[c.mean_logprob if q.normalize else c.sum_logprob for c in a],
                    sum_logprobs=[c.sum_logprob for c in a],
                    n_tokens=[c.n_tokens for c in a],
                    normalize=q.normalize,
                    top_k=q.top_k,
                )
            else:
                a = cast("Generation", a)
                outputs[s.id][q.key] = Output(
                    prompt=q.prompt,
                    prompt_sha256=sha,
                    raw=a.text,
                    prediction=task.postprocess(q, a),
                    token_ids=a.token_ids,
                    stopped_on_eos=a.stopped_on_eos,
                    num_new_tokens=a.num_new_tokens,
                    max_new_tokens=(q.settings or pt.settings).max_new_tokens,
                    image_keys=q.image_keys,
                )
    return outputs


def make_record(
    pt: PreparedTask, sample: Sample, outs: dict[str, Output | Ranking], truncated: bool = False
) -> SampleRecord:
    """Score one sample and describe it for the log (``truncated``: a prompt of it was cut to the
    model's context, marked ``meta.prompt_truncated``)."""
    metrics = pt.task.score_sample(sample, outs)  # type: ignore[arg-type]  # a ranking task's outputs are Rankings
    main = outs.get("main") or next(iter(outs.values()))
    several = len(outs) > 1 or "main" not in outs
    return SampleRecord(
        id=sample.id,
        prompt_sha256=main.prompt_sha256,
        template=pt.template.name,
        template_sha256=pt.template.sha256,
        prompt=main.prompt,
        images=main.image_keys,
        raw=main.raw,
        prediction=main.prediction,
        references=pt.task.references_for_log(sample),
        metrics=metrics,
        generated_tokens=sum(o.num_new_tokens for o in outs.values()),
        stopped_on_eos=main.stopped_on_eos,
        meta={**sample.meta, "prompt_truncated": True} if truncated else sample.meta,
        outputs={k: o.to_dict() for k, o in outs.items()} if several else None,
        ranking=main.top() if isinstance(main, Ranking) and not several else None,
    )


def _batch_order(pending: list[Sample], first: dict[str, Sequence[Request | RankRequest]]) -> list[Sample]:
    """Image count, first-round prompt length, first image: batches pad little and share images."""
    return sorted(
        pending, key=lambda s: (len(s.images), len(first[s.id][0].prompt), s.images[0].key if s.images else "")
    )


# ------------------------------------------------------------------------------------ one task
def _open_stores(pt: PreparedTask, cfg: EvalConfig, fp: str) -> tuple[SampleStore, SampleStore, dict[str, dict]]:
    """The task's log (rank 0 checks and creates it), this rank's output store (its own shard file
    under torchrun), and every record finished by earlier runs (log and leftover shards)."""
    name = pt.task.name
    rank, world = distributed.rank_world()
    samples_dir = cfg.out_dir / "samples"
    store = SampleStore(samples_dir / f"{name}.jsonl", name, fp)
    if rank == 0:
        done = store.load_done()
        store.start()
    distributed.barrier()
    if rank != 0:
        done = store.load_done(readonly=True)
    for shard in sorted(samples_dir.glob(f"{name}.shard-*.jsonl")):
        done.update(SampleStore(shard, name, fp).load_done(readonly=True))
    out_store = store
    if world > 1:
        out_store = SampleStore(samples_dir / f"{name}.shard-{rank}-of-{world}.jsonl", name, fp)
        out_store.load_done()
        out_store.start()
    return store, out_store, done


@dataclass
class PromptPlan:
    """A task's round-0 requests for every sample, fitted to the model's context before anything is
    written (:func:`plan_prompts`), and the ids of the samples whose prompts were cut."""

    ctx: RunContext
    first: dict[str, Sequence[Request | RankRequest]]
    truncated: set[str] = field(default_factory=set)


def plan_prompts(pt: PreparedTask, loaded: LoadedModel, engine: Engine, cfg: EvalConfig) -> PromptPlan:
    """Build every sample's first-round requests and fit them to the context (:meth:`Engine.fit`): an
    over-long prompt is refused here, naming the task and the sample, before any file is written."""
    protocol = get_protocol(cfg.protocol)
    cfg = protocol.resolve(cfg)
    assert cfg.seed is not None  # resolved by the protocol
    ctx = RunContext(
        seed=cfg.seed,
        num_fewshot=cfg.num_fewshot,
        fewshot_zero_mode=cfg.fewshot_zero_mode,
        template=pt.template,
        history_mode=cfg.history_mode,
        demos=protocol.demo_selector(pt, cfg, loaded),
        pool_limit=protocol.pool_limit,
        zero_shot_ranking_demo_images=protocol.zero_shot_ranking_demo_images,
    )
    first = {s.id: pt.task.requests(s, 0, {}, ctx) for s in pt.samples}
    plan = PromptPlan(ctx, first)
    _fit(pt, engine, [(s, q) for s in pt.samples for q in first[s.id]], plan.truncated, first)
    return plan


def _fit(
    pt: PreparedTask,
    engine: Engine,
    asked: list[tuple[Sample, Request | RankRequest]],
    truncated: set[str],
    into: dict[str, Sequence[Request | RankRequest]] | None = None,
) -> list[tuple[Sample, Request | RankRequest]]:
    """``asked`` with each prompt fitted to the model's context; cut samples' ids go to ``truncated``
    (and the fitted requests replace theirs in ``into``)."""
    labels = [f"task {pt.task.name}, sample {s.id}" + (f" ({q.key})" if q.key != "main" else "") for s, q in asked]
    fitted, cut = engine.fit([_engine_request(q, pt.settings) for _, q in asked], labels)
    out = list(asked)
    for i in cut:
        s, q = asked[i]
        text = fitted[i].context if isinstance(fitted[i], RankingRequest) else fitted[i].prompt  # type: ignore[union-attr]
        out[i] = (s, dataclasses.replace(q, prompt=text))
        truncated.add(s.id)
        if into is not None:
            into[s.id] = [out[i][1] if r is q else r for r in into[s.id]]
    return out


def run_task(
    pt: PreparedTask, loaded: LoadedModel, engine: Engine, cfg: EvalConfig, progress, plan: PromptPlan | None = None
) -> TaskResult | None:
    """Evaluate one task (``plan``: its fitted first-round requests, made here when not given). Under
    torchrun every rank takes every world-size-th pending sample (no padding duplicates) and streams
    its records to its own shard file; rank 0 gathers them and returns the result (other ranks return
    None)."""
    task = pt.task
    protocol = get_protocol(cfg.protocol)
    cfg = protocol.resolve(cfg)
    rank, world = distributed.rank_world()
    plan = plan or plan_prompts(pt, loaded, engine, cfg)
    fp = fingerprint(pt, cfg, model_identity(loaded))
    store, out_store, done = _open_stores(pt, cfg, fp)
    wanted = {s.id for s in pt.samples}
    resumed = len(wanted & set(done))
    pending = [s for s in pt.samples if s.id not in done][rank::world]
    ctx, first = plan.ctx, plan.first
    pending = _batch_order(pending, first)
    bar = progress.add_task(
        task.name if world == 1 else f"{task.name} (rank {rank}/{world})",
        total=len(pending) + (resumed if world == 1 else 0),
        completed=resumed if world == 1 else 0,
        rate="",
    )
    t0 = time.perf_counter()
    new: list[dict[str, Any]] = []
    n_tokens = 0
    start = 0
    while start < len(pending):
        ahead = pending[start : start + engine.batch_size(pt.settings.num_beams)]
        size = engine.rows_that_fit(
            [_engine_request(first[s.id][0], pt.settings) for s in ahead], pt.settings.num_beams
        )
        chunk = pending[start : start + size]
        outs = answer_requests(pt, chunk, first, engine, ctx, size, plan.truncated)
        records = [make_record(pt, s, outs[s.id], s.id in plan.truncated).to_dict() for s in chunk]
        out_store.append(records)
        new.extend(records)
        n_tokens += sum(r["generated_tokens"] for r in records)
        start += len(chunk)
        el = time.perf_counter() - t0
        progress.update(
            bar,
            advance=len(chunk),
            rate=f"{len(new) / el:.1f} samples/s" + (f", {n_tokens / el:.0f} tok/s" if n_tokens else ""),
        )
    wall = time.perf_counter() - t0
    gathered = distributed.gather_lists(new)
    if gathered is None:
        return None
    return finish_task(pt, cfg, store, done, gathered, resumed, wall, fp, engine.batch_size(pt.settings.num_beams))


def finish_task(
    pt: PreparedTask,
    cfg: EvalConfig,
    store: SampleStore,
    done: dict[str, dict[str, Any]],
    new: list[dict[str, Any]],
    resumed: int,
    wall: float,
    fp: str,
    batch_size: int,
) -> TaskResult:
    """Aggregate, write the final log (this task's samples in task order, identical for any world size,
    then older extras) and describe the result."""
    task = pt.task
    for r in new:
        done[r["id"]] = r
    wanted = {s.id for s in pt.samples}
    records = [done[s.id] for s in pt.samples]
    agg = task.aggregate(pt.samples, records)
    for r in records:
        r["metrics"].update(agg.per_sample.get(r["id"], {}))
    store.rewrite(records + [r for k, r in done.items() if k not in wanted])
    for shard in store.path.parent.glob(f"{task.name}.shard-*.jsonl"):
        shard.unlink()
    notes = list(agg.notes)
    truncation = None
    if cfg.truncate != "none":
        cut = sum(1 for r in records if (r.get("meta") or {}).get("prompt_truncated"))
        truncation = {"mode": cfg.truncate, "samples": cut}
        notes.insert(
            0,
            f"--truncate {cfg.truncate}: {cut} of {len(records)} samples' prompts were longer than the "
            "model's context and kept their last tokens",
        )
    if resumed:
        notes.append(f"resumed: {resumed} samples were taken from an earlier run with the same fingerprint")
    n_gen = len(new)
    n_tokens = sum(r["generated_tokens"] for r in new)
    protocol = get_protocol(cfg.protocol)
    subset = protocol.subset_description(pt, cfg)
    notes += protocol.notes(pt, cfg)
    return TaskResult(
        task=task.name,
        version=task.version,
        metrics=agg.metrics,
        metric_info={k: v.to_dict() for k, v in task.metric_info().items()},
        primary_metric=task.primary_metric,
        n_samples=len(pt.samples),
        n_available=pt.n_available,
        limit=cfg.limit if isinstance(cfg.limit, int) else None,  # 'all' is resolved to None by the protocol
        subset=subset,
        template={"name": pt.template.name, "sha256": pt.template.sha256},
        generation=pt.settings.to_dict(),
        num_fewshot=cfg.num_fewshot,
        fewshot_mode=(
            (f"{cfg.fewshot_selection} demos" if cfg.num_fewshot else cfg.fewshot_zero_mode)
            if pt.template.demo
            else None
        ),
        options=task.public_options(),
        breakdown=agg.breakdown,
        notes=notes,
        timing={
            "wall_s": round(wall, 3),
            "samples_generated": n_gen,
            "samples_resumed": resumed,
            "samples_per_s": round(n_gen / wall, 3) if wall > 0 and n_gen else None,
            "generated_tokens": n_tokens,
            "tokens_per_s": round(n_tokens / wall, 1) if wall > 0 and n_tokens else None,
            "world_size": distributed.rank_world()[1],
            "batch_size": batch_size,
        },
        samples_file=str(Path("samples") / f"{task.name}.jsonl"),
        fingerprint=fp,
        truncation=truncation,
    )


# ------------------------------------------------------------------------------------ all tasks
def run_info(cfg: EvalConfig, model_load_s: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Results' ``run`` info: the recorded settings (EvalConfig's metadata), the model's load time, the
    protocol's own, the label, then ``extra`` (how the base model was chosen)."""
    protocol = get_protocol(cfg.protocol)
    cfg = protocol.resolve(cfg)
    return {
        **cfg.run_info(),
        "model_load_s": round(model_load_s, 3),
        **protocol.run_info(cfg),
        **({"label": cfg.label} if cfg.label else {}),
        **(extra or {}),
    }


def run_evaluation(
    prepared: list[PreparedTask], loaded: LoadedModel, cfg: EvalConfig, extra_run_info: dict[str, Any] | None = None
) -> RunResults | None:
    """Every prepared task on one loaded model; results.json after each task. None on ranks other than 0.
    Every task's first-round prompts are built and fitted to the model's context first: an over-long
    prompt stops the run before anything is written."""
    t0 = time.perf_counter()
    cfg = get_protocol(cfg.protocol).resolve(cfg)
    engine = engine_for(loaded, cfg.batch_size, share_prefix=cfg.share_prefix, truncate=cfg.truncate)
    plans = [plan_prompts(pt, loaded, engine, cfg) for pt in prepared]
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    info = run_info(cfg, loaded.load_seconds, extra_run_info)
    model = loaded.provenance()
    earlier = open_output_folder(cfg, [pt.task.name for pt in prepared], info, model)
    results = RunResults(run=info, model=model, tasks={}, provenance={})
    if earlier is not None:  # its tasks stay, in their order; a task run again is replaced where it stands
        results.tasks, results.baseline = dict(earlier.tasks), earlier.baseline
    rank, world = distributed.rank_world()
    with progress_bars(cfg.progress and rank == 0) as progress:
        for pt, plan in zip(prepared, plans):
            tr = run_task(pt, loaded, engine, cfg, progress, plan)
            if rank != 0:
                continue
            assert tr is not None  # rank 0 gets the gathered result
            results.tasks[pt.task.name] = tr
            results.provenance = provenance(time.perf_counter() - t0)
            results.provenance["world_size"] = world
            results.save(cfg.out_dir / "results.json")
    distributed.barrier()
    return results if rank == 0 else None


# ------------------------------------------------------------------------------------ the output folder
# A run in a folder that holds a run adds its tasks to that run's results when every task of both would
# get the same fingerprint but for what the task itself brings: the same model, checkpoint and run-level
# settings, compared as results.json records them (folders written before this check read the same way).

#: results' ``run`` keys that reach every task's fingerprint through what they resolve to (the seed and the
#: decoding overrides: generation settings; the template: its hash; the protocol: its extras), with the
#: value a results file that lacks the key stands for
_RESOLVED_INTO_FINGERPRINT: dict[str, Any] = {
    "seed": None,
    "template": None,
    "generation_overrides": {},
    "protocol": "mmgpt-eval",
}
_SHARD_SUFFIX = re.compile(r"\.shard-\d+-of-\d+$")


def _shared_run_keys() -> dict[str, Any]:
    """The ``run`` keys every task's fingerprint depends on: the fingerprinted settings (EvalConfig's
    metadata), the protocols' own settings and :data:`_RESOLVED_INTO_FINGERPRINT`."""
    keys = dict(_RESOLVED_INTO_FINGERPRINT)
    for f in settings():
        s = f.metadata["setting"]
        if s.fingerprint and s.run:
            keys[s.run] = f.default
        elif s.owner and s.record and s.record.startswith("run."):
            keys[s.record.split(".", 1)[1]] = None
    return keys


def _show(value: Any, tail: bool = False) -> str:
    """A value on one short line (``tail``: keep the end, e.g. of a path)."""
    text = "(none)" if value is None else " ".join(str(value).split())
    if len(text) <= 80:
        return text
    return "..." + text[-77:] if tail else text[:77] + "..."


def _get(d: Any, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, Mapping) else default


def _model_differences(old: Any, new: Mapping[str, Any]) -> list[str]:
    """What differs between two results' ``model`` sections, as the fingerprint's model identity sees it."""
    out = []
    ck_old, ck_new = _get(old, "checkpoint"), _get(new, "checkpoint")
    if _get(ck_old, "sha256") != _get(ck_new, "sha256"):
        p_old, p_new = _get(ck_old, "path"), _get(ck_new, "path")
        if p_old == p_new and p_old is not None:  # the same path, another file
            p_old, p_new = (
                f"{p_old} (sha256 {str(_get(ck_old, 'sha256'))[:12]})",
                f"{p_new} (sha256 {str(_get(ck_new, 'sha256'))[:12]})",
            )
        out.append(f"checkpoint {_show(p_old, tail=True)} vs {_show(p_new, tail=True)}")
    spec_old, spec_new = _get(old, "model_spec", {}), _get(new, "model_spec", {})
    spec_old, spec_new = (d if isinstance(d, Mapping) else {} for d in (spec_old, spec_new))
    keys = [
        k
        for k in sorted(set(spec_old) | set(spec_new))
        if k not in SPEC_NAMING_KEYS and _get(spec_old, k) != _get(spec_new, k)
    ]
    if len(keys) == 1:
        k = keys[0]
        out.append(f"model {k} {_show(_get(spec_old, k))} vs {_show(_get(spec_new, k))}")
    elif keys:
        names = _show(_get(spec_old, "name")), _show(_get(spec_new, "name"))
        out.append(f"model {names[0]} vs {names[1]} ({len(keys)} spec keys differ: {', '.join(keys)})")
    base_old, base_new = _get(old, "openflamingo_checkpoint_sha256"), _get(new, "openflamingo_checkpoint_sha256")
    if base_old != base_new:
        out.append(f"OpenFlamingo checkpoint sha256 {_show(base_old)[:12]} vs {_show(base_new)[:12]}")
    dev_old, dev_new = str(_get(old, "device", "")).split(":")[0], str(_get(new, "device", "")).split(":")[0]
    if dev_old != dev_new:
        out.append(f"device {_show(dev_old)} vs {_show(dev_new)}")
    if _get(old, "dtype") != _get(new, "dtype"):
        out.append(f"dtype {_show(_get(old, 'dtype'))} vs {_show(_get(new, 'dtype'))}")
    return out


def reuse_differences(earlier: RunResults, run: Mapping[str, Any], model: Mapping[str, Any] | None) -> list[str]:
    """Why this run (its results' ``run`` info and, once loaded, ``model`` section) cannot add its tasks
    to ``earlier``: each difference as ``what old vs new``; empty when it can."""
    out = []
    for key, default in _shared_run_keys().items():
        old, new = _get(earlier.run, key, default), _get(run, key, default)
        if key == "generation_overrides":
            old, new = old if isinstance(old, Mapping) else {}, new if isinstance(new, Mapping) else {}
            for k in sorted(set(old) | set(new)):
                if old.get(k) != new.get(k):
                    out.append(f"{k} {_show(old.get(k, '(task default)'))} vs {_show(new.get(k, '(task default)'))}")
        elif old != new:
            out.append(f"{key} {_show(old)} vs {_show(new)}")
    seeds_old, seeds_new = _get(_get(earlier.run, "trials"), "seeds"), _get(_get(run, "trials"), "seeds")
    if seeds_old != seeds_new:
        out.append(f"trials (seeds) {_show(seeds_old)} vs {_show(seeds_new)}")
    if model is not None:
        out += _model_differences(earlier.model, model)
    return out


def check_reuse(
    folder: Path, run: Mapping[str, Any], model: Mapping[str, Any] | None = None, tasks: Sequence[str] | None = None
) -> RunResults | None:
    """The run already in ``folder`` (its results.json), which a run with ``run`` info (and ``model``
    section: None before the model is loaded) adds its tasks to; None when there is none. A one-line
    UserError naming what differs when the two cannot share a results file, or (``tasks``: this run's)
    naming the log of an earlier task that does not belong to its results (results.check_samples)."""
    path = folder / "results.json"
    if not path.exists():
        return None
    how = "use another --output-dir, or --overwrite to replace that run"
    try:
        earlier = RunResults.load(path)
    except UserError as e:
        raise UserError(f"{e} (this run would add its tasks to it; {how})") from None
    diffs = reuse_differences(earlier, run, model)
    if diffs:
        raise UserError(
            f"the output folder holds a run with other settings ({'; '.join(diffs)}) and this run would add "
            f"its tasks to it; {how}",
            path,
        )
    for task in earlier.tasks:
        if tasks is not None and task not in tasks:  # kept as they are: they must still check out
            try:
                earlier.check_samples(task)
            except UserError as e:
                raise UserError(f"{e} (listed by {path}, which this run would add its tasks to; {how})") from None
    return earlier


def unlisted_logs(folder: Path, earlier: RunResults | None, tasks: Sequence[str]) -> list[Path]:
    """Per-sample logs in ``folder/samples`` that ``earlier``'s results do not list and no task of this
    run resumes: kept, and reported (an interrupted run of another task, or one whose results.json was
    replaced)."""
    listed = {Path(tr.samples_file) for tr in earlier.tasks.values()} if earlier else set()
    out = []
    for p in sorted((folder / "samples").glob("*.jsonl")):
        task = _SHARD_SUFFIX.sub("", p.name[: -len(".jsonl")])
        if task not in tasks and p.relative_to(folder) not in listed:
            out.append(p)
    return out


def open_output_folder(
    cfg: EvalConfig, tasks: Sequence[str], run: Mapping[str, Any], model: Mapping[str, Any]
) -> RunResults | None:
    """Before a run writes into its folder: the earlier run it adds its tasks to (:func:`check_reuse`), or
    None. ``--overwrite``: none; the per-sample logs of tasks this run does not have are moved aside
    (those it has resume, or are moved aside by the sample store when their fingerprint differs).
    Logs results.json does not list are reported, never dropped."""
    rank = distributed.rank_world()[0]
    earlier = None if cfg.overwrite else check_reuse(cfg.out_dir, run, model, tasks)
    if rank != 0:
        return earlier
    for p in unlisted_logs(cfg.out_dir, earlier, tasks):
        if cfg.overwrite:
            log.warning("%s: --overwrite: an earlier run's per-sample log moved to %s", p, move_aside(p).name)
        else:
            log.warning(
                "%s: a per-sample log that %s does not list (a run of its task that did not finish, or whose "
                "results were replaced); kept: run its task again with the same settings to finish it",
                p,
                cfg.out_dir / "results.json",
            )
    return earlier
