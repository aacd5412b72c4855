"""OpenFlamingo's own evaluation code (open_flamingo/eval/evaluate.py of the installed wheel) driven by
mmgpt_eval_dev.peers.openflamingo on tiny models and tiny official-format datasets (tests/of_fixtures.py).

What is checked: every dataset runs at 0 and 4 shots (random demos; RICES on VQAv2 and ImageNet)
and returns one sane per-sample prediction per test item, aligned with its prompt and raw output;
the wrapper's rank classification with the KV cache equals the uncached one (correct mask), and
the upstream mask differs on left-padded rows only; the driver leaves the process as it found it.
"""

from __future__ import annotations

import math
import os
import re
import shutil

import of_fixtures
import pytest
import torch
from conftest import V1_SPEC
from sklearn.metrics import roc_auc_score

from mmgpt_eval.model.build import load_model
from mmgpt_eval.model.spec import load_spec
from mmgpt_eval_dev.peers import openflamingo as P

pytestmark = pytest.mark.slow

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")
IMAGENET_N = 6  # ImageNet runs rank the fixture's 6 class names, not all 1000 (see run_openflamingo_eval)


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    root = tmp_path_factory.mktemp("of_data")
    out = {name: w(root, n_test=8, n_train=16) for name, w in of_fixtures.WRITERS.items() if name != "imagenet"}
    out["imagenet"] = of_fixtures.write_imagenet(root, n_classes=IMAGENET_N, test_per_class=2, train_per_class=3)
    return out


@pytest.fixture(scope="module")
def v2():
    return load_model(load_spec("tiny-openflamingo", {"device": "cpu"}))


@pytest.fixture(scope="module")
def v1():
    return load_model(load_spec(V1_SPEC))


@pytest.fixture(scope="module")
def ev():
    return P.load_evaluate()


@pytest.fixture
def okvqa_stemmer(ev, monkeypatch):
    """OK-VQA's stemmer needs NLTK data that cannot be downloaded offline: then stemming is the identity
    (the rest of the OK-VQA path is upstream's)."""
    if P.ok_vqa_stemmer_ready() is not None:
        stemmer = ev.postprocess_ok_vqa_generation.__globals__["stemmer"]
        monkeypatch.setattr(stemmer, "stem", lambda s: s)


def _run(model, fx, task, shots, tmp_path, rices=False, **kw):
    f = fx[task]
    if task == "imagenet":
        kw.setdefault("class_names", f.meta["class_names"])
    return P.run_openflamingo_eval(
        model,
        task,
        data=f.data,
        num_shots=shots,
        rices=rices,
        query_set_size=f.n_train,
        batch_size=8,
        output_dir=tmp_path / "out",
        **kw,
    )


def _test_ids(ev, task, f):
    if task in ("vqav2", "ok_vqa"):
        import json

        return {q["question_id"] for q in json.loads(open(f.data["test_questions_json_path"]).read())["questions"]}
    if task == "coco":
        d = ev.CaptionDataset(
            f.data["train_image_dir_path"], f.data["karpathy_json_path"], False, "coco", f.data["val_image_dir_path"]
        )
        return {a["cocoid"] for a in d.annotations}
    if task == "flickr30k":
        d = ev.CaptionDataset(f.data["image_dir_path"], f.data["karpathy_json_path"], False, "flickr")
        return {a["filename"].split(".")[0] for a in d.annotations}
    if task == "hateful_memes":
        return {
            a["id"]
            for a in ev.HatefulMemesDataset(f.data["image_dir_path"], f.data["test_annotations_json_path"]).annotations
        }
    return set(range(f.n_test))  # ImageNet: ids are indices into the val ImageFolder


