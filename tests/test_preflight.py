"""Checks before the model and before generation (issue 27, points 6-8): every image file a run will
read decodes before the model loads; data fields of the wrong type and undecodable data files are
refused naming the file and the entry; a prompt longer than the model's context is refused before
anything is written, or, with ``--truncate left``, keeps its last tokens (counted in results and the
report); ``predict``'s output folder is checked before the model loads.

Each bad-input case: exit 2, exactly one stderr line naming the file (and the sample where there is
one), nothing written, and -- where the problem is knowable before loading -- no model loaded
(``api.load`` and ``model.build.build_base`` fail the test when called). The length cases need the
tokenizer, so they run the shared tiny model (loaded once)."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from cli_checks import one_error_line
from PIL import Image

import mmgpt_eval.api
import mmgpt_eval.model.build
from mmgpt_eval.cli import main

from datasets import make_coco_dataset, make_vqa_dataset

LONG = " ".join(f"word{i % 50}" for i in range(1500))  # well over the tiny model's 1,024 positions


# ------------------------------------------------------------------------------------------ bad files
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png() -> bytes:
    """A valid PNG header declaring 20,000 x 20,000 pixels (twice PIL's decompression-bomb limit)."""
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b""))
        + _png_chunk(b"IEND", b"")
    )


def _good(fmt: str) -> bytes:
    import io

    im = Image.new("RGB", (96, 64), "white")
    for x in range(0, 96, 3):
        for y in range(0, 64, 2):
            im.putpixel((x, y), (x * 2 % 255, y * 4 % 255, (x * y) % 255))
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _bad_crc_png() -> bytes:
    b = bytearray(_good("PNG"))
    i = b.index(b"IDAT")
    n = struct.unpack(">I", b[i - 4 : i])[0]
    b[i + 4 + n] ^= 0xFF  # the IDAT chunk's checksum; the pixel data itself is intact
    return bytes(b)


BAD_IMAGES = {  # kind -> (file suffix, bytes, words the error names)
    "truncated-jpeg": ("jpg", _good("JPEG")[:-400], ["truncated"]),
    "zero-byte": ("jpg", b"", ["cannot read image"]),
    "png-bad-crc": ("png", _bad_crc_png(), ["checksum"]),
    "text-named-jpg": ("jpg", b"I am a text file, not a picture\n" * 4, ["cannot identify"]),
    "decompression-bomb": ("png", _bomb_png(), ["too many pixels"]),
    "truncated-png": ("png", _good("PNG")[:-60], ["cannot read image"]),
}


