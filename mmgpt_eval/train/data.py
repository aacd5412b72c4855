"""Training data: adapters for the paper's datasets (local copies) and our own sets, and tokenisation.

An :class:`Example` is a list of (instruction, answer) turns with at most one image. Two renderings:

* ``mmgpt`` (instruction tuning, MultiModal-GPT's trainer format): single turn =
  ``template(instruction) + answer + </s>``, the prompt tokens masked out of the loss (the prompt is
  tokenised together with the answer and masked by the tokenised prompt's length, as MultiModal-GPT
  does). Multi-turn: every turn tokenised on its own (BOS ... answer EOS) and concatenated, the first
  turn carrying the image block, every instruction masked -- MultiModal-GPT's DialDataset format, but
  with turns paired correctly (its loop paired (H0,G0), (G0,H1), ...; we pair (H_i, G_i)).
* ``openflamingo`` (pretraining the tiny base): ``<image>Question:q Short answer:a<|endofchunk|>``,
  ``<image>Output:caption<|endofchunk|>``, or plain text ending in ``</s>``; loss on every token
  except BOS, padding and ``<image>``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..errors import UserError
from ..io import iter_jsonl, read_json
from ..taskapi import ImageRef
from ..templates import TEMPLATES

IGNORE = -100

# Our own caption / reason phrasings (MultiModal-GPT used its own lists; these are written here).
CAPTION_PHRASINGS = [
    "Describe the image.",
    "What is in this picture?",
    "Write a caption for the image.",
    "Tell me what you see in this image.",
    "Give a short description of the photo.",
    "What does the image show?",
    "Summarize the content of the picture.",
    "Caption this image.",
]
REASON_PHRASINGS = [
    "Why?",
    "What is the reason?",
    "Can you explain why?",
    "Please give your reasoning.",
    "Explain your answer.",
]


@dataclass
class Example:
    turns: list[tuple[str, str]]
    image: ImageRef | None = None
    kind: str = "vl"  # "vl" or "lang"
    style: str = "mmgpt"  # "mmgpt" or "openflamingo"
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _need(path: str | Path | None, dataset: str, what: str = "file") -> Path:
    if path is None:
        raise UserError(f"dataset {dataset}: no path configured (set path = ... in the recipe)")
    p = Path(path)
    if not p.exists():
        raise UserError(f"dataset {dataset}: expected {what} not found", p)
    return p


def _img(folder: Path, name: str) -> ImageRef:
    p = folder / name
    return ImageRef(key=str(p), path=str(p))


def _strip_image_token(text: str) -> str:
    # MultiModal-GPT removes <image> and newlines from LLaVA questions
    return text.replace("<image>", "").replace("\n", "").strip()


def _sample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return items
    rng = random.Random(seed)
    return rng.sample(items, n)


# ----------------------------------------------------------------------------- paper datasets
def llava_single(path, images, sample=None, seed=42, name="llava") -> list[Example]:
    """LLaVA-Instruct detail_23k / complex_reasoning_77k: the first human/gpt pair of each item."""
    p = _need(path, name)
    img_dir = _need(images, name, "image folder")
    data = read_json(p)
    out = []
    for i, item in enumerate(data):
        conv = item.get("conversations") or []
        if len(conv) < 2 or "image" not in item:
            raise UserError(f"entry {i}: needs 'image' and at least two conversation turns", p)
        out.append(
            Example(
                [(_strip_image_token(conv[0]["value"]), conv[1]["value"])], _img(img_dir, item["image"]), source=name
            )
        )
    return _sample(out, sample, seed)


def llava_dialog(path, images, sample=None, seed=42, name="llava_dial") -> list[Example]:
    """LLaVA conversation_58k, turns paired correctly: (human_0, gpt_0), (human_1, gpt_1), ..."""
    p = _need(path, name)
    img_dir = _need(images, name, "image folder")
    out = []
    for i, item in enumerate(read_json(p)):
        conv = item.get("conversations") or []
        turns = []
        for k in range(0, len(conv) - 1, 2):
            h, g = conv[k], conv[k + 1]
            if h.get("from") != "human" or g.get("from") != "gpt":
                raise UserError(f"entry {i}: turn {k} is not a human/gpt pair", p)
            turns.append((_strip_image_token(h["value"]), g["value"]))
        if turns:
            out.append(Example(turns, _img(img_dir, item["image"]), source=name))
    return _sample(out, sample, seed)


def cc_sbu_align(path, sample=None, seed=42, name="cc_sbu_align") -> list[Example]:
    """MiniGPT-4 cc_sbu_align: folder with filter_cap.json and image/<image_id>.jpg."""
    root = _need(path, name, "folder")
    data = read_json(_need(root / "filter_cap.json", name))
    rng = random.Random(seed)
    out = [
        Example(
            [(rng.choice(CAPTION_PHRASINGS), a["caption"])], _img(root / "image", f"{a['image_id']}.jpg"), source=name
        )
        for a in data["annotations"]
    ]
    return _sample(out, sample, seed)


def aokvqa(path, images, sample=None, seed=42, name="aokvqa") -> list[Example]:
    """A-OKVQA: answer with rationale ("The answer is X. Because ..."), question + a reason phrasing."""
    p = _need(path, name)
    img_dir = _need(images, name, "image folder")
    rng = random.Random(seed)
    out = []
    for i, q in enumerate(read_json(p)):
        try:
            choice = q["choices"][q["correct_choice_idx"]]
            answer = f"The answer is {choice}. Because " + " ".join(q["rationales"])
            out.append(
                Example(
                    [(q["question"] + " " + rng.choice(REASON_PHRASINGS), answer)],
                    _img(img_dir, f"{int(q['image_id']):012d}.jpg"),
                    source=name,
                )
            )
        except (KeyError, IndexError, TypeError, ValueError):
            raise UserError(f"entry {i} lacks question/choices/correct_choice_idx/rationales/image_id", p) from None
    return _sample(out, sample, seed)


def coco_karpathy(path, images, sample=None, seed=42, split="train", name="coco_caption") -> list[Example]:
    p = _need(path, name)
    root = _need(images, name, "image folder")
    rng = random.Random(seed)
    out = []
    for im in read_json(p)["images"]:
        if im.get("split") not in (split, "restval" if split == "train" else split):
            continue
        cap = rng.choice(im["sentences"])["raw"]
        out.append(
            Example(
                [(rng.choice(CAPTION_PHRASINGS), cap)], _img(root / im.get("filepath", ""), im["filename"]), source=name
            )
        )
    return _sample(out, sample, seed)


def ocr_vqa(path, images, sample=None, seed=42, name="ocr_vqa") -> list[Example]:
    """OCR-VQA dataset.json ({id: {questions, answers, ...}}); one random question per image."""
    p = _need(path, name)
    img_dir = _need(images, name, "image folder")
    rng = random.Random(seed)
    out = []
    for key, item in read_json(p).items():
        qs, ans = item.get("questions") or [], item.get("answers") or []
        if not qs or len(qs) != len(ans):
            continue
        j = rng.randrange(len(qs))
        out.append(Example([(qs[j], ans[j])], _img(img_dir, f"{key}.jpg"), source=name))
    return _sample(out, sample, seed)


def dolly(path, sample=None, seed=42, name="dolly") -> list[Example]:
    p = _need(path, name)
    out = []
    for _, r in iter_jsonl(p):
        instr = r["instruction"] + (f"\n\n### Input:\n{r['context']}" if r.get("context") else "")
        out.append(Example([(instr, r["response"])], None, kind="lang", source=name))
    return _sample(out, sample, seed)


def alpaca_gpt4(path, sample=None, seed=42, name="alpaca_gpt4") -> list[Example]:
    p = _need(path, name)
    out = [
        Example(
            [(r["instruction"] + (f"\n\n### Input:\n{r['input']}" if r.get("input") else ""), r["output"])],
            None,
            kind="lang",
            source=name,
        )
        for r in read_json(p)
    ]
    return _sample(out, sample, seed)


def baize(path, sample=None, seed=42, name="baize") -> list[Example]:
    """Baize quora_chat_data.json: '[|Human|] ... [|AI|] ...' transcripts into (human, AI) turns."""
    import re

    p = _need(path, name)
    out = []
    for r in read_json(p):
        parts = re.split(r"\[\|(Human|AI)\|\]", r["input"])
        turns, pending = [], None
        for who, text in zip(parts[1::2], parts[2::2]):
            text = text.strip()
            if who == "Human":
                pending = text
            elif pending is not None and text:
                turns.append((pending, text))
                pending = None
        if turns:
            out.append(Example(turns, None, kind="lang", source=name))
    return _sample(out, sample, seed)


# ----------------------------------------------------------------------------- our own sets
def _instruction(style: str, pool: list[str], rng: random.Random) -> str:
    """An instruction from ``pool``; OpenFlamingo-style text follows the image with none
    (``<image>Output:{text}``), and then the rng is left untouched."""
    return "" if style == "openflamingo" else rng.choice(pool)


def easyvqa_qa(split="train", style="mmgpt", sample=None, seed=42, balance=True, name="easyvqa") -> list[Example]:
    """easy-VQA questions with their one-word answers. ``balance``: resample so yes/no, shape and colour
    questions are about 45/28/27 % (what made a tiny model learn shapes, see shared research notes)."""
    from ..data.easyvqa import load_split

    samples = load_split(split)
    out = [
        Example(
            [(s.fields["question"], s.references[0])],
            s.images[0],
            style=style,
            source=name,
            meta={"answer_type": s.meta["answer_type"]},
        )
        for s in samples
    ]
    if balance:
        rng = random.Random(seed)
        groups: dict[str, list[Example]] = {}
        for e in out:
            groups.setdefault(e.meta["answer_type"], []).append(e)
        target = {"yes/no": 0.45, "shape": 0.28, "color": 0.27}
        n = len(out)
        out = [e for t, share in target.items() for e in rng.choices(groups[t], k=int(share * n))]
        rng.shuffle(out)
    return _sample(out, sample, seed)


def easyvqa_text(
    split="train", style="mmgpt", captions=True, descriptions=True, sample=None, seed=42, name="easyvqa_text"
) -> list[Example]:
    """Short captions and detailed descriptions of easy-VQA images (attributes from its questions)."""
    import easy_vqa

    from .synthetic import (
        CAPTION_INSTRUCTIONS,
        DESCRIBE_INSTRUCTIONS,
        easyvqa_attributes,
        shape_caption,
        shape_description,
    )

    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    rng = random.Random(seed)
    out = []
    for iid, attr in sorted(easyvqa_attributes(split).items()):
        ref = ImageRef(key=f"easyvqa:{split}:{iid}", path=paths[iid])
        if captions:
            out.append(
                Example(
                    [(_instruction(style, CAPTION_INSTRUCTIONS, rng), shape_caption(attr))],
                    ref,
                    style=style,
                    source=name,
                    meta={"answer": "short"},
                )
            )
        if descriptions:
            out.append(
                Example(
                    [(_instruction(style, DESCRIBE_INSTRUCTIONS, rng), shape_description(attr, rng))],
                    ref,
                    style=style,
                    source=name,
                    meta={"answer": "long"},
                )
            )
    return _sample(out, sample, seed)


def easyvqa_dialog(split="train", n=1500, seed=5, name="easyvqa_dialog") -> list[Example]:
    """2-3 turn conversations about one easy-VQA image: its own questions (one-word answers), a short
    caption and a detailed description, in random order."""
    import easy_vqa

    from .synthetic import (
        CAPTION_INSTRUCTIONS,
        DESCRIBE_INSTRUCTIONS,
        easyvqa_attributes,
        shape_caption,
        shape_description,
    )

    qs, ans, ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    per_image: dict[int, list[tuple[str, str]]] = {}
    for q, a, i in zip(qs, ans, ids):
        per_image.setdefault(i, []).append((q, a))
    attrs = easyvqa_attributes(split)
    rng = random.Random(seed)
    image_ids = sorted(attrs)
    out = []
    for _ in range(n):
        iid = rng.choice(image_ids)
        attr = attrs[iid]
        pool = [
            rng.choice(per_image[iid]),
            rng.choice(per_image[iid]),
            (rng.choice(CAPTION_INSTRUCTIONS), shape_caption(attr)),
            (rng.choice(DESCRIBE_INSTRUCTIONS), shape_description(attr, rng)),
        ]
        rng.shuffle(pool)
        turns = pool[: rng.choice([2, 3])]
        out.append(Example(turns, ImageRef(key=f"easyvqa:{split}:{iid}", path=paths[iid]), source=name))
    return out


def counting_set(
    n=1100, seed=2, style="mmgpt", captions=True, descriptions=True, questions=True, name="counting"
) -> list[Example]:
    """Procedural counting images (train seed 2 by default; the test set uses seed 1)."""
    from ..data.counting_images import generate_counting_set
    from .synthetic import CAPTION_INSTRUCTIONS, DESCRIBE_INSTRUCTIONS, counting_caption, counting_description

    rng = random.Random(seed)
    out = []
    for item in generate_counting_set(n=n, seed=seed):
        ref = ImageRef(key=f"counting:{item.seed}:{item.index}", loader=item.image)
        if questions:
            out.append(Example([(item.question, str(item.answer))], ref, style=style, source=name))
        if captions:
            out.append(
                Example(
                    [(_instruction(style, CAPTION_INSTRUCTIONS, rng), counting_caption(item.shapes))],
                    ref,
                    style=style,
                    source=name,
                    meta={"answer": "short"},
                )
            )
        if descriptions:
            out.append(
                Example(
                    [(_instruction(style, DESCRIBE_INSTRUCTIONS, rng), counting_description(item.shapes, rng))],
                    ref,
                    style=style,
                    source=name,
                    meta={"answer": "long"},
                )
            )
    return out


def language_set(n=4000, seed=3, short_answers=False, multi_turn=0.25, name="language") -> list[Example]:
    """Language-only instructions with long answers written by code; some as 2-3 turn conversations."""
    from .synthetic import language_example, short_answer_for

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k = rng.choice([2, 3]) if rng.random() < multi_turn else 1
        turns = [language_example(rng) for _ in range(k)]
        if short_answers:
            turns = [(q, short_answer_for(a)) for q, a in turns]
        out.append(Example(turns, None, kind="lang", source=name))
    return out


def plain_text(n=2000, seed=4, name="plain_text") -> list[Example]:
    """Plain text for the base LM (OpenFlamingo-style pretraining): answers of the language set."""
    from .synthetic import language_example

    rng = random.Random(seed)
    return [
        Example([("", language_example(rng)[1])], None, kind="lang", style="openflamingo", source=name)
        for _ in range(n)
    ]


ADAPTERS: dict[str, Callable[..., list[Example]]] = {
    "llava": llava_single,
    "llava_detail": llava_single,
    "llava_complex": llava_single,
    "llava_dial": llava_dialog,
    "cc_sbu_align": cc_sbu_align,
    "aokvqa": aokvqa,
    "coco_caption": coco_karpathy,
    "ocr_vqa": ocr_vqa,
    "dolly": dolly,
    "alpaca_gpt4": alpaca_gpt4,
    "baize": baize,
    "easyvqa": easyvqa_qa,
    "easyvqa_text": easyvqa_text,
    "easyvqa_dialog": easyvqa_dialog,
    "counting": counting_set,
    "language": language_set,
    "plain_text": plain_text,
}


def build_dataset(entries: Iterable[dict[str, Any]], base: Path | None = None) -> list[Example]:
    """Recipe ``[[data.vision]]`` / ``[[data.language]]`` entries -> examples."""
    out: list[Example] = []
    for e in entries:
        e = dict(e)
        kind = e.pop("type", None)
        if kind not in ADAPTERS:
            raise UserError(f"unknown dataset type {kind!r}; known: {', '.join(sorted(ADAPTERS))}")
        for k in ("path", "images"):
            if isinstance(e.get(k), str) and base is not None and not Path(e[k]).is_absolute():
                e[k] = str(base / e[k])
        repeat = int(e.pop("repeat", 1))
        try:
            items = ADAPTERS[kind](**e)
        except TypeError as err:
            raise UserError(f"dataset {kind}: bad options ({err})") from None
        out.extend(items * repeat)
    return out


# ----------------------------------------------------------------------------- tokenisation
@dataclass
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    image: ImageRef | None


def tokenize_example(ex: Example, tok, max_length: int = 512) -> Tokenized:
    eos = tok.eos_token_id
    image_id = tok.convert_tokens_to_ids("<image>")
    if ex.style == "openflamingo":
        q, a = ex.turns[0]
        if ex.image is None:
            text = a
        elif q:
            text = TEMPLATES["of-vqa"].render_demo(question=q, answer=a)
        else:
            text = TEMPLATES["of-caption"].render_demo(caption=a)
        ids: list[int] = tok(text)["input_ids"]
        if ex.image is None:
            ids = ids + [eos]
        ids = ids[:max_length]
        labels = [IGNORE if (i == 0 or t == image_id) else t for i, t in enumerate(ids)]
        return Tokenized(ids, labels, ex.image)
    ids = []
    labels = []
    has_image = ex.image is not None
    for k, (q, a) in enumerate(ex.turns):
        if k == 0:
            prompt = TEMPLATES["mmgpt" if has_image else "mmgpt-text"].render(question=q)
        else:
            prompt = TEMPLATES["mmgpt-turn"].render(question=q)
        p_ids = tok(prompt)["input_ids"]
        full = tok(prompt + a)["input_ids"][:max_length]
        if len(full) < max_length:
            full = full + [eos]
        n_p = min(len(p_ids), len(full))
        ids.extend(full)
        labels.extend([IGNORE] * n_p + full[n_p:])
    labels = [IGNORE if t == image_id else lab for t, lab in zip(ids, labels)]
    return Tokenized(ids, labels, ex.image)


def collate(batch: list[Tokenized], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right padding; labels -100 on padding."""
    n = max(len(b.input_ids) for b in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), n), dtype=torch.long)
    for i, b in enumerate(batch):
        ids[i, : len(b.input_ids)] = torch.tensor(b.input_ids)
        labels[i, : len(b.labels)] = torch.tensor(b.labels)
        mask[i, : len(b.input_ids)] = 1
    return ids, mask, labels