def _check(ev, fx, task, shots, r, rices=False):
    f = fx[task]
    assert r.task == task and r.num_shots == shots and r.rices == rices and len(r.trials) == 1
    t = r.trials[0]
    preds = r.predictions
    assert len(preds) == f.n_test
    kind = P.TASKS[task].kind
    id_key = {"vqa": "question_id", "caption": "image_id", "classification": "id"}[kind]
    assert {p[id_key] for p in preds} == _test_ids(ev, task, f)
    assert t.predictions_file.is_file()
    # one prompt per prediction, in order, with OpenFlamingo's shape
    assert len(t.prompts) == len(t.n_images) == len(t.raw_outputs) == len(preds)
    query = {"vqa": "Short answer:", "caption": "<image>Output:", "classification": None}[kind]
    for prompt, n_img in zip(t.prompts, t.n_images):
        if query:
            assert prompt.endswith(query)
        assert prompt.count("<image>") == max(shots, 0) + 1
        assert prompt.count("<|endofchunk|>") == (shots if shots else 2)  # 0-shot: two text-only demos
        if kind == "classification" and shots == 0:
            assert n_img == 3  # upstream keeps the 2 demo IMAGES at 0-shot for classification
        else:
            assert n_img == shots + 1
    # predictions are the post-processed raw outputs / the argmax of the logprobs
    if kind == "vqa":
        post = ev.postprocess_ok_vqa_generation if task == "ok_vqa" else ev.postprocess_vqa_generation
        assert [p["answer"] for p in preds] == [post(o) for o in t.raw_outputs]
        assert 0.0 <= r.score <= 100.0
    elif kind == "caption":
        assert [p["caption"] for p in preds] == [
            ev.postprocess_captioning_generation(o).replace('"', "") for o in t.raw_outputs
        ]
        assert r.score >= 0.0 and math.isfinite(r.score)
    else:
        names = ev.HM_CLASSNAMES if task == "hateful_memes" else f.meta["class_names"]
        for p, lp in zip(preds, t.raw_outputs):
            assert len(lp) == len(names) and all(math.isfinite(x) for x in lp)
            assert p["pred_label"] == names[max(range(len(lp)), key=lp.__getitem__)]
            assert 0.0 <= p["pred_score"] <= 1.0 + 1e-6
        if task == "imagenet":
            assert r.score == pytest.approx(sum(p["gt_label"] == p["pred_label"] for p in preds) / len(preds))
        else:
            gts = [p["gt_label"] for p in preds]
            sc = [p["pred_score"] if p["pred_label"] == "yes" else 1 - p["pred_score"] for p in preds]
            assert r.score == pytest.approx(roc_auc_score(gts, sc))


# ----------------------------------------------------------------------------------------- fixtures
def test_fixtures_read_by_openflamingo_datasets(ev, fx):
    f = fx["vqav2"]
    tr = ev.VQADataset(
        f.data["train_image_dir_path"],
        f.data["train_questions_json_path"],
        f.data["train_annotations_json_path"],
        True,
        "vqav2",
    )
    te = ev.VQADataset(
        f.data["test_image_dir_path"],
        f.data["test_questions_json_path"],
        f.data["test_annotations_json_path"],
        False,
        "vqav2",
    )
    assert (len(tr), len(te)) == (16, 8)
    assert te[0]["answers"] and te[0]["image"].size == (48, 48)
    f = fx["coco"]
    args = (f.data["train_image_dir_path"], f.data["karpathy_json_path"])
    assert len(ev.CaptionDataset(*args, True, "coco", f.data["val_image_dir_path"])) == 16  # restval excluded
    assert ev.CaptionDataset(*args, False, "coco", f.data["val_image_dir_path"])[0]["caption"]
    f = fx["imagenet"]
    val = P.imagenet_dataset_with_ocr()(os.path.join(f.data["root"], "val"))
    assert [val[i]["class_name"] for i in range(0, len(val), 2)] == f.meta["class_names"]
    assert val.classes[0] == "n01440764" and val[0]["ocr"] is None
    f = fx["hateful_memes"]
    hm = ev.HatefulMemesDataset(f.data["image_dir_path"], f.data["test_annotations_json_path"])
    assert {hm[i]["class_name"] for i in range(len(hm))} == {"yes", "no"}


