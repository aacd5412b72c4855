"""Judging a run: each task that declares :class:`~mmgpt_eval.taskapi.judging.Judging` has its
per-sample log turned into judged items and graded in the modes it declares (pairwise only against a
baseline run holding the same items); the judgments, the metrics of :mod:`mmgpt_eval.judge_results`
and what the judging cost are written beside the run. Replies are cached in ``RUN/judge/cache.jsonl``
by content: judging again makes only the calls whose input changed."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..compare import run_label
from ..errors import UserError
from ..io import atomic_writer, sha256_file
from ..progress import progress_bars
from ..judge.backends import Judge, JudgeReply, Messages
from ..judge.cache import JudgmentCache
from ..judge.grade import grade
from ..judge.modes import AnswerItem, Judgment, JudgeRunner, PairJudgment
from ..judge.prompts import RUBRIC
from ..judge.reliability import (
    fleiss_kappa,
    hierarchical_interval,
    krippendorff_alpha,
    outcome_matrix,
    parse_failure_rate,
    position_bias_rate,
    relative_score,
    score_difference_interval,
    score_matrix,
    verdict_counts,
)
from ..judge_results import CACHE_FILE, JUDGE_DIR, JudgeResults, JudgmentLine, TaskJudgment, read_judge, same_judging
from ..results import RunResults, read_run
from ..taskapi.judging import JudgedItem, Judging
from ..taskregistry import discover
from ..version import __version__

log = logging.getLogger("mmgpt_eval")
OUTCOME = {"a": "win", "tie": "tie", "b": "loss"}


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


class _Progress:
    """A judge that advances a progress bar (:func:`mmgpt_eval.progress.progress_bars`: count, rate,
    elapsed time, ETA; log lines off a terminal) for every call it answers. The bar's total grows by
    each batch's calls (``JudgeRunner.on_calls``): answers the cache holds cost no time and are not
    counted."""

    def __init__(self, judge: Judge, bars: Any):
        self._judge, self._bars = judge, bars
        self.concurrency = judge.concurrency
        self._task = bars.add_task("judge calls", total=0, rate="", unit="call")
        self._lock = threading.Lock()
        self._total = self._done = 0
        self._t0 = time.perf_counter()

    def more(self, n: int) -> None:
        with self._lock:
            self._total += n
            self._bars.update(self._task, total=self._total)

    def complete(self, messages: Messages, *, repeat: int = 0) -> JudgeReply:
        try:
            return self._judge.complete(messages, repeat=repeat)
        finally:
            with self._lock:
                self._done += 1
                rate = self._done / max(time.perf_counter() - self._t0, 1e-9)
                self._bars.update(self._task, advance=1, rate=f"{rate:.1f} calls/s")

    def identity(self) -> dict[str, Any]:
        return self._judge.identity()

    def check(self) -> None:
        self._judge.check()


def _judging_of(task: str, classes: dict[str, Any]) -> Judging | None:
    cls = classes.get(task)
    return getattr(cls, "JUDGING", None) if cls is not None else None


def _items(run: RunResults, task: str, judging: Judging, where: str) -> list[JudgedItem]:
    out = []
    for rec in run.samples(task):
        try:
            item = judging.item(rec)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise UserError(
                f"task {task}: sample {rec.get('id')!r} of the {where} run cannot be judged ({type(e).__name__}: {e})",
                run.samples_path(task),
            ) from None
        out.append(item)
    return out


def _answer(it: JudgedItem) -> AnswerItem:
    return AnswerItem(it.id, it.turns, it.image, it.image_id, it.reference)


def _rubric_lines(js: list[Judgment], mode: str, run: str) -> Iterator[JudgmentLine]:
    for j in js:
        yield JudgmentLine(j.item_id, mode, run, j.turn, j.repeat, j.scores, None, None, j.failure, j.reply)


def _pair_lines(ps: list[PairJudgment]) -> Iterator[JudgmentLine]:
    for p in ps:
        outcome = OUTCOME[p.outcome] if p.outcome is not None else None
        yield JudgmentLine(
            p.item_id,
            "pairwise",
            "candidate",
            p.turn,
            p.repeat,
            None,
            outcome,
            (p.first, p.second),
            p.failure,
            p.replies[0],
        )


def _groups(items: list[JudgedItem]) -> dict[str, set[str]]:
    """Breakdown group -> the ids of its items. A group of comma-separated names (MM-Vet's capability
    sets) puts its item in each named group, so the groups' counts may add up to more than the items."""
    out: dict[str, set[str]] = {}
    for it in items:
        for g in (it.group or "").split(","):
            if g.strip():
                out.setdefault(g.strip(), set()).add(it.id)
    return dict(sorted(out.items()))


