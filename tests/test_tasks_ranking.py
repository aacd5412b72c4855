"""Ranking tasks end to end (easyvqa-mc, hatefulmemes, imagenet) on tiny official-format data, through
`mmgpt-eval run`, with scores checked against a plain per-candidate loop (tests/helpers.py) and
ROC-AUC against scikit-learn."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from helpers import plain_candidate_logprob
from mmgpt_eval.cli import main
from mmgpt_eval.images import open_image_key
from mmgpt_eval.results import RunResults

ROOT = Path(__file__).resolve().parents[1]
SYNSETS = ["n01440764", "n01443537", "n01484850"]  # sorted: class indices 0, 1, 2 (tench, goldfish, great white shark)
COLORS = ["red", "blue", "green", "yellow", "purple", "orange"]


def _image(path: Path, i: int) -> None:
    img = Image.new("RGB", (64, 64), "white")
    d = ImageDraw.Draw(img)
    c = COLORS[i % len(COLORS)]
    if i % 2:
        d.ellipse([8 + i % 5, 10, 50, 52], fill=c)
    else:
        d.rectangle([12, 8 + i % 7, 54, 48], fill=c)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def make_hateful_memes(root: Path) -> Path:
    """``root/hatefulmemes/{img/, train.jsonl, dev_seen.jsonl}`` in the official layout."""
    hm = root / "hatefulmemes"
    texts = [
        "have a nice day",
        "nobody likes you",
        "the sun is out",
        "go away now",
        "cats are great",
        "you are the worst",
        "happy birthday",
        "what a bad idea",
    ]
    for split, n, offset in (("dev_seen", 8, 0), ("train", 6, 100)):
        lines = []
        for i in range(n):
            iid = offset + i
            _image(hm / "img" / f"{iid:05d}.png", iid)
            lines.append(json.dumps({"id": iid, "img": f"img/{iid:05d}.png", "label": i % 2, "text": texts[i % 8]}))
        (hm / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return hm


def make_imagenet(root: Path) -> Path:
    """``root/imagenet/{val,train}/<synset>/*.JPEG``."""
    inet = root / "imagenet"
    for split, per in (("val", 2), ("train", 2)):
        for c, syn in enumerate(SYNSETS):
            for j in range(per):
                _image(
                    inet / split / syn / f"ILSVRC2012_{split}_{c}{j}.JPEG", 3 * c + j + (50 if split == "train" else 0)
                )
    return inet


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ranking-data")
    make_hateful_memes(root)
    make_imagenet(root)
    return root


@pytest.fixture(scope="module")
def mmgpt():
    import mmgpt_eval

    return mmgpt_eval.load("tiny-openflamingo", "tiny-mmgpt")


def _run(*args: str) -> int:
    return main(
        ["-q", "run", "--model", "tiny-openflamingo", "--ckpt", "tiny-mmgpt", "--no-progress", "--no-report", *args]
    )


def _plain_scores(m, rec: dict, candidates: list[str], joint: bool) -> list[float]:
    """Mean log-probability per token of every candidate for one logged sample, the plain way."""
    images = [open_image_key(k) for k in rec["images"]]
    out = []
    for c in candidates:
        total, n = plain_candidate_logprob(m, rec["prompt"], images, c, joint=joint)
        out.append(total / n)
    return out


def test_easyvqa_mc_offline_with_baseline(tmp_path, mmgpt):
    out = tmp_path / "out"
    rc = main(
        [
            "-q",
            "run",
            "--model",
            "tiny-openflamingo",
            "--ckpt",
            "tiny-mmgpt",
            "--tasks",
            "easyvqa-mc",
            "--baseline",
            "tiny-openflamingo",
            "--limit",
            "40",
            "--no-progress",
            "--output-dir",
            str(out),
        ]
    )
    assert rc == 0
    run = RunResults.load(out)
    t = run.tasks["easyvqa-mc"]
    assert t.metrics["accuracy"] > 50  # 13 answers: chance 7.7%
    base = RunResults.load(out / "baseline")
    assert "accuracy" in base.tasks["easyvqa-mc"].metrics
    assert "easyvqa-mc" in (out / "report.html").read_text()
    recs = run.samples("easyvqa-mc")
    assert all(r["stopped_on_eos"] is None and r["generated_tokens"] == 0 and len(r["ranking"]) == 3 for r in recs)
    # the logged ranking equals the plain per-candidate loop (mmgpt template: joint tokenization)
    from mmgpt_eval_tasks.easyvqa_mc import ANSWERS

    for r in recs[:4]:
        plain = _plain_scores(mmgpt, r, list(ANSWERS), joint=True)
        best = sorted(range(len(ANSWERS)), key=lambda i: (-plain[i], i))[:3]
        assert [x["candidate"] for x in r["ranking"]] == [ANSWERS[i] for i in best]
        for x, i in zip(r["ranking"], best):
            assert abs(x["score"] - plain[i]) < 1e-4


def test_easyvqa_mc_answers_are_easyvqas():
    import easy_vqa

    from mmgpt_eval_tasks.easyvqa_mc import ANSWERS

    assert sorted(ANSWERS) == sorted(easy_vqa.get_answers()) and len(ANSWERS) == 13


def test_hatefulmemes_flags_rocauc_and_resume(tmp_path, data_root, mmgpt):
    from sklearn.metrics import roc_auc_score

    hm = data_root / "hatefulmemes"
    out = tmp_path / "out"
    args = [
        "--tasks",
        "hatefulmemes",
        "--output-dir",
        str(out),
        "--hatefulmemes-annotations",
        str(hm / "dev_seen.jsonl"),
        "--hatefulmemes-images",
        str(hm / "img"),
        "--hatefulmemes-train-annotations",
        str(hm / "train.jsonl"),
    ]
    assert _run(*args) == 0
    run = RunResults.load(out)
    t = run.tasks["hatefulmemes"]
    recs = run.samples("hatefulmemes")
    assert t.n_samples == 8 and t.template["name"] == "of-hatefulmemes" and t.fewshot_mode == "text-demos"
    labels, p_yes, correct = [], [], []
    for r in recs:
        assert r["prompt"].count("<image>") == 1 and r["prompt"].endswith("Is it hateful? Answer:")
        no, yes = _plain_scores(mmgpt, r, ["no", "yes"], joint=False)  # OpenFlamingo: tokenized alone
        p = math.exp(yes) / (math.exp(yes) + math.exp(no))
        assert abs(r["metrics"]["p_yes"] - p) < 1e-4
        labels.append(1 if r["references"] == "yes" else 0)
        p_yes.append(p)
        correct.append(int(("yes" if yes > no else "no") == r["references"]))
    assert t.metrics["roc_auc"] == pytest.approx(100 * roc_auc_score(labels, p_yes), abs=0.006)
    assert t.metrics["accuracy"] == round(100 * sum(correct) / len(correct), 2)
    # resume: everything is taken from the log
    assert _run(*args) == 0
    assert RunResults.load(out).tasks["hatefulmemes"].timing["samples_resumed"] == 8
    # few-shot with demos from train.jsonl: 2 images of demos + the query's
    out2 = tmp_path / "fs"
    assert _run(*args[:2], "--output-dir", str(out2), *args[4:], "--num-fewshot", "2", "--limit", "3") == 0
    r = RunResults.load(out2).samples("hatefulmemes")[0]
    assert r["prompt"].count("<image>") == 3 and len(r["images"]) == 3 and "<|endofchunk|><image>" in r["prompt"]


def test_imagenet_data_root_check_and_plain_ranks(tmp_path, data_root, mmgpt, capsys):
    assert main(["data", "check", "--tasks", "imagenet,hatefulmemes", "--data-root", str(data_root)]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert _run("--tasks", "imagenet", "--data-root", str(data_root), "--output-dir", str(out)) == 0
    run = RunResults.load(out)
    t = run.tasks["imagenet"]
    recs = run.samples("imagenet")
    assert t.n_samples == 6 and t.breakdown["n_classes_evaluated"] == 3
    assert [r["references"] for r in recs] == [
        "tench",
        "tench",
        "goldfish",
        "goldfish",
        "great white shark",
        "great white shark",
    ]
    from mmgpt_eval.taskapi.datasets import imagenet_classnames

    names = imagenet_classnames()
    top1 = top5 = 0
    for r in recs[:2]:  # the plain loop over all 1,000 class names: two images keep it short
        plain = _plain_scores(mmgpt, r, names, joint=False)
        best = sorted(range(len(names)), key=lambda i: (-plain[i], i))[:5]
        assert [x["candidate"] for x in r["ranking"]] == [names[i] for i in best]
        assert all(abs(x["score"] - plain[i]) < 1e-4 for x, i in zip(r["ranking"], best))
        assert r["metrics"]["top1"] == int(names[best[0]] == r["references"])
        assert r["metrics"]["top5"] == int(r["references"] in [names[i] for i in best])
    top1 = sum(r["metrics"]["top1"] for r in recs)
    top5 = sum(r["metrics"]["top5"] for r in recs)
    assert t.metrics["top1"] == round(100 * top1 / 6, 4) and t.metrics["top5"] == round(100 * top5 / 6, 4)
    # resume
    assert _run("--tasks", "imagenet", "--data-root", str(data_root), "--output-dir", str(out)) == 0
    assert RunResults.load(out).tasks["imagenet"].timing["samples_resumed"] == 6


def test_zero_shot_without_train_data_says_what_to_do(tmp_path, data_root, capsys):
    rc = _run(
        "--tasks",
        "imagenet",
        "--imagenet-val",
        str(data_root / "imagenet" / "val"),
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "--imagenet-train" in err and "--fewshot-zero-mode none" in err


@pytest.mark.slow
def test_ranking_world_size_2_equals_1(tmp_path, data_root):
    common = [
        "-q",
        "run",
        "--model",
        "tiny-openflamingo",
        "--ckpt",
        "tiny-mmgpt",
        "--no-progress",
        "--no-report",
        "--tasks",
        "hatefulmemes,imagenet,easyvqa-mc",
        "--limit",
        "5",
        "--batch-size",
        "3",
        "--data-root",
        str(data_root),
    ]
    assert main(common + ["--output-dir", str(tmp_path / "ws1")]) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "mmgpt_eval",
        *common,
        "--output-dir",
        str(tmp_path / "ws2"),
    ]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = RunResults.load(tmp_path / "ws1"), RunResults.load(tmp_path / "ws2")
    for task in ("hatefulmemes", "imagenet", "easyvqa-mc"):
        ra, rb = a.samples(task), b.samples(task)
        assert [x["id"] for x in ra] == [x["id"] for x in rb] and len(ra) == 5
        for x, y in zip(ra, rb):  # other batches: scores equal up to float rounding, rankings identical
            assert x["prediction"] == y["prediction"]
            assert [c["candidate"] for c in x["ranking"]] == [c["candidate"] for c in y["ranking"]]
            assert all(abs(c["score"] - d["score"]) < 1e-4 for c, d in zip(x["ranking"], y["ranking"]))
        for m, v in a.tasks[task].metrics.items():
            assert b.tasks[task].metrics[m] == pytest.approx(v, abs=0.01)


def test_ranking_auto_batch_size_backs_off_on_oom(tmp_path, monkeypatch):
    """--batch-size auto for ranking requests: all contexts at once, halved on out-of-memory, remembered;
    the same rankings as a small fixed batch."""
    import torch

    from mmgpt_eval.model.rank import Ranker

    orig = Ranker.score_batch
    calls = []

    def fake_oom(self, inputs):
        calls.append(len(inputs))
        if len(inputs) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return orig(self, inputs)

    args = ["--tasks", "easyvqa-mc", "--limit", "10"]
    assert _run(*args, "--batch-size", "3", "--output-dir", str(tmp_path / "b3")) == 0
    monkeypatch.setattr(Ranker, "score_batch", fake_oom)
    assert _run(*args, "--batch-size", "auto", "--output-dir", str(tmp_path / "auto")) == 0
    assert calls[0] == 10 and max(calls[calls.index(next(c for c in calls if c <= 3)) :]) <= 5
    a = RunResults.load(tmp_path / "b3").samples("easyvqa-mc")
    b = RunResults.load(tmp_path / "auto").samples("easyvqa-mc")
    assert [x["prediction"] for x in a] == [x["prediction"] for x in b]
    assert all(abs(c["score"] - d["score"]) < 1e-4 for x, y in zip(a, b) for c, d in zip(x["ranking"], y["ranking"]))


def test_easyvqa_mc_resume_and_listing(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["--tasks", "easyvqa-mc", "--limit", "6", "--output-dir", str(out)]
    assert _run(*args) == 0 and _run(*args) == 0
    t = RunResults.load(out).tasks["easyvqa-mc"]
    assert t.timing["samples_resumed"] == 6 and t.timing["samples_generated"] == 0
    capsys.readouterr()
    assert main(["tasks"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("easyvqa-mc", "hatefulmemes", "imagenet"))