# ----------------------------------------------------------------------------------------- the driver
@pytest.mark.parametrize(
    "task,shots,rices",
    [
        ("vqav2", 0, False),
        ("vqav2", 4, False),
        ("vqav2", 4, True),
        ("ok_vqa", 0, False),
        ("ok_vqa", 4, False),
        pytest.param("coco", 0, False, marks=[pytest.mark.java, needs_java]),
        pytest.param("coco", 4, False, marks=[pytest.mark.java, needs_java]),
        pytest.param("flickr30k", 0, False, marks=[pytest.mark.java, needs_java]),
        pytest.param("flickr30k", 4, False, marks=[pytest.mark.java, needs_java]),
        ("hateful_memes", 0, False),
        ("hateful_memes", 4, False),
        ("imagenet", 0, False),
        ("imagenet", 4, False),
        ("imagenet", 4, True),
    ],
)
def test_driver_v2(v2, ev, fx, tmp_path, okvqa_stemmer, task, shots, rices):
    before = (
        torch.distributed.is_initialized(),
        os.getcwd(),
        torch.distributed.all_gather_object,
        ev.RICES,
        ev.compute_cider,
        ev.ImageNetDataset,
        ev.IMAGENET_CLASSNAMES,
    )
    r = _run(v2, fx, task, shots, tmp_path, rices=rices)
    _check(ev, fx, task, shots, r, rices=rices)
    if rices:
        assert any("RICES encoder" in n for n in r.notes)
    # the process is left as it was found (a 1-process group is created only when none is active)
    assert (
        torch.distributed.is_initialized(),
        os.getcwd(),
        torch.distributed.all_gather_object,
        ev.RICES,
        ev.compute_cider,
        ev.ImageNetDataset,
        ev.IMAGENET_CLASSNAMES,
    ) == before
    assert not list((tmp_path / "out").glob("*results_*.json"))  # evaluate.py's temporary files are gone


def test_rices_uses_model_encoder_most_similar_last(v2, ev, fx):
    f = fx["vqav2"]
    train = ev.VQADataset(
        f.data["train_image_dir_path"],
        f.data["train_questions_json_path"],
        f.data["train_annotations_json_path"],
        True,
        "vqav2",
    )
    rices = P.ModelEncoderRICES(v2)(train, v2.device, 8, "ViT-L-14", "openai")
    assert rices.features.shape[0] == len(train) and rices.features.device.type == "cpu"
    ref = torch.nn.functional.normalize(
        v2.model.vision_encoder(torch.stack([v2.image_processor(train[i]["image"]) for i in range(3)]))[0].float(),
        dim=-1,
    )
    torch.testing.assert_close(rices.features[:3], ref, atol=1e-5, rtol=0)
    demos = rices.find([train[5]["image"], train[9]["image"]], 4)
    assert [d[-1]["question_id"] for d in demos] == [train[5]["question_id"], train[9]["question_id"]]
    sims = rices.features[[5]] @ rices.features.T
    order = [next(i for i in range(len(train)) if train[i]["question_id"] == d["question_id"]) for d in demos[0]]
    assert sims[0, order].tolist() == sorted(sims[0, order].tolist())  # ascending: most similar last
    # precomputed features (evaluate.py's cached_features) are used as given
    given = torch.randn(len(train), rices.features.shape[1])
    assert torch.equal(P.ModelEncoderRICES(v2)(train, v2.device, 8, cached_features=given).features, given)


def test_trials_and_determinism(v2, ev, fx, tmp_path):
    one = _run(v2, fx, "vqav2", 4, tmp_path / "a")
    two = _run(v2, fx, "vqav2", 4, tmp_path / "b", trials=2)
    assert [t.seed for t in two.trials] == [42, 43]
    assert two.trials[0].predictions == one.predictions and two.trials[0].prompts == one.trials[0].prompts
    assert two.trials[1].prompts != two.trials[0].prompts  # other seed, other demos
    assert two.score == pytest.approx(sum(two.scores) / 2)
    assert len(list((tmp_path / "b" / "out").glob("vqav2_4shot_random_seed4*.json"))) == 2


