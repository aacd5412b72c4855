"""``mmgpt-eval bench --openflamingo``: mmgpt-eval's runner against OpenFlamingo's OWN evaluation loop.

The peer is not a look-alike: it is the installed open-flamingo wheel's ``evaluate_vqa`` /
``evaluate_captioning`` (``open_flamingo/eval/evaluate.py``), run on the same loaded model by
:func:`mmgpt_eval_dev.peers.openflamingo.run_openflamingo_eval`, on the same official-format files that
``mmgpt-eval run --protocol openflamingo`` reads, with OpenFlamingo's protocol (its prompts, its seeded
evaluation subset and demo draws, 3 beams, 5 new tokens for VQA / 20 for captions, its post-processing).
Both sides are timed END TO END on a model that is already loaded: reading the data files, drawing the
subset and the demos, building prompts, reading and preprocessing images, generation, post-processing
and scoring (VQA accuracy / CIDEr).

Paths (every pass starts cold: a fresh output folder, a fresh feature cache, images read again):

* ``openflamingo-eval``: OpenFlamingo's evaluate loop at its default batch size 8.
* ``mmgpt-eval-b8`` / ``mmgpt-eval-auto``: what ``mmgpt-eval run --protocol openflamingo`` does after
  loading the model -- :func:`mmgpt_eval.api.prepare_tasks` + :func:`mmgpt_eval.runner.run_evaluation`
  (records and results written to a fresh folder) -- at batch size 8 and at ``auto``.
* ``per-sample-loop``: the MultiModal-GPT demo style -- one prompt, one image, one ``generate`` at a
  time -- realised as OpenFlamingo's same evaluate loop at batch size 1 (so it also reads, prompts,
  post-processes and scores exactly as the others; it is the per-sample peer of both).

Bare-generate bound (``overhead_vs_bare_generate``): during each ``mmgpt-eval-auto`` pass the two model
calls that do the work -- ``MMFlamingo.encode_vision`` (once per distinct image, as the runner calls it)
and ``MMFlamingo.generate`` (the runner's own batches, its padded ids, its precomputed features and
generation kwargs, with the runner's model-side speed-ups on: each prompt's first forward run once for
all its beams, image keys/values computed once per call) -- are timed (perf_counter around each call).
Their sum is the time bare model calls need for exactly the runner's batches; the runner's wall time
over that sum is the harness overhead (1.00 = none). The rest is profiled: task preparation (files, subset, prompts),
image read + preprocessing (``Generator.pixels``), and everything else (tokenisation, padding, decoding,
post-processing, scoring, writing records).

Data (offline): easy-VQA test questions on the first ``vqa_images`` test images, written as VQAv2 files
(``val2014/COCO_val2014_%012d.jpg``, questions/annotations JSON with the keys OpenFlamingo's scorer
reads; 10 identical annotator answers), easy-VQA train questions as the train split (demo pool); and a
captions set: easy-VQA images with captions generated from their colour/shape answers, as a Karpathy
``dataset_coco.json`` + ``captions_val2014.json``.

Memory: each path's peak RSS is measured in a FRESH PROCESS that loads the model and runs that path once
(``python -m mmgpt_eval_dev.bench_openflamingo --one-pass ...``), so the figure is the path's own, not the
benchmark process's lifetime peak. ``rss_after_load_mb`` is that process's RSS before the pass.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .bench import sync_device, timed_call

TARGETS = {
    "ratio_vs_openflamingo_eval_matched_batch": 1.5,
    "ratio_vs_openflamingo_eval": 3.0,
    "ratio_vs_per_sample_loop": 10.0,
}
OVERHEAD_TARGET = 1.15  # runner wall time <= 1.15 x the bare-generate bound
LOOPS = ("openflamingo-eval", "mmgpt-eval-b8", "mmgpt-eval-auto", "per-sample-loop")
MODELS: dict[str, dict[str, Any]] = {
    "v2": {"model": "tiny-openflamingo", "ckpt": "tiny-mmgpt"},
    "v1": {
        "model": str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mmgpt_v1.toml"),
        "ckpt": str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "mmgpt_v1" / "mmgpt_checkpoint_0.pt"),
    },
}
PROTOCOLS = {"vqa": ("vqav2", "vqav2"), "caption": ("coco", "coco")}  # kind -> (OpenFlamingo task, mmgpt task)
_COLORS = ("red", "green", "blue", "black", "gray", "yellow", "teal", "brown")
_SHAPES = ("circle", "rectangle", "triangle")


# ------------------------------------------------------------------------------------------ data
@dataclass
class BenchData:
    kind: str  # vqa | caption
    root: Path
    data: dict[str, str]  # run_openflamingo_eval's data paths
    options: dict[str, str]  # mmgpt-eval task options
    n_test: int
    n_train: int


def _jpeg(src: str, dst: Path) -> None:
    from PIL import Image

    if not dst.exists():
        with Image.open(src) as im:
            im.convert("RGB").save(dst, quality=95)


def _by_image(split: str, n_images: int) -> list[tuple[int, str, list]]:
    """The first ``n_images`` images of an easy-VQA split (by image id) and their samples."""
    from mmgpt_eval.taskapi.datasets import load_easyvqa_split

    groups: dict[int, list] = {}
    path: dict[int, Any] = {}  # easy-VQA images are files
    for s in load_easyvqa_split(split):
        img = s.meta["image_id"]
        groups.setdefault(img, []).append(s)
        path[img] = s.images[0].path
    ids = sorted(groups)[:n_images]
    return [(i, path[i], groups[i]) for i in ids]


def _vqa_split(root: Path, folder: str, images: list[tuple[int, str, list]], qid_base: int) -> tuple[Path, Path, Path]:
    from mmgpt_eval.taskapi.datasets import easyvqa_answer_type

    img_dir = root / folder
    img_dir.mkdir(parents=True, exist_ok=True)
    questions, annotations = [], []
    for image_id, src, samples in images:
        coco_id = image_id + 1  # COCO ids start at 1
        _jpeg(src, img_dir / f"COCO_{folder}_{coco_id:012d}.jpg")
        for s in samples:
            qid = qid_base + int(s.id)
            a = s.references[0]
            atype = easyvqa_answer_type(a)
            questions.append({"image_id": coco_id, "question": s.fields["question"], "question_id": qid})
            annotations.append(
                {
                    "question_id": qid,
                    "image_id": coco_id,
                    "question_type": "what is the",
                    "answer_type": "yes/no" if atype == "yes/no" else "other",
                    "multiple_choice_answer": a,
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)],
                }
            )
    info = {"description": "easy-VQA in the VQAv2 format (mmgpt-eval bench)", "version": "2.0", "year": 2017}
    lic = {"name": "easy-VQA", "url": "https://github.com/vzhou842/easy-VQA"}
    qpath, apath = root / f"v2_OpenEnded_mscoco_{folder}_questions.json", root / f"v2_mscoco_{folder}_annotations.json"
    qpath.write_text(
        json.dumps(
            {
                "info": info,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "license": lic,
                "data_subtype": folder,
                "questions": questions,
            }
        )
    )
    apath.write_text(
        json.dumps(
            {"info": info, "license": lic, "data_type": "mscoco", "data_subtype": folder, "annotations": annotations}
        )
    )
    return img_dir, qpath, apath


def write_easyvqa_vqav2(root: str | os.PathLike, *, test_images: int = 100, train_images: int = 30) -> BenchData:
    """easy-VQA as VQAv2 files: every test question about the first ``test_images`` test images (about 10
    per image), every train question about the first ``train_images`` train images (the demo pool)."""
    root = Path(root) / "vqav2"
    test, train = _by_image("test", test_images), _by_image("train", train_images)
    tr_img, tr_q, tr_a = _vqa_split(root, "train2014", train, 9_000_000)
    te_img, te_q, te_a = _vqa_split(root, "val2014", test, 1_000_000)
    data = {
        "train_image_dir_path": str(tr_img),
        "train_questions_json_path": str(tr_q),
        "train_annotations_json_path": str(tr_a),
        "test_image_dir_path": str(te_img),
        "test_questions_json_path": str(te_q),
        "test_annotations_json_path": str(te_a),
    }
    options = {
        "questions": str(te_q),
        "annotations": str(te_a),
        "images": str(te_img),
        "train_questions": str(tr_q),
        "train_annotations": str(tr_a),
        "train_images": str(tr_img),
    }
    return BenchData("vqa", root, data, options, sum(len(x[2]) for x in test), sum(len(x[2]) for x in train))


def _caption_of(samples: list) -> list[str]:
    shape = color = None
    for s in samples:
        a = s.references[0]
        if a in _SHAPES:
            shape = a
        elif a in _COLORS:
            color = a
    shape, color = shape or "shape", color or "colored"
    return [
        f"a {color} {shape}",
        f"A {color} {shape} on a plain background.",
        f"a picture of a {color} {shape}",
        f"one {color} {shape} in the image",
        f"a simple {shape} that is {color}",
    ]


def write_easyvqa_captions(root: str | os.PathLike, *, test_images: int = 100, train_images: int = 30) -> BenchData:
    """easy-VQA images with captions generated from their colour and shape answers: a Karpathy
    ``dataset_coco.json`` (test: the first ``test_images`` test images; train: the first ``train_images``
    train images) + ``annotations/captions_val2014.json`` of the test images."""
    root = Path(root) / "coco"
    for d in ("train2014", "val2014", "annotations"):
        (root / d).mkdir(parents=True, exist_ok=True)
    entries, val_images = [], []
    val_anns: list[dict[str, Any]] = []
    plan = [("test", "val2014", x) for x in _by_image("test", test_images)] + [
        ("train", "train2014", x) for x in _by_image("train", train_images)
    ]
    for imgid, (split, folder, (image_id, src, samples)) in enumerate(plan):
        cocoid = (100_000 if split == "test" else 500_000) + image_id
        fname = f"COCO_{folder}_{cocoid:012d}.jpg"
        _jpeg(src, root / folder / fname)
        caps = _caption_of(samples)
        sents = [
            {"tokens": c.lower().strip(".").split(), "raw": c, "imgid": imgid, "sentid": 10 * imgid + k}
            for k, c in enumerate(caps)
        ]
        entries.append(
            {
                "filepath": folder,
                "filename": fname,
                "imgid": imgid,
                "split": split,
                "sentences": sents,
                "sentids": [x["sentid"] for x in sents],
                "cocoid": cocoid,
            }
        )
        if split == "test":
            val_images.append({"id": cocoid, "file_name": fname, "width": 64, "height": 64, "license": 1})
            val_anns += [{"image_id": cocoid, "id": len(val_anns) + k + 1, "caption": c} for k, c in enumerate(caps)]
    kj = root / "dataset_coco.json"
    kj.write_text(json.dumps({"images": entries, "dataset": "coco"}))
    ann = root / "annotations" / "captions_val2014.json"
    ann.write_text(
        json.dumps(
            {
                "info": {"description": "easy-VQA captions (mmgpt-eval bench)", "version": "1.0", "year": 2014},
                "licenses": [{"id": 1, "name": "easy-VQA", "url": "https://github.com/vzhou842/easy-VQA"}],
                "type": "captions",
                "images": val_images,
                "annotations": val_anns,
            }
        )
    )
    data = {
        "train_image_dir_path": str(root / "train2014"),
        "val_image_dir_path": str(root / "val2014"),
        "karpathy_json_path": str(kj),
        "annotations_json_path": str(ann),
    }
    return BenchData("caption", root, data, {"karpathy_json": str(kj), "images": str(root)}, test_images, train_images)


def write_data(root: str | os.PathLike, kind: str, *, test_images: int, train_images: int) -> BenchData:
    writer = write_easyvqa_vqav2 if kind == "vqa" else write_easyvqa_captions
    return writer(root, test_images=test_images, train_images=train_images)


# ------------------------------------------------------------------------------------------ the paths
@dataclass
class Workload:
    bd: BenchData
    num_samples: int  # OpenFlamingo's --num_samples (-1: all)
    num_shots: int = 0
    seed: int = 42
    query_set_size: int | None = None  # default: the whole train split
    num_beams: int = 3  # OpenFlamingo's protocol; 1: greedy (evaluate_vqa / evaluate_captioning's own parameter)

    @property
    def qss(self) -> int:
        return self.query_set_size or self.bd.n_train


def _of_predictions(result, kind: str) -> dict[str, str]:
    key = ("question_id", "answer") if kind == "vqa" else ("image_id", "caption")
    return {str(p[key[0]]): p[key[1]] for p in result.predictions}


def run_openflamingo_path(loaded, w: Workload, out_dir: Path, batch_size: int = 8) -> tuple[dict[str, str], float]:
    """OpenFlamingo's own evaluate loop; (predictions by sample id, score)."""
    from .peers.openflamingo import run_openflamingo_eval

    task = PROTOCOLS[w.bd.kind][0]
    res = run_openflamingo_eval(
        loaded,
        task,
        data=w.bd.data,
        num_shots=w.num_shots,
        seed=w.seed,
        batch_size=batch_size,
        num_samples=w.num_samples,
        query_set_size=w.qss,
        output_dir=out_dir,
        num_beams=None if w.num_beams == 3 else w.num_beams,
    )
    assert res.score is not None  # every task of the bench has a score
    return _of_predictions(res, w.bd.kind), res.score