def _grade_matrix(js: list[Judgment], ids: list[str], repeats: int) -> np.ndarray:
    """item x repeat matrix of 0-1 grades (NaN: a failed judgment), rows in ``ids`` order."""
    m = np.full((len(ids), repeats), np.nan)
    row = {i: k for k, i in enumerate(ids)}
    for j in js:
        if j.scores is not None and j.item_id in row:
            m[row[j.item_id], j.repeat] = j.scores["score"] / 10.0
    return m


def _overall(js: list[Judgment], dims: tuple[str, ...], repeats: int, ids: list[str]) -> np.ndarray:
    """item x repeat matrix of the mean over dimensions (rows in ``ids`` order)."""
    mats = []
    for d in dims:
        got_ids, m = score_matrix(js, d, repeats)
        row = {k: i for i, k in enumerate(got_ids)}
        mats.append(np.array([m[row[i]] if i in row else np.full(repeats, np.nan) for i in ids]))
    return np.mean(np.stack(mats), axis=0) if mats else np.zeros((len(ids), repeats))


def _rubric_metrics(js: list[Judgment], dims: tuple[str, ...], repeats: int, ids: list[str]) -> dict[str, Any]:
    """Per dimension the mean over conversations of each one's mean score (over its turns and
    repeats), the overall score (mean of the dimensions) and, with repeats, alpha per dimension."""
    metrics: dict[str, float | None] = {}
    for d in dims:
        _, m = score_matrix(js, d, repeats)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            metrics[f"rubric_{d}"] = _num(float(np.nanmean(np.nanmean(m, axis=1)))) if m.size else None
        if repeats >= 2:
            metrics[f"alpha_{d}"] = _num(krippendorff_alpha(m.T))
    per_dim = [metrics[f"rubric_{d}"] for d in dims]
    metrics["rubric_overall"] = float(np.mean(per_dim)) if per_dim and None not in per_dim else None  # type: ignore[arg-type]
    return metrics


class _TaskJudge:
    """One task's judging: the modes it declares over the candidate (and baseline) items."""

    def __init__(self, runner: JudgeRunner, judging: Judging, repeats: int):
        self.runner, self.judging, self.repeats = runner, judging, repeats
        self.rubric = RUBRIC if not judging.dimensions else dataclasses.replace(RUBRIC, dimensions=judging.dimensions)
        self.lines: list[JudgmentLine] = []
        self.metrics: dict[str, float | None] = {}
        self.base_metrics: dict[str, float | None] = {}
        self.intervals: dict[str, tuple[float, float]] = {}
        self.counts: dict[str, int] = {}
        self.breakdown: dict[str, dict[str, float | None]] = {}
        self.notes: list[str] = []

    def _interval(self, name: str, iv: Any) -> None:
        if not (math.isnan(iv.low) or math.isnan(iv.high)):
            self.intervals[name] = (iv.low, iv.high)

    def rubric_mode(self, cand: list[JudgedItem], base: list[JudgedItem] | None) -> None:
        dims = self.rubric.dimensions
        ids = [it.id for it in cand]
        js = self.runner.rubric([_answer(it) for it in cand], self.rubric)
        self.lines += _rubric_lines(js, "rubric", "candidate")
        self.metrics.update(_rubric_metrics(js, dims, self.repeats, ids))
        overall = _overall(js, dims, self.repeats, ids)
        if len(ids) >= 2:
            self._interval("rubric_overall", hierarchical_interval(overall))
        for g, gids in _groups(cand).items():
            sub = [j for j in js if j.item_id in gids]
            self.breakdown.setdefault(g, {}).update(
                {
                    k: v
                    for k, v in _rubric_metrics(sub, dims, self.repeats, sorted(gids)).items()
                    if not k.startswith("alpha_")
                }
            )
        if base is None:
            return
        bjs = self.runner.rubric([_answer(it) for it in base], self.rubric)
        self.lines += _rubric_lines(bjs, "rubric", "baseline")
        self.base_metrics.update(
            {k: v for k, v in _rubric_metrics(bjs, dims, self.repeats, ids).items() if not k.startswith("alpha_")}
        )
        b_overall = _overall(bjs, dims, self.repeats, ids)
        c, b = self.metrics.get("rubric_overall"), self.base_metrics.get("rubric_overall")
        if len(ids) >= 2 and c is not None and b is not None:
            iv = score_difference_interval(overall, b_overall)
            self.metrics["rubric_overall_delta"] = _num(iv.estimate)
            self._interval("rubric_overall_delta", iv)

    def relative_mode(self, cand: list[JudgedItem]) -> None:
        js = self.runner.relative([_answer(it) for it in cand])
        self.lines += _rubric_lines(js, "relative", "candidate")
        self.metrics["relative_score"] = _num(relative_score(js))
        for g, gids in _groups(cand).items():  # per category, as LLaVA-Bench reports it
            self.breakdown.setdefault(g, {})["relative_score"] = _num(
                relative_score([j for j in js if j.item_id in gids])
            )

    def grade_mode(self, cand: list[JudgedItem]) -> None:
        """MM-Vet's correctness grade: each item's mean over repeats of its 0-1 grade; the task's score is
        the mean over items (with the two-level interval), and per capability over the items that
        need it (an item with several capabilities counts toward each)."""
        js = grade(self.runner, [_answer(it) for it in cand])
        self.lines += _rubric_lines(js, "grade", "candidate")
        ids = [it.id for it in cand]
        m = _grade_matrix(js, ids, self.repeats)
        parsed = ~np.isnan(m)
        self.metrics["grade_score"] = _num(float(np.nanmean(np.nanmean(m, axis=1)))) if parsed.any() else None
        if len(ids) >= 2 and parsed.any(axis=1).all():
            self._interval("grade_score", hierarchical_interval(m))
        row = {i: k for k, i in enumerate(ids)}
        for g, gids in _groups(cand).items():
            sub = m[[row[i] for i in ids if i in gids]]
            ok = ~np.isnan(sub)
            self.breakdown.setdefault(g, {})["grade_score"] = (
                _num(float(np.nanmean(np.nanmean(sub[ok.any(axis=1)], axis=1)))) if ok.any() else None
            )

    def pairwise_mode(self, cand: list[JudgedItem], base: list[JudgedItem]) -> None:
        ps = self.runner.pairwise([_answer(it) for it in cand], [_answer(it) for it in base])
        self.lines += _pair_lines(ps)
        outcomes = [p.outcome for p in ps]
        for o in ("a", "tie", "b"):
            self.counts[OUTCOME[o]] = outcomes.count(o)
        m = outcome_matrix(ps, self.repeats)
        valid = ~np.isnan(m).all(axis=1)
        if valid.any():
            self.metrics["win_rate"] = float(np.nanmean(np.nanmean(m[valid], axis=1)))
        else:
            self.metrics["win_rate"] = None
        if valid.sum() >= 2:
            self._interval("win_rate", hierarchical_interval(m[valid]))
        self.metrics["position_bias"] = _num(position_bias_rate(ps))
        if self.repeats >= 2:
            counts = verdict_counts(ps)
            self.metrics["kappa_pairwise"] = _num(fleiss_kappa(counts)) if len(counts) else None