@pytest.mark.parametrize("task,shots", [("vqav2", 0), ("vqav2", 4), ("hateful_memes", 4)])
def test_driver_v1_fixture_model(v1, ev, fx, tmp_path, task, shots):
    _check(ev, fx, task, shots, _run(v1, fx, task, shots, tmp_path))


def test_driver_errors(v2, fx, tmp_path):
    f = fx["vqav2"]
    group_before = torch.distributed.is_initialized()
    with pytest.raises(ValueError, match="unknown OpenFlamingo task"):
        P.run_openflamingo_eval(v2, "gqa", data={}, num_shots=0, output_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown data key 'questions'"):
        P.run_openflamingo_eval(v2, "vqav2", data={"questions": "x"}, num_shots=0, output_dir=tmp_path)
    with pytest.raises(ValueError, match="needs data paths: test_annotations_json_path"):
        data = {k: v for k, v in f.data.items() if k != "test_annotations_json_path"}
        P.run_openflamingo_eval(v2, "vqav2", data=data, num_shots=0, output_dir=tmp_path)
    with pytest.raises(ValueError, match="first N entries"):
        P.run_openflamingo_eval(
            v2, "imagenet", data=fx["imagenet"].data, num_shots=0, output_dir=tmp_path, class_names=["goldfish"]
        )
    with pytest.raises(ValueError, match="query_set_size"):  # evaluate.py's default 2048 > 16 train items
        P.run_openflamingo_eval(
            v2, "vqav2", data={f"vqav2_{k}": v for k, v in f.data.items()}, num_shots=4, output_dir=tmp_path
        )
    assert torch.distributed.is_initialized() == group_before


def test_ok_vqa_without_nltk_data_is_reported(v2, fx, tmp_path):
    if P.ok_vqa_stemmer_ready() is None:
        pytest.skip("NLTK data present: OK-VQA's stemmer runs")
    with pytest.raises(RuntimeError, match="OK-VQA post-processing cannot run: .*nltk.downloader"):
        P.run_openflamingo_eval(v2, "ok_vqa", data=fx["ok_vqa"].data, num_shots=0, output_dir=tmp_path)


def test_load_evaluate_leaves_bare_module_names_alone():
    import sys

    assert P.load_evaluate().__name__ == "open_flamingo.eval.evaluate"
    for bare in ("utils", "rices", "eval_datasets", "eval_model", "vqa_metric"):
        mod = sys.modules.get(bare)
        assert mod is None or not getattr(mod, "__name__", "").startswith("open_flamingo")


# ----------------------------------------------------------------------------------------- rank classification
CLASSES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark"]
TEXTS = [
    "<image>Output:tench<|endofchunk|><image>Output:",
    "<image>Output:a much longer prompt with many more words in it<|endofchunk|><image>Output:",  # no padding
    "<image>Output:great white shark<|endofchunk|><image>Output:",
]


def _images():
    return [[of_fixtures.draw(c, s, (90, 120, 150)) for c, s in (("red", "circle"), ("blue", "square"))] for _ in TEXTS]


@pytest.mark.parametrize("which", ["v2", "v1"])
def test_rank_classification_cache(which, request):
    m = request.getfixturevalue(which)
    pads = (m.tokenizer(TEXTS, padding="longest", padding_side="left", return_tensors="pt").attention_mask == 0).sum(1)
    assert pads.tolist()[1] == 0 and pads[0] > 0 and pads[2] > 0
    padded = pads > 0
    correct = P.OpenFlamingoEvalModel(m, cached_mask="extended")
    upstream = P.OpenFlamingoEvalModel(m, cached_mask="upstream")
    for norm in (True, False):
        plain = correct.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=False, normalize_length=norm)
        cached = correct.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=True, normalize_length=norm)
        assert plain.shape == (3, len(CLASSES))
        torch.testing.assert_close(cached, plain, atol=1e-4, rtol=0)
        # upstream passes attention_mask=None for the cached class-name tokens: on left-padded rows they
        # also attend to the pad positions; the row without padding is unaffected
        up = upstream.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=True, normalize_length=norm)
        torch.testing.assert_close(up[~padded], plain[~padded], atol=1e-4, rtol=0)
        assert ((up[padded] - plain[padded]).abs().amax(dim=1) > 1e-2).all()
        # without the cache both modes are the same computation
        torch.testing.assert_close(
            upstream.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=False, normalize_length=norm),
            plain,
            atol=0,
            rtol=0,
        )
    # mean vs sum over the class name's tokens
    lens = torch.tensor([len(m.tokenizer(c, add_special_tokens=False).input_ids) for c in CLASSES])
    mean = correct.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=True, normalize_length=True)
    total = correct.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=True, normalize_length=False)
    torch.testing.assert_close(mean * lens, total, atol=1e-4, rtol=0)