def run_mmgpt_path(loaded, w: Workload, out_dir: Path, batch_size: int) -> tuple[dict[str, str], float]:
    """What ``mmgpt-eval run --protocol openflamingo`` does once the model is loaded; (predictions, score
    on OpenFlamingo's scale: VQA accuracy x100, CIDEr x100)."""
    from mmgpt_eval.api import prepare_tasks
    from mmgpt_eval.config import EvalConfig
    from mmgpt_eval.runner import run_evaluation

    task = PROTOCOLS[w.bd.kind][1]
    cfg = EvalConfig(
        output_dir=out_dir,
        batch_size=batch_size,
        num_fewshot=w.num_shots,
        seed=w.seed,
        protocol="openflamingo",
        of_num_samples=None if w.num_samples < 0 else w.num_samples,
        of_query_set_size=w.qss,
        progress=False,
        num_beams=None if w.num_beams == 3 else w.num_beams,
    )
    prepared = prepare_tasks([task], cfg, task_options={task: dict(w.bd.options)})
    results = run_evaluation(prepared, loaded, cfg)
    assert results is not None  # one process
    preds = {r["id"]: r["prediction"] for r in results.samples(task)}
    m: dict[str, Any] = results.tasks[task].metrics
    score = m["accuracy"] if w.bd.kind == "vqa" else 100 * m["CIDEr"]
    return preds, score