def _check_baseline(run: RunResults, base: RunResults, task: str) -> None:
    if task not in base.tasks:
        raise UserError(f"the baseline run has no task {task}; pairwise judging needs the same task", base.path)
    a, b = run.tasks[task], base.tasks[task]
    diffs = [k for k in ("version", "options", "template", "generation") if getattr(a, k) != getattr(b, k)]
    if diffs:
        raise UserError(
            f"task {task}: the baseline run used other task settings ({', '.join(diffs)}); judged answers are "
            "compared only between runs asked the same way",
            base.path,
        )


def judge_run(
    run_dir: str | os.PathLike,
    *,
    judge: Judge,
    baseline: str | os.PathLike | None = None,
    tasks: list[str] | None = None,
    repeats: int = 1,
    progress: bool = True,
) -> JudgeResults:
    """Judge the run in ``run_dir`` (its per-sample logs; nothing is generated) and write
    ``judge.json``, ``judge/<task>.jsonl`` and the cache ``judge/cache.jsonl`` into it. ``baseline``:
    a run folder with the same tasks and sample ids, for the pairwise mode and the rubric deltas
    (default: the baseline stored inside the run, if any). ``tasks``: judge only these."""
    run = read_run(run_dir)
    folder = run.run_dir
    assert folder is not None
    base = read_run(baseline) if baseline is not None else run.stored_baseline()
    if base is not None and baseline is None:
        base = read_run(base.path)  # type: ignore[arg-type]
    classes = discover()
    names = list(run.tasks) if tasks is None else tasks
    unknown = [t for t in names if t not in run.tasks]
    if unknown:
        raise UserError(f"--tasks: not in this run: {', '.join(unknown)} (it has {', '.join(run.tasks)})", run.path)
    judged = {t: j for t in names if (j := _judging_of(t, classes)) is not None}
    if not judged:
        raise UserError(f"no task of this run is judged by a model ({', '.join(names)} declare no JUDGING)", run.path)
    for t in names:
        if t not in judged:
            log.info("task %s declares no judging; skipped", t)
    items: dict[str, tuple[list[JudgedItem], list[JudgedItem] | None]] = {}
    for t, judging in judged.items():
        cand = _items(run, t, judging, "candidate")
        base_items = None
        if base is not None:
            _check_baseline(run, base, t)
            base_items = _items(base, t, judging, "baseline")
            ids_c, ids_b = {it.id for it in cand}, {it.id for it in base_items}
            if ids_c != ids_b:
                diff = sorted(ids_c ^ ids_b)
                raise UserError(
                    f"task {t}: the baseline run holds other samples ({len(diff)} ids in one run only, e.g. "
                    f"{', '.join(diff[:3])}); judge against a baseline run on the same samples",
                    base.path,
                )
        items[t] = (cand, base_items)

    judge_dir = folder / JUDGE_DIR
    judge_dir.mkdir(exist_ok=True)
    cache = JudgmentCache(judge_dir / CACHE_FILE)
    bars = progress_bars(progress)
    watched = _Progress(judge, bars) if progress else None
    runner = JudgeRunner(watched or judge, cache, repeats=repeats)  # type: ignore[arg-type]
    if watched is not None:
        runner.on_calls = watched.more
    out: dict[str, TaskJudgment] = {}
    with bars:
        for t, (cand, base_items) in items.items():
            judging = judged[t]
            before = (runner.judgments, runner.parse_failures, runner.call_failures)
            tj = _TaskJudge(runner, judging, repeats)
            for mode in judging.modes:
                if mode == "rubric":
                    tj.rubric_mode(cand, base_items)
                elif mode == "relative":
                    tj.relative_mode(cand)
                elif mode == "grade":
                    tj.grade_mode(cand)
                elif base_items is not None:
                    tj.pairwise_mode(cand, base_items)
                else:
                    tj.notes.append("pairwise judging skipped: no baseline run (--baseline RUN)")
            n, pf, cf = (a - b for a, b in zip((runner.judgments, runner.parse_failures, runner.call_failures), before))
            tj.counts.update(judgments=n, parse_failures=pf, call_failures=cf)
            tj.metrics["parse_failure_rate"] = _num(parse_failure_rate(pf, n))
            rel = f"{JUDGE_DIR}/{t}.jsonl"
            with atomic_writer(folder / rel) as f:
                for line in tj.lines:
                    f.write(_json_line(line.to_dict()))
            out[t] = TaskJudgment(
                samples_file=run.tasks[t].samples_file,
                samples_sha256=sha256_file(run.samples_path(t)),
                judgments_file=rel,
                n_items=len(cand),
                metrics=tj.metrics,
                intervals=tj.intervals,
                counts=tj.counts,
                baseline_samples_sha256=sha256_file(base.samples_path(t)) if base is not None else None,
                baseline_metrics=tj.base_metrics,
                breakdown=tj.breakdown,
                notes=tj.notes,
            )
    prov = runner.provenance()
    st = cache.stats
    res = JudgeResults(
        judge={**runner.identity, "templates": prov["templates"]},
        repeats=repeats,
        tasks=out,
        cost={
            "calls": st.calls + st.failed_calls,
            "cached": st.hits,
            "retries": st.retries,
            "failures": st.failed_calls,
            "prompt_tokens": st.prompt_tokens,
            "completion_tokens": st.completion_tokens,
        },
        baseline=(
            {"run_dir": str(Path(str(base.run_dir)).resolve()), "label": run_label(base)} if base is not None else None
        ),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        mmgpt_eval_version=__version__,
        run_dir=folder,
    )
    _keep_earlier_tasks(res, folder)
    res.write(folder)
    return res


def _keep_earlier_tasks(res: JudgeResults, folder: Path) -> None:
    """Judging some tasks of a run keeps the other tasks' earlier judging in judge.json when it was done
    by the same judge, with the same repeats and baseline, on the per-sample logs still in the folder;
    otherwise it is dropped, with a log line saying so."""
    earlier = read_judge(folder, check_logs=False)
    if earlier is None:
        return

    same = same_judging(earlier, res) and earlier.baseline == res.baseline
    old_t = earlier.judge.get("templates") or {}
    for t, tj in earlier.tasks.items():
        if t in res.tasks:
            continue
        log_path = folder / tj.samples_file
        if same and log_path.is_file() and sha256_file(log_path) == tj.samples_sha256:
            res.tasks[t] = tj
            res.judge["templates"] = dict(sorted({**old_t, **res.judge.get("templates", {})}.items()))
        else:
            log.warning(
                "task %s: its earlier judging is dropped from judge.json (%s); judge it again with --tasks %s",
                t,
                "another judge, repeats or baseline" if not same else "its per-sample log changed since",
                t,
            )


def _json_line(d: dict[str, Any]) -> str:
    import json

    return json.dumps(d, ensure_ascii=False) + "\n"
