"""The evaluation runner: tasks -> batched generation -> per-sample logs (resumable) -> results.

Per-sample records stream to ``OUTDIR/samples/<task>.jsonl`` as soon as their chunk finishes (flushed
and fsynced). The file starts with a header holding the run's *fingerprint* (model + checkpoint
hashes, template hash, generation settings, few-shot settings, task options and data). Re-running
the same command skips finished samples; a different fingerprint moves the old file aside
(``.stale-<time>``) instead of mixing results. A line cut short by a kill is dropped on resume.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError
from .model.build import LoadedModel
from .model.generate import GenerationSettings, Generator, PromptInput
from .results import SAMPLES_SCHEMA, RunResults, TaskResult, provenance
from .taskapi import Output, RunContext, Sample, Task, fixed_subset
from .templates import Template, get_template, prompt_sha256

log = logging.getLogger("mmgpt_eval")


@dataclass
class RunConfig:
    output_dir: Path
    limit: int | None = None
    batch_size: int = 8
    num_fewshot: int = 0
    fewshot_zero_mode: str = "text-demos"
    fewshot_selection: str = "random"
    template: str | None = None
    seed: int = 0
    history_mode: str = "self"
    generation_overrides: dict[str, Any] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    progress: bool = True
    share_prefix: bool = True  # compute a batch's shared prompt prefix once (model/generate.py)
    extra_run_info: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedTask:
    task: Task
    samples: list[Sample]
    n_available: int
    template: Template
    settings: GenerationSettings


def prepare_task(task: Task, cfg: RunConfig) -> PreparedTask:
    """Load and subset a task's data, resolve its template and settings (no model needed)."""
    template = get_template(cfg.template) if cfg.template else get_template(task.default_template)
    task.check_template(template)
    if cfg.num_fewshot and template.demo is None:
        raise UserError(f"--num-fewshot needs a few-shot template (of-vqa, of-caption); task {task.name} uses "
                        f"{template.name}")
    samples = task.load()
    if not samples:
        raise UserError(f"task {task.name} has no samples")
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise UserError(f"task {task.name} has duplicate sample ids")
    subset = fixed_subset(task.name, samples, cfg.limit)
    settings = task.generation_settings(template)
    settings = GenerationSettings(**{**settings.to_dict(), **cfg.generation_overrides, "seed": cfg.seed})
    return PreparedTask(task, subset, len(samples), template, settings)


def model_identity(loaded: LoadedModel) -> dict[str, Any]:
    spec = loaded.spec.to_dict()
    for k in ("name", "source", "description", "device"):
        spec.pop(k, None)
    ck = loaded.checkpoint
    return {"spec": spec, "checkpoint_sha256": ck.sha256 if ck else None,
            "openflamingo_checkpoint_sha256": loaded.base_checkpoint_sha256, "device_type": loaded.device.type,
            "dtype": str(loaded.dtype)}


def _data_signature(task: Task) -> dict[str, Any]:
    sig = {}
    for name, p in task.data_files().items():
        if p is None:
            continue
        p = Path(p)
        sig[name] = {"path": str(p.resolve()), "size": p.stat().st_size if p.is_file() else None}
    return sig