class ModelCallTimer:
    """Times ``encode_vision`` and ``generate`` of a model (instance attributes wrap the bound methods)."""

    def __init__(self, model):
        self.model = model
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._targets = [(model, "encode_vision"), (model, "generate")]
        self._saved: list[tuple[Any, str, Any, bool]] = []

    def _wrap(self, obj, name):
        real = getattr(obj, name)
        self.seconds.setdefault(name, 0.0)
        self.calls.setdefault(name, 0)

        def timed(*a, **kw):
            sync_device()
            t0 = time.perf_counter()
            try:
                return real(*a, **kw)
            finally:
                sync_device()
                self.seconds[name] += time.perf_counter() - t0
                self.calls[name] += 1

        return timed

    def __enter__(self):
        for obj, name in self._targets:
            had = name in vars(obj)
            self._saved.append((obj, name, vars(obj).get(name), had))
            setattr(obj, name, self._wrap(obj, name))
        return self

    def __exit__(self, *exc):
        for obj, name, old, had in reversed(self._saved):
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)
        self._saved.clear()


def run_mmgpt_profiled(loaded, w: Workload, out_dir: Path, batch_size: int) -> tuple[dict[str, str], float, dict]:
    """:func:`run_mmgpt_path` with the model calls and the harness's stages timed (the bare-generate bound)."""
    from mmgpt_eval import api
    from mmgpt_eval.model.generate import Generator

    from .peers.openflamingo import swapped_attr

    prof: dict[str, Any] = {}
    real_prepare = api.prepare_tasks
    real_pixels = Generator.pixels

    def prepare(*a, **kw):
        t0 = time.perf_counter()
        try:
            prepared = real_prepare(*a, **kw)
        finally:
            prof["prepare_tasks_s"] = prof.get("prepare_tasks_s", 0.0) + time.perf_counter() - t0
        for pt in prepared:  # the task's own scoring (VQA accuracy, CIDEr), an instance attribute of this pass
            real_agg = pt.task.aggregate

            def aggregate(*a, _real=real_agg, **kw):
                t1 = time.perf_counter()
                try:
                    return _real(*a, **kw)
                finally:
                    prof["scoring_s"] = prof.get("scoring_s", 0.0) + time.perf_counter() - t1

            pt.task.aggregate = aggregate
        return prepared

    def pixels(self, img):
        t0 = time.perf_counter()
        try:
            return real_pixels(self, img)
        finally:
            prof["image_read_preprocess_s"] = prof.get("image_read_preprocess_s", 0.0) + time.perf_counter() - t0

    timer = ModelCallTimer(loaded.model)
    t0 = time.perf_counter()
    with timer, swapped_attr(api, "prepare_tasks", prepare), swapped_attr(Generator, "pixels", pixels):
        preds, score = run_mmgpt_path(loaded, w, out_dir, batch_size)
    wall = time.perf_counter() - t0
    bare = timer.seconds["encode_vision"] + timer.seconds["generate"]
    prof.setdefault("image_read_preprocess_s", 0.0)
    prof.setdefault("scoring_s", 0.0)
    prof.update(
        {
            "wall_s": wall,
            "encode_vision_s": timer.seconds["encode_vision"],
            "encode_vision_calls": timer.calls["encode_vision"],
            "generate_s": timer.seconds["generate"],
            "generate_calls": timer.calls["generate"],
            "bare_generate_s": bare,
        }
    )
    prof["other_s"] = (
        wall - bare - prof.get("prepare_tasks_s", 0.0) - prof["image_read_preprocess_s"] - prof["scoring_s"]
    )
    # the bound without the task's scoring (CIDEr's Java tokenizer is a fixed cost of ~0.5 s per pass)
    prof["overhead_excluding_scoring"] = (wall - prof["scoring_s"]) / bare if bare else None
    return preds, score, {k: round(v, 4) if isinstance(v, float) else v for k, v in prof.items()}