def _latin1(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("preflight")
    # VQAv2 (2 images, 6 questions) with one image replaced by each bad kind
    for kind, (ext, data, _) in BAD_IMAGES.items():
        d = make_vqa_dataset(w / f"vqa-{kind}", n_images=2)
        first = sorted(d["images"].iterdir())[0]
        first.unlink()
        (first.with_suffix(f".{ext}")).write_bytes(data)
        # TallyQA-style: two entries, the second's image bad
        t = w / f"tally-{kind}"
        t.mkdir()
        (t / "good.jpg").write_bytes(_good("JPEG"))
        (t / f"bad.{ext}").write_bytes(data)
        rows = [
            {"id": "t1", "image": "good.jpg", "question": "How many?", "answer": 1},
            {"id": "t2", "image": f"bad.{ext}", "question": "How many?", "answer": 2},
        ]
        (t / "tally.json").write_text(json.dumps(rows))
        # Hateful Memes: the second meme's image bad
        h = w / f"hm-{kind}"
        (h / "img").mkdir(parents=True)
        (h / "img" / "01.png").write_bytes(_good("PNG"))
        (h / "img" / f"02.{ext}").write_bytes(data)
        lines = [
            {"id": 1, "img": "img/01.png", "label": 0, "text": "a meme"},
            {"id": 2, "img": f"img/02.{ext}", "label": 1, "text": "another meme"},
        ]
        (h / "dev.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    # an ImageNet-style folder whose second image is a FIFO (opening it would block)
    (w / "inet" / "n01").mkdir(parents=True)
    (w / "inet" / "n01" / "a.jpg").write_bytes(_good("JPEG"))
    os.mkfifo(w / "inet" / "n01" / "b.jpg")
    # two bad images in one data set: both named in one line
    d = make_vqa_dataset(w / "vqa-two-bad", n_images=3)
    for p in sorted(d["images"].iterdir())[:2]:
        p.write_bytes(b"")
    # data fields of the wrong type, each in a copy of a good data set
    good = make_vqa_dataset(w / "vqa", n_images=2)
    q = json.loads(good["questions"].read_text())
    a = json.loads(good["annotations"].read_text())
    for name, edit in {
        "question-object": lambda q, a: q["questions"][1].update(question={"a": 1}),
        "question-list": lambda q, a: q["questions"][1].update(question=["what", "is"]),
        "question-number": lambda q, a: q["questions"][1].update(question=42),
        "qid-list": lambda q, a: q["questions"][1].update(question_id=[1, 2]),
        "image-id-list": lambda q, a: q["questions"][1].update(image_id=[101]),
        "answer-number": lambda q, a: a["annotations"][1]["answers"][0].update(answer=2),
    }.items():
        qq, aa = json.loads(json.dumps(q)), json.loads(json.dumps(a))
        edit(qq, aa)
        (w / "vqa" / f"q-{name}.json").write_text(json.dumps(qq))
        (w / "vqa" / f"a-{name}.json").write_text(json.dumps(aa))
    (w / "vqa" / "q-utf16.json").write_bytes(good["questions"].read_text().encode("utf-16"))
    tally = w / "tally"
    tally.mkdir()
    (tally / "good.jpg").write_bytes(_good("JPEG"))
    row = {"id": "t1", "image": "good.jpg", "question": "How many?", "answer": 1}
    (tally / "q-object.json").write_text(json.dumps([{**row, "question": {"a": 1}}]))
    (tally / "id-list.json").write_text(json.dumps([{**row, "id": ["x"]}]))
    (tally / "id-list.jsonl").write_text(json.dumps({**row, "id": ["x"]}) + "\n")
    _latin1(tally / "latin1.json", json.dumps([{**row, "question": "Combien de caf\xe9s?"}], ensure_ascii=False))
    _latin1(tally / "latin1.jsonl", json.dumps({**row, "question": "Combien de caf\xe9s?"}, ensure_ascii=False) + "\n")
    hm = w / "hm"
    (hm / "img").mkdir(parents=True)
    (hm / "img" / "01.png").write_bytes(_good("PNG"))
    meme = {"id": 1, "img": "img/01.png", "label": 0, "text": "a meme"}
    (hm / "id-list.jsonl").write_text(json.dumps({**meme, "id": [1]}) + "\n")
    (hm / "text-object.jsonl").write_text(json.dumps({**meme, "text": {"a": 1}}) + "\n")
    _latin1(hm / "latin1.jsonl", json.dumps({**meme, "text": "caf\xe9"}, ensure_ascii=False) + "\n")
    coco = make_coco_dataset(w / "coco", n_images=2)
    doc = json.loads(coco["karpathy_json"].read_text())
    for name, edit in {
        "raw-number": lambda d: d["images"][1]["sentences"][0].update(raw=7),
        "cocoid-list": lambda d: d["images"][1].update(cocoid=[5]),
    }.items():
        dd = json.loads(json.dumps(doc))
        edit(dd)
        (w / "coco" / f"k-{name}.json").write_text(json.dumps(dd))
    # predict
    (w / "img.png").write_bytes(_good("PNG"))
    (w / "trunc.jpg").write_bytes(BAD_IMAGES["truncated-jpeg"][1])
    (w / "cases.jsonl").write_text(json.dumps({"id": 1, "prompt": "<image>What?", "images": ["img.png"]}) + "\n")
    (w / "trunc-case.jsonl").write_text(
        json.dumps({"id": "c7", "prompt": "<image>What?", "images": ["trunc.jpg"]}) + "\n"
    )
    return w


def _one_error(ws: Path, argv: list[str], capsys, monkeypatch, words: list[str]) -> str:
    return one_error_line(ws, argv, capsys, monkeypatch, words)


RUN = ["run", "--model", "tiny", "--no-progress", "--output-dir", "out"]


def _vqa(folder: str, questions: str | None = None, annotations: str | None = None) -> list[str]:
    return [
        "--tasks",
        "vqav2",
        "--vqav2-questions",
        questions or f"{folder}/v2_OpenEnded_mscoco_val2014_questions.json",
        "--vqav2-annotations",
        annotations or f"{folder}/v2_mscoco_val2014_annotations.json",
        "--vqav2-images",
        f"{folder}/val2014",
    ]


def _tally(file: str, images: str | None = None) -> list[str]:
    return ["--tasks", "counting", "--counting-tallyqa-json", file] + (["--counting-images", images] if images else [])


def _hm(folder: str, file: str) -> list[str]:
    return [
        "--tasks",
        "hatefulmemes",
        "--hatefulmemes-annotations",
        file,
        "--hatefulmemes-images",
        f"{folder}/img",
        "--fewshot-zero-mode",
        "none",
    ]


# (id, argv, words the one error line must contain)
IMAGE_CASES = []
for _kind, (_ext, _, _words) in BAD_IMAGES.items():
    IMAGE_CASES += [
        (
            f"vqav2-{_kind}",
            RUN + _vqa(f"vqa-{_kind}"),
            [f"COCO_val2014_000000000100.{_ext}", "task vqav2, sample 1000", "before loading the model", *_words],
        ),
        (f"tallyqa-{_kind}", RUN + _tally(f"tally-{_kind}/tally.json"), [f"bad.{_ext}", "sample t2", *_words]),
        (
            f"hatefulmemes-{_kind}",
            RUN + _hm(f"hm-{_kind}", f"hm-{_kind}/dev.jsonl"),
            [f"02.{_ext}", "sample 2", *_words],
        ),
    ]
IMAGE_CASES += [
    ("vqav2-two-bad-images", RUN + _vqa("vqa-two-bad"), ["000000000100.jpg", "000000000101.jpg", "1 more unreadable"]),
    (
        "imagenet-fifo",
        RUN + ["--tasks", "imagenet", "--imagenet-val", "inet", "--fewshot-zero-mode", "none"],
        ["inet/n01/b.jpg", "sample n01/b.jpg", "not a regular file"],
    ),
]

FIELD_CASES = [
    (
        f"vqav2-{name}",
        RUN + _vqa("vqa", questions=f"vqa/q-{name}.json", annotations=f"vqa/a-{name}.json"),
        [f"{'a' if name == 'answer-number' else 'q'}-{name}.json", *words],
    )
    for name, words in {
        "question-object": ["question 1 (question_id 1001)", "'question' must be a string, got an object"],
        "question-list": ["question_id 1001", "got a list"],
        "question-number": ["question_id 1001", "got an integer"],
        "qid-list": ["question 1", "'question_id' must be an integer or a string, got a list"],
        "image-id-list": ["question_id 1001", "'image_id' must be an integer"],
        "answer-number": ["question_id 1001", "answer 0", "must be a string"],
    }.items()
] + [
    ("tallyqa-question-object", RUN + _tally("tally/q-object.json"), ["q-object.json", "id t1", "got an object"]),
    ("tallyqa-id-list", RUN + _tally("tally/id-list.json"), ["id-list.json", "entry 0", "'id'", "got a list"]),
    ("tallyqa-id-list-jsonl", RUN + _tally("tally/id-list.jsonl"), ["id-list.jsonl:1", "'id'", "got a list"]),
    ("hatefulmemes-id-list", RUN + _hm("hm", "hm/id-list.jsonl"), ["id-list.jsonl:1", "'id'", "got a list"]),
    ("hatefulmemes-text-object", RUN + _hm("hm", "hm/text-object.jsonl"), ["text-object.jsonl:1", "id 1", "'text'"]),
    (
        "coco-raw-number",
        RUN + ["--tasks", "coco", "--coco-karpathy-json", "coco/k-raw-number.json", "--coco-images", "coco"],
        ["k-raw-number.json", "cocoid 501", "sentence 0", "'raw' must be a string"],
    ),
    (
        "coco-cocoid-list",
        RUN + ["--tasks", "coco", "--coco-karpathy-json", "coco/k-cocoid-list.json", "--coco-images", "coco"],
        ["k-cocoid-list.json", "image entry 1", "'cocoid'", "got a list"],
    ),
]

ENCODING_CASES = [
    ("tallyqa-latin1-json", RUN + _tally("tally/latin1.json"), ["tally/latin1.json", "not UTF-8"]),
    ("tallyqa-latin1-jsonl", RUN + _tally("tally/latin1.jsonl"), ["tally/latin1.jsonl", "not UTF-8"]),
    ("hatefulmemes-latin1", RUN + _hm("hm", "hm/latin1.jsonl"), ["hm/latin1.jsonl", "not UTF-8"]),
    ("vqav2-utf16", RUN + _vqa("vqa", questions="vqa/q-utf16.json"), ["q-utf16.json", "not UTF-8"]),
]

PREDICT_CASES = [
    (
        "predict-unwritable-folder",
        ["predict", "--model", "tiny", "--input", "cases.jsonl", "--output", "/sys/mmgpt-eval-preflight.jsonl"],
        ["/sys", "not writable"],
    ),
    (
        "predict-truncated-jpeg",
        ["predict", "--model", "tiny", "--input", "trunc-case.jsonl", "--output", "o.jsonl"],
        ["trunc-case.jsonl:1", "trunc.jpg", "truncated"],
    ),
]

CASES = IMAGE_CASES + FIELD_CASES + ENCODING_CASES + PREDICT_CASES


def test_corpus_size():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,argv,words", CASES, ids=[c[0] for c in CASES])
def test_refused_before_the_model(name, argv, words, ws, capsys, monkeypatch, no_load):
    _one_error(ws, argv, capsys, monkeypatch, words)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_predict_read_only_folder(ws, capsys, monkeypatch, no_load, tmp_path):
    ro = ws / "ro"
    ro.mkdir(exist_ok=True)
    ro.chmod(0o555)
    try:
        argv = ["predict", "--model", "tiny", "--input", "cases.jsonl", "--output", "ro/o.jsonl"]
        _one_error(ws, argv, capsys, monkeypatch, ["ro", "not writable"])
    finally:
        ro.chmod(0o755)


# ------------------------------------------------------------------------------------------ EXIF
def test_exif_orientation_is_read_as_the_reference_loader_reads_it(tmp_path):
    """An image with an EXIF orientation tag loads exactly as OpenFlamingo's evaluation dataset
    (open_flamingo/eval/eval_datasets.py: Image.open + load, RGB in the image processor) loads it:
    stored pixels, tag ignored."""
    from open_flamingo.eval.eval_datasets import HatefulMemesDataset

    from mmgpt_eval.taskapi.datasets import load_hateful_memes

    (tmp_path / "img").mkdir()
    im = Image.new("RGB", (40, 20), "red")
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left half red, right half blue: a rotation would show
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "img" / "01.jpg", exif=exif.tobytes(), quality=95)
    (tmp_path / "dev.jsonl").write_text(json.dumps({"id": 1, "img": "img/01.jpg", "label": 0, "text": "t"}) + "\n")
    with Image.open(tmp_path / "img" / "01.jpg") as check:
        assert check.getexif().get(0x0112) == 6  # the tag is there
    ours = load_hateful_memes(tmp_path / "dev.jsonl", tmp_path / "img")[0].images[0].open()
    ref = HatefulMemesDataset(str(tmp_path / "img"), str(tmp_path / "dev.jsonl"))[0]["image"].convert("RGB")
    assert ours.size == ref.size == (40, 20)
    assert ours.tobytes() == ref.tobytes()


# ------------------------------------------------------------------------------------------ prompt length
@pytest.fixture(scope="module")
def long_ws(tmp_path_factory) -> Path:
    """VQAv2 files: ``long-q`` has one over-long question; ``long-demos`` has short questions but a
    train split whose every question is over-long (0-shot of-vqa prompts carry 2 text demos)."""
    w = tmp_path_factory.mktemp("long")
    d = make_vqa_dataset(w / "vqa", n_images=1)
    q = json.loads(d["questions"].read_text())
    q["questions"][1]["question"] = LONG + "?"
    (w / "vqa" / "long-q.json").write_text(json.dumps(q))
    t = make_vqa_dataset(w / "train", n_images=1, split="train2014")
    tq = json.loads(t["questions"].read_text())
    for x in tq["questions"]:
        x["question"] = LONG + " " + x["question"]
    t["questions"].write_text(json.dumps(tq))
    return w


@pytest.fixture
def tiny_load(monkeypatch, tiny_model):
    """``api.load`` hands out the shared tiny model (loaded once for the session)."""
    monkeypatch.setattr(mmgpt_eval.api, "load", lambda *a, **k: tiny_model)


def _vqa_long(questions: str, *extra: str) -> list[str]:
    return [
        "--tasks",
        "vqav2",
        "--vqav2-questions",
        questions,
        "--vqav2-annotations",
        "vqa/v2_mscoco_val2014_annotations.json",
        "--vqav2-images",
        "vqa/val2014",
        *extra,
    ]


LONG_DEMOS = [
    "--template",
    "of-vqa",
    "--vqav2-train-questions",
    "train/v2_OpenEnded_mscoco_train2014_questions.json",
    "--vqav2-train-annotations",
    "train/v2_mscoco_train2014_annotations.json",
    "--vqav2-train-images",
    "train/train2014",
]


def test_long_prompt_is_refused_before_anything_is_written(long_ws, capsys, monkeypatch, tiny_load):
    line = _one_error(
        long_ws, RUN + _vqa_long("vqa/long-q.json"), capsys, monkeypatch, ["task vqav2, sample 1001", "1024 positions"]
    )
    n = int(line.split("the prompt has ")[1].split(" tokens")[0])
    assert n > 1024
    assert "--truncate left" in line


def test_truncate_left_refuses_to_cut_an_image_token(long_ws, capsys, monkeypatch, tiny_load):
    # the mmgpt template puts <image> before the question: keeping the end would drop it
    argv = RUN + _vqa_long("vqa/long-q.json", "--truncate", "left")
    _one_error(long_ws, argv, capsys, monkeypatch, ["task vqav2, sample 1001", "<image>", "--truncate left"])


def test_truncate_left_keeps_the_last_tokens_and_counts_them(long_ws, capsys, monkeypatch, tiny_load, tiny_model):
    monkeypatch.chdir(long_ws)
    argv = RUN + _vqa_long("vqa/v2_OpenEnded_mscoco_val2014_questions.json", *LONG_DEMOS)
    assert main(["-q"] + argv + ["--output-dir", "refused"]) == 2  # the demos make every prompt too long
    assert not (long_ws / "refused").exists()
    assert main(["-q"] + argv + ["--truncate", "left", "--max-new-tokens", "3"]) == 0, capsys.readouterr().err
    res = json.loads((long_ws / "out" / "results.json").read_text())
    tr = res["tasks"]["vqav2"]
    assert tr["truncation"] == {"mode": "left", "samples": 3}
    assert tr["notes"][0].startswith("--truncate left: 3 of 3 samples")
    records = [json.loads(x) for x in (long_ws / "out" / "samples" / "vqav2.jsonl").read_text().splitlines()[1:]]
    assert len(records) == 3
    tok = tiny_model.tokenizer
    for r in records:
        assert r["meta"]["prompt_truncated"] is True
        assert r["prompt"].count("<image>") == 1 and r["prompt"].endswith("Short answer:")
        assert 1024 - 3 - 5 <= len(tok(r["prompt"])["input_ids"]) <= 1024 - 3  # the answer fits too
    assert (
        "samples&#39; prompts were longer than the model&#39;s context" in (long_ws / "out" / "report.html").read_text()
    )
    # the same run without the long demos: nothing cut, no truncation key in a default run
    assert (
        main(["-q"] + RUN + _vqa_long("vqa/v2_OpenEnded_mscoco_val2014_questions.json") + ["--output-dir", "short"])
        == 0
    )
    assert "truncation" not in json.loads((long_ws / "short" / "results.json").read_text())["tasks"]["vqav2"]


def test_predict_refuses_a_long_prompt_before_generating(tmp_path, capsys, monkeypatch):
    """The causal-lm family knows its context too; predict writes nothing."""
    (tmp_path / "cases.jsonl").write_text(
        json.dumps({"id": "short", "prompt": "Hello"}) + "\n" + json.dumps({"id": "long", "prompt": LONG}) + "\n"
    )
    argv = ["predict", "--model", "tiny-lm", "--device", "cpu", "--input", "cases.jsonl", "--output", "o.jsonl"]
    line = _one_error(tmp_path, argv, capsys, monkeypatch, ["cases.jsonl:2: id long", "1024 positions"])
    assert "the prompt has" in line


# ------------------------------------------------------------------------------------------ units
class _WordModel:
    """A seam stand-in for Engine.fit: one token per word plus a BOS, 10 positions."""

    family = "words"
    accepts_images = True

    def context_limit(self) -> int:
        return 10

    def text_tokens(self, texts):
        return [len(t.split()) + 1 for t in texts]


def test_engine_fit_keeps_the_longest_end_within_the_budget():
    from mmgpt_eval.engine import Engine, GenerationRequest, RankingRequest
    from mmgpt_eval.errors import UserError
    from mmgpt_eval.generation_settings import GenerationSettings

    words = " ".join(f"w{i}" for i in range(20))
    gen = GenerationRequest(words, settings=GenerationSettings(max_new_tokens=3))
    rank = RankingRequest("<image> " + words, ["a", "b"], images=["x.png"])
    short = GenerationRequest("a b c")
    with pytest.raises(UserError, match=r"case 7: the prompt has 21 tokens, more than the model's context of 10"):
        Engine(_WordModel()).fit([short, gen], ["case 1", "case 7"])
    fitted, cut = Engine(_WordModel(), truncate="left").fit([short, gen])
    assert cut == [1] and fitted[0] is short
    assert fitted[1].prompt.split() == [f"w{i}" for i in range(14, 20)]  # 10 - 3 new tokens - BOS = 6 words
    with pytest.raises(UserError, match="would cut an <image> token"):
        Engine(_WordModel(), truncate="left").fit([rank])
    assert Engine(_WordModel(), truncate="left").fit([short]) == ([short], [])


def test_truncate_is_fingerprinted_only_when_not_the_default():
    from types import SimpleNamespace as NS

    from mmgpt_eval.config import EvalConfig, fingerprint_settings

    pt = NS(template=NS(demo=None), task=NS(multi_round=False))
    protocol = NS(selects_zero_shot_demos=False)
    assert "truncate" not in fingerprint_settings(pt, EvalConfig(), protocol)  # default runs keep theirs
    assert fingerprint_settings(pt, EvalConfig(truncate="left"), protocol)["truncate"] == "left"