def fingerprint(pt: PreparedTask, cfg: RunConfig, identity: dict[str, Any]) -> str:
    t = pt.task
    payload = {
        "task": t.name, "task_version": t.version, "options": t.public_options(), "data": _data_signature(t),
        "template": {"name": pt.template.name, "sha256": pt.template.sha256},
        "generation": pt.settings.to_dict(), "num_fewshot": cfg.num_fewshot,
        "fewshot_zero_mode": cfg.fewshot_zero_mode if pt.template.demo else None,
        "fewshot_selection": cfg.fewshot_selection if pt.template.demo and cfg.num_fewshot else None,
        "history_mode": cfg.history_mode if t.multi_round else None, "model": identity,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class SampleStore:
    """Append-only JSONL of finished samples with a fingerprint header."""

    def __init__(self, path: Path, task: str, fp: str):
        self.path = path
        self.task = task
        self.fp = fp

    def load_done(self, readonly: bool = False) -> dict[str, dict[str, Any]]:
        """Finished records by id. ``readonly``: never move a stale file or truncate (other ranks)."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        done: dict[str, dict[str, Any]] = {}
        good_bytes = 0
        header_ok = False
        for i, line in enumerate(lines):
            if not line.strip():
                good_bytes += len(line) + (1 if i < len(lines) - 1 else 0)
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                if i >= len(lines) - 2:  # the line being written when the process died
                    log.warning("%s: dropping an incomplete last line (interrupted run)", self.path)
                    break
                raise UserError(f"corrupt line {i + 1} in the per-sample log; delete the file to start over",
                                self.path) from None
            if i == 0:
                header = obj.get(SAMPLES_SCHEMA) if isinstance(obj, dict) else None
                if not header or header.get("fingerprint") != self.fp:
                    if readonly:
                        return {}
                    stale = self.path.with_name(f"{self.path.name}.stale-{int(time.time())}")
                    os.replace(self.path, stale)
                    log.warning("%s: the model, checkpoint, template, generation or data settings changed; "
                                "earlier results moved to %s and the task starts over", self.path, stale.name)
                    return {}
                header_ok = True
            elif header_ok:
                done[str(obj["id"])] = obj
            good_bytes += len(line) + 1
        if good_bytes < len(raw) and not readonly:
            with self.path.open("r+b") as f:
                f.truncate(good_bytes)
        return done

    def start(self) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {SAMPLES_SCHEMA: {"version": 1, "task": self.task, "fingerprint": self.fp}}
            with self.path.open("w", encoding="utf-8") as f:
                f.write(json.dumps(header) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def rewrite(self, records: list[dict[str, Any]]) -> None:
        """Atomically replace the file (header + records), e.g. after per-sample metrics were filled in."""
        from .io import atomic_writer

        with atomic_writer(self.path) as f:
            f.write(json.dumps({SAMPLES_SCHEMA: {"version": 1, "task": self.task, "fingerprint": self.fp}}) + "\n")
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")

    def append(self, records: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _settings_key(s: GenerationSettings) -> str:
    return json.dumps(s.to_dict(), sort_keys=True)


def process_chunk(pt: PreparedTask, chunk: list[Sample], gen: Generator, ctx: RunContext,
                  batch_size: int) -> dict[str, dict[str, Output]]:
    """Run every round of every request of ``chunk``; returns outputs by sample id and request key."""
    task = pt.task
    outputs: dict[str, dict[str, Output]] = {s.id: {} for s in chunk}
    max_rounds = max(task.rounds(s) for s in chunk)
    for r in range(max_rounds):
        groups: dict[tuple[str, str], list[tuple[Sample, Any]]] = defaultdict(list)
        for s in chunk:
            if r < task.rounds(s):
                for q in task.requests(s, r, outputs[s.id], ctx):
                    st = q.settings or pt.settings
                    groups[(q.template.stop, _settings_key(st))].append((s, q))
        for (stop, _), items in groups.items():
            st = items[0][1].settings or pt.settings
            prompts = [PromptInput(q.prompt, list(q.images), q.image_keys) for _, q in items]
            gens = gen.generate_grouped(prompts, st, stop, batch_size=batch_size)
            for (s, q), g in zip(items, gens):
                outputs[s.id][q.key] = Output(
                    prompt=q.prompt, prompt_sha256=prompt_sha256(q.prompt, q.image_keys), raw=g.text,
                    prediction=task.postprocess(q, g), token_ids=g.token_ids, stopped_on_eos=g.stopped_on_eos,
                    num_new_tokens=g.num_new_tokens, max_new_tokens=st.max_new_tokens, image_keys=q.image_keys)
    return outputs


def make_record(pt: PreparedTask, sample: Sample, outs: dict[str, Output]) -> dict[str, Any]:
    metrics = pt.task.score_sample(sample, outs)
    main = outs.get("main") or next(iter(outs.values()))
    rec: dict[str, Any] = {
        "id": sample.id,
        "prompt_sha256": main.prompt_sha256,
        "template": pt.template.name,
        "template_sha256": pt.template.sha256,
        "prompt": main.prompt,
        "images": main.image_keys,
        "raw": main.raw,
        "prediction": main.prediction,
        "references": pt.task.references_for_log(sample),
        "metrics": metrics,
        "generated_tokens": sum(o.num_new_tokens for o in outs.values()),
        "stopped_on_eos": main.stopped_on_eos,
        "meta": sample.meta,
    }
    if len(outs) > 1 or "main" not in outs:
        rec["outputs"] = {k: o.to_dict() for k, o in outs.items()}
    return rec


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def run_task(pt: PreparedTask, loaded: LoadedModel, gen: Generator, cfg: RunConfig, progress) -> TaskResult | None:
    """Evaluate one task. Under torchrun every rank takes every world-size-th pending sample (no
    padding duplicates), streams its records to its own shard file (resume per shard), and rank 0
    gathers all records, writes the per-sample log in sample order and returns the result (other
    ranks return None)."""
    task = pt.task
    rank, world = dist_info()
    identity = model_identity(loaded)
    fp = fingerprint(pt, cfg, identity)
    rel = Path("samples") / f"{task.name}.jsonl"
    store = SampleStore(cfg.output_dir / rel, task.name, fp)
    if rank == 0:
        done = store.load_done()
        store.start()
    _barrier()
    if rank != 0:
        done = store.load_done(readonly=True)
    for shard in sorted((cfg.output_dir / "samples").glob(f"{task.name}.shard-*.jsonl")):
        done.update(SampleStore(shard, task.name, fp).load_done(readonly=True))
    out_store = store
    if world > 1:
        out_store = SampleStore(cfg.output_dir / "samples" / f"{task.name}.shard-{rank}-of-{world}.jsonl", task.name, fp)
        out_store.load_done()
        out_store.start()
    wanted = {s.id for s in pt.samples}
    pending = [s for s in pt.samples if s.id not in done][rank::world]
    ctx = RunContext(seed=cfg.seed, num_fewshot=cfg.num_fewshot, fewshot_zero_mode=cfg.fewshot_zero_mode,
                     template=pt.template, history_mode=cfg.history_mode, model=loaded,
                     fewshot_selection=cfg.fewshot_selection, cache_dir=cfg.output_dir / "cache")
    # sort by image count, first-round prompt length and image, so batches pad little and share images
    keys = {s.id: (len(s.images), len(task.requests(s, 0, {}, ctx)[0].prompt), s.images[0].key if s.images else "")
            for s in pending}
    pending.sort(key=lambda s: keys[s.id])
    resumed = len(wanted & set(done))
    bar = progress.add_task(task.name if world == 1 else f"{task.name} (rank {rank}/{world})",
                            total=len(pending) + (resumed if world == 1 else 0),
                            completed=resumed if world == 1 else 0, rate="")
    t0 = time.perf_counter()
    new_records: list[dict[str, Any]] = []
    n_tokens = 0
    start = 0
    while start < len(pending):
        size = gen.batch_cap(cfg.batch_size)
        chunk = pending[start:start + size]
        outs = process_chunk(pt, chunk, gen, ctx, size)
        records = [make_record(pt, s, outs[s.id]) for s in chunk]
        out_store.append(records)
        new_records.extend(records)
        n_tokens += sum(r["generated_tokens"] for r in records)
        start += len(chunk)
        el = time.perf_counter() - t0
        progress.update(bar, advance=len(chunk), rate=f"{len(new_records) / el:.1f} samples/s, {n_tokens / el:.0f} tok/s")
    wall = time.perf_counter() - t0
    if world > 1:
        import torch.distributed as dist

        gathered: list[Any] = [None] * world if rank == 0 else None  # type: ignore[assignment]
        dist.gather_object(new_records, gathered, dst=0)
        if rank != 0:
            return None
        new_records = [r for part in gathered for r in part]
    for r in new_records:
        done[r["id"]] = r
    n_gen = len(new_records)
    n_tokens = sum(r["generated_tokens"] for r in new_records)
    records = [done[s.id] for s in pt.samples]
    agg = task.aggregate(pt.samples, records)
    for r in records:
        r["metrics"].update(agg.per_sample.get(r["id"], {}))
    # the final log: this task's samples in task order (identical for any world size), then older extras
    store.rewrite(records + [r for k, r in done.items() if k not in wanted])
    for shard in (cfg.output_dir / "samples").glob(f"{task.name}.shard-*.jsonl"):
        shard.unlink()
    notes = list(agg.notes)
    if resumed:
        notes.append(f"resumed: {resumed} samples were taken from an earlier run with the same fingerprint")
    info = {k: v.to_dict() for k, v in task.metric_info().items()}
    subset = ("all samples" if cfg.limit is None or cfg.limit >= pt.n_available else
              f"first {cfg.limit} of {pt.n_available} samples ordered by sha256('{task.name}:<id>')")
    return TaskResult(
        task=task.name, version=task.version, metrics=agg.metrics, metric_info=info,
        primary_metric=task.primary_metric, n_samples=len(pt.samples), n_available=pt.n_available,
        limit=cfg.limit, subset=subset, template={"name": pt.template.name, "sha256": pt.template.sha256},
        generation=pt.settings.to_dict(), num_fewshot=cfg.num_fewshot,
        fewshot_mode=((f"{cfg.fewshot_selection} demos" if cfg.num_fewshot else cfg.fewshot_zero_mode)
                      if pt.template.demo else None), options=task.public_options(),
        breakdown=agg.breakdown, notes=notes,
        timing={"wall_s": round(wall, 3), "samples_generated": n_gen, "samples_resumed": resumed,
                "samples_per_s": round(n_gen / wall, 3) if wall > 0 and n_gen else None,
                "generated_tokens": n_tokens, "tokens_per_s": round(n_tokens / wall, 1) if wall > 0 and n_gen else None,
                "world_size": world, "batch_size": gen.batch_cap(cfg.batch_size)},
        samples_file=str(rel), fingerprint=fp)


def run_evaluation(prepared: list[PreparedTask], loaded: LoadedModel, cfg: RunConfig) -> RunResults:
    t0 = time.perf_counter()
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    gen = Generator(loaded, share_prefix=cfg.share_prefix)
    run_info = {"argv": cfg.argv, "output_dir": str(cfg.output_dir), "seed": cfg.seed, "batch_size": cfg.batch_size,
                "limit": cfg.limit, "num_fewshot": cfg.num_fewshot, "fewshot_zero_mode": cfg.fewshot_zero_mode,
                "fewshot_selection": cfg.fewshot_selection,
                "template": cfg.template, "history_mode": cfg.history_mode,
                "generation_overrides": cfg.generation_overrides, "share_prefix": cfg.share_prefix,
                "model_load_s": round(loaded.load_seconds, 3),
                **cfg.extra_run_info}
    results = RunResults(run=run_info, model=loaded.provenance(), tasks={}, provenance={})
    rank, world = dist_info()
    with _progress(cfg.progress and rank == 0) as progress:
        for pt in prepared:
            tr = run_task(pt, loaded, gen, cfg, progress)
            if rank != 0:
                continue
            results.tasks[pt.task.name] = tr
            results.provenance = provenance(time.perf_counter() - t0)
            results.provenance["world_size"] = world
            results.save(cfg.output_dir / "results.json")
    _barrier()
    return results if rank == 0 else None