def path_fn(name: str, loaded, w: Workload, auto_batch: int) -> Callable[[Path], tuple[dict[str, str], float, dict]]:
    if name == "openflamingo-eval":
        return lambda d: (*run_openflamingo_path(loaded, w, d, 8), {})
    if name == "per-sample-loop":
        return lambda d: (*run_openflamingo_path(loaded, w, d, 1), {})
    if name == "mmgpt-eval-b8":
        return lambda d: (*run_mmgpt_path(loaded, w, d, 8), {})
    if name == "mmgpt-eval-auto":
        return lambda d: run_mmgpt_profiled(loaded, w, d, auto_batch)
    raise ValueError(f"unknown path {name!r}")


def bench_config(
    loaded,
    w: Workload,
    *,
    loops: tuple[str, ...] = LOOPS,
    repeats: int = 3,
    auto_batch: int = 0,
    warmup: bool = True,
    tmp: Path,
) -> dict[str, Any]:
    """Every path of ``loops`` on workload ``w``: ``repeats`` rounds, the paths interleaved in each round
    (rotated start), every pass cold; one untimed warm-up pass of each path first (a 16-sample workload)."""
    from mmgpt_eval.model.generate import Generator

    auto = Generator(loaded).batch_cap(auto_batch, w.num_beams)
    fns = {n: path_fn(n, loaded, w, auto) for n in loops}
    if warmup:
        n_avail = w.num_samples if w.num_samples > 0 else w.bd.n_test
        small = Workload(w.bd, min(16, n_avail, w.bd.n_test), w.num_shots, w.seed, w.query_set_size, w.num_beams)
        for n in loops:
            path_fn(n, loaded, small, auto)(Path(tempfile.mkdtemp(dir=tmp)))
    times: dict[str, list[float]] = {n: [] for n in loops}
    preds: dict[str, dict[str, str]] = {}
    scores: dict[str, float] = {}
    profiles: list[dict] = []
    for r in range(repeats):
        for k in range(len(loops)):
            n = loops[(r + k) % len(loops)]
            (p, score, prof), sec = timed_call(fns[n], Path(tempfile.mkdtemp(dir=tmp)))
            times[n].append(sec)
            if prof:
                profiles.append(prof)
            if n in preds and preds[n] != p:
                raise RuntimeError(f"{n}: predictions changed between rounds")
            preds[n], scores[n] = p, score
    ref = preds[loops[0]]
    mism = {n: sum(1 for i in set(ref) | set(preds[n]) if ref.get(i) != preds[n].get(i)) for n in loops}
    out: dict[str, Any] = {
        "samples": len(ref),
        "loops": {},
        "outputs_identical": not any(mism.values()),
        "mismatched_samples": mism,
        "auto_batch_size": auto,
    }
    for n in loops:
        med = statistics.median(times[n])
        out["loops"][n] = {
            "batch_size": {"openflamingo-eval": 8, "per-sample-loop": 1, "mmgpt-eval-b8": 8}.get(n, auto),
            "seconds": [round(t, 4) for t in times[n]],
            "median_s": round(med, 4),
            "min_s": round(min(times[n]), 4),
            "max_s": round(max(times[n]), 4),
            "samples_per_s": round(len(preds[n]) / med, 2),
            "score": round(scores[n], 4),
        }
    of = "openflamingo-eval"

    def ratio(a: str, b: str):
        if a not in times or b not in times:
            return None
        per_round = [x / y for x, y in zip(times[a], times[b])]
        return {
            "median": round(statistics.median(times[a]) / statistics.median(times[b]), 2),
            "per_round_min": round(min(per_round), 2),
            "per_round_max": round(max(per_round), 2),
        }

    out["ratios"] = {
        "vs_openflamingo_eval": ratio(of, "mmgpt-eval-auto"),
        "vs_openflamingo_eval_matched_batch": ratio(of, "mmgpt-eval-b8"),
        "vs_per_sample_loop": ratio("per-sample-loop", "mmgpt-eval-auto"),
    }
    if profiles:
        over = [p["wall_s"] / p["bare_generate_s"] for p in profiles if p["bare_generate_s"] > 0]
        med_prof = {k: round(statistics.median(p[k] for p in profiles), 4) for k in profiles[0]}
        out["profile_auto"] = med_prof
        out["overhead_vs_bare_generate"] = {
            "median": round(statistics.median(over), 3),
            "min": round(min(over), 3),
            "max": round(max(over), 3),
        }
    return out