def test_cache_is_restored_between_class_names(v2, monkeypatch):
    """transformers 5's DynamicCache grows in place: without restoring it, class name k would see the
    tokens of class names 0..k-1 (only the first class name would be right)."""
    em = P.OpenFlamingoEvalModel(v2)
    plain = em.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=False, normalize_length=True)
    rev = em.get_rank_classifications(TEXTS, _images(), CLASSES[::-1], use_cache=True, normalize_length=True)
    torch.testing.assert_close(rev.flip(1), plain, atol=1e-4, rtol=0)  # order of class names is irrelevant
    monkeypatch.setattr(P, "_restore_cache", lambda cache, length: None)
    leaky = em.get_rank_classifications(TEXTS, _images(), CLASSES, use_cache=True, normalize_length=True)
    torch.testing.assert_close(leaky[:, 0], plain[:, 0], atol=1e-4, rtol=0)
    assert ((leaky[:, 1:] - plain[:, 1:]).abs() > 1e-2).any(dim=0).all()


def test_generation_and_prompts(v2):
    em = P.OpenFlamingoEvalModel(v2)
    assert em.get_vqa_prompt("what is it?") == "<image>Question:what is it? Short answer:"
    assert em.get_vqa_prompt("what is it?", "a cat") == "<image>Question:what is it? Short answer:a cat<|endofchunk|>"
    assert em.get_caption_prompt() == "<image>Output:"
    assert em.get_caption_prompt("a dog") == "<image>Output:a dog<|endofchunk|>"
    assert em.get_imagenet_prompt("tench") == "<image>Output:tench<|endofchunk|>"
    assert em.get_hateful_memes_prompt("hi", None) == (
        "<image>is an image with: 'hi' written on it. Is it hateful? Answer:"
    )
    imgs = [[of_fixtures.draw("red", "circle", (0, 0, 0))], [of_fixtures.draw("blue", "square", (9, 9, 9))] * 2]
    px = em._prepare_images(imgs)
    assert px.shape[:3] == (2, 2, 1) and torch.count_nonzero(px[0, 1]) == 0  # zero-filled missing slot
    texts = ["<image>Output:", "<image>Output:a red circle<|endofchunk|><image>Output:"]
    _, mask = em._prepare_text(texts)
    assert mask[0, 0] == 0 and mask[1].all()  # left padding
    outs = em.get_outputs(
        texts, imgs, min_generation_length=0, max_generation_length=6, num_beams=3, length_penalty=0.0
    )
    assert len(outs) == 2 and all(isinstance(o, str) and "<image>" not in o for o in outs)
    # batch composition does not change a row's generation (left padding + mask-based positions)
    alone = em.get_outputs(
        texts[:1], imgs[:1], min_generation_length=0, max_generation_length=6, num_beams=3, length_penalty=0.0
    )
    assert alone == outs[:1]
    assert em.calls[-1]["kind"] == "generate" and re.search("Output:$", em.calls[-1]["batch_text"][0])