def config_name(model_key: str, kind: str, shots: int, num_beams: int) -> str:
    """``v2-vqa`` (0-shot, 3 beams: OpenFlamingo's protocol), ``v2-vqa-4shot``, ``v1-caption-greedy``, ..."""
    return (
        f"{model_key}-{kind}"
        + (f"-{shots}shot" if shots else "")
        + ("" if num_beams == 3 else "-greedy" if num_beams == 1 else f"-{num_beams}beams")
    )


# ------------------------------------------------------------------------------------------ memory
def peak_rss_in_subprocess(
    model_key: str,
    kind: str,
    data_root: Path,
    loop: str,
    num_samples: int,
    num_shots: int,
    threads: int | None,
    auto_batch: int,
    num_beams: int = 3,
) -> dict[str, Any]:
    """One pass of ``loop`` in a fresh Python process; its peak RSS (MB) and RSS after loading the model."""
    cmd = [
        sys.executable,
        "-m",
        "mmgpt_eval_dev.bench_openflamingo",
        "--one-pass",
        loop,
        "--model-key",
        model_key,
        "--kind",
        kind,
        "--data-root",
        str(data_root),
        "--num-samples",
        str(num_samples),
        "--num-shots",
        str(num_shots),
        "--auto-batch",
        str(auto_batch),
        "--num-beams",
        str(num_beams),
    ]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"error": (p.stderr or p.stdout)[-500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _one_pass(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one-pass", required=True)
    ap.add_argument("--model-key", required=True)
    ap.add_argument("--kind", required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--num-samples", type=int, required=True)
    ap.add_argument("--num-shots", type=int, default=0)
    ap.add_argument("--auto-batch", type=int, default=0)
    ap.add_argument("--num-beams", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    import logging

    logging.disable(logging.WARNING)
    from mmgpt_eval.api import load

    bd = load_data(Path(a.data_root), a.kind)
    loaded = load(**MODELS[a.model_key])
    import gc

    gc.collect()
    reset = _reset_peak_rss()  # the pass's own peak, not the transient peak of loading the model
    after_load = _rss_now_mb()
    w = Workload(bd, a.num_samples, a.num_shots, num_beams=a.num_beams)
    from mmgpt_eval.model.generate import Generator

    with tempfile.TemporaryDirectory() as tmp:
        path_fn(a.one_pass, loaded, w, Generator(loaded).batch_cap(a.auto_batch, a.num_beams))(Path(tmp))
    peak = _vm_hwm_mb() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu = round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None
    print(
        json.dumps(
            {
                "peak_rss_mb": round(peak, 1),
                "rss_after_load_mb": after_load,
                "peak_gpu_mb": gpu,
                "peak_of": "the pass (VmHWM reset after loading)" if reset else "the process (incl. loading)",
            }
        )
    )
    return 0


def _reset_peak_rss() -> bool:
    """Linux: reset this process's peak RSS (VmHWM) to its current RSS (``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return True
    except OSError:
        return False


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def load_data(root: Path, kind: str) -> BenchData:
    meta = json.loads((root / f"{kind}.json").read_text())
    return BenchData(kind, Path(meta["root"]), meta["data"], meta["options"], meta["n_test"], meta["n_train"])


def save_data(root: Path, bd: BenchData) -> None:
    (root / f"{bd.kind}.json").write_text(
        json.dumps(
            {"root": str(bd.root), "data": bd.data, "options": bd.options, "n_test": bd.n_test, "n_train": bd.n_train}
        )
    )


# ------------------------------------------------------------------------------------------ the benchmark
def run_openflamingo_bench(
    *,
    models: tuple[str, ...] = ("v2", "v1"),
    kinds: tuple[str, ...] = ("vqa", "caption"),
    vqa_images: int = 100,
    caption_images: int = 100,
    train_images: int = 30,
    num_samples: dict[str, int] | None = None,
    num_shots: tuple[int, ...] = (0,),
    beams: tuple[int, ...] = (3,),
    greedy_kinds: tuple[str, ...] = ("vqa",),
    repeats: int = 3,
    auto_batch: int = 0,
    loops: tuple[str, ...] = LOOPS,
    memory: bool = True,
    threads: int | None = None,
    data_root: str | os.PathLike | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """The whole benchmark: every (model, protocol, shots, beams) configuration -- greedy (``beams`` 1)
    only for ``greedy_kinds`` -- named ``v2-vqa``, ``v2-vqa-4shot``, ``v2-vqa-greedy``, ...; peak RSS
    (``memory``) for the configurations at the first of ``num_shots`` and ``beams``. The summary keys at
    the top level are those of the headline configuration (v2, VQA, OpenFlamingo's protocol: 3 beams,
    first of ``num_shots``)."""
    if isinstance(num_shots, int):
        num_shots = (num_shots,)
    from mmgpt_eval.api import load

    num_samples = num_samples or {"vqa": -1, "caption": -1}
    summary: dict[str, Any] = {
        "configs": {},
        "repeats": repeats,
        "num_shots": list(num_shots),
        "beams": list(beams),
        "torch_threads": torch.get_num_threads(),
        "targets": dict(TARGETS),
        "overhead_target": OVERHEAD_TARGET,
    }
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        root = Path(data_root) if data_root else tmp / "data"
        data = {}
        for kind in kinds:
            n = vqa_images if kind == "vqa" else caption_images
            data[kind] = write_data(root, kind, test_images=n, train_images=train_images)
            save_data(root, data[kind])
        for mk in models:
            loaded = load(**MODELS[mk])
            summary.setdefault("device", str(loaded.device))
            summary.setdefault("dtype", str(loaded.dtype).replace("torch.", ""))
            for kind, shots, nb in [
                (k, s, b) for k in kinds for b in beams for s in num_shots if b != 1 or k in greedy_kinds
            ]:
                name = config_name(mk, kind, shots, nb)
                log(f"config {name}")
                w = Workload(data[kind], num_samples.get(kind, -1), shots, num_beams=nb)
                res = bench_config(loaded, w, loops=loops, repeats=repeats, auto_batch=auto_batch, tmp=tmp)
                res.update(
                    {
                        "model": MODELS[mk],
                        "flamingo_version": mk,
                        "protocol": kind,
                        "settings": {
                            "num_beams": nb,
                            "max_new_tokens": 5 if kind == "vqa" else 20,
                            "length_penalty": 0.0,
                            "num_shots": shots,
                        },
                        "test_images": data[kind].n_test if kind == "caption" else vqa_images,
                        "demo_pool": data[kind].n_train,
                    }
                )
                if memory and shots == num_shots[0] and nb == beams[0]:
                    res["memory"] = {
                        n: peak_rss_in_subprocess(mk, kind, root, n, w.num_samples, shots, threads, auto_batch, nb)
                        for n in loops
                    }
                summary["configs"][name] = res
                log(json.dumps({k: res[k] for k in ("ratios", "outputs_identical")}))
            del loaded
    verdicts = {}
    for name, res in summary["configs"].items():
        v = {}
        for key, target in TARGETS.items():
            r = res["ratios"].get(key.replace("ratio_", ""))
            if r is not None:
                v[key] = {"measured": r["median"], "target": target, "met": r["median"] >= target}
        if "overhead_vs_bare_generate" in res:
            o = res["overhead_vs_bare_generate"]["median"]
            v["overhead_vs_bare_generate"] = {"measured": o, "target": OVERHEAD_TARGET, "met": o <= OVERHEAD_TARGET}
        res["verdicts"] = v
        verdicts[name] = v
    headline = config_name("v2", "vqa", num_shots[0], 3)
    if headline not in summary["configs"]:
        headline = next(iter(summary["configs"]))
    head = summary["configs"][headline]
    r = head["ratios"]
    summary.update(
        {
            "headline_config": headline,
            "ratio_vs_openflamingo_eval": (r.get("vs_openflamingo_eval") or {}).get("median"),
            "ratio_vs_openflamingo_eval_matched_batch": (r.get("vs_openflamingo_eval_matched_batch") or {}).get(
                "median"
            ),
            "ratio_vs_per_sample_loop": (r.get("vs_per_sample_loop") or {}).get("median"),
            "overhead_vs_bare_generate": (head.get("overhead_vs_bare_generate") or {}).get("median"),
            "outputs_identical": all(c["outputs_identical"] for c in summary["configs"].values()),
            "targets_met": all(x["met"] for v in verdicts.values() for x in v.values()),
        }
    )
    return summary


if __name__ == "__main__":
    raise SystemExit(_one_pass(sys.argv[1:]))
