"""The dialogue probe set: typed records, a validating JSONL loader and image resolution (the ``blank``
image-key scheme is registered here).

File format: ``mmgpt_eval/data/dialog_spec.md``. The embedded set is
``mmgpt_eval/data/dialog_probes.jsonl``; every problem in a file is a :class:`UserError` naming
the file and line.
"""

from __future__ import annotations

import dataclasses

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..images import register_image_key
from ..io import iter_jsonl
from ..textmatch import find_term, normalise_answer
from .easyvqa import image_paths as easyvqa_image_paths
from .paths import inside
from .sample import ImageRef

__all__ = [
    "DEFAULT_PROBES_PATH",
    "TURN_KINDS",
    "ImageSpec",
    "BLANK_IMAGE",
    "TurnChecks",
    "Turn",
    "Conversation",
    "load_dialog_probes",
    "parse_conversation",
    "resolve_image",
    "blank_image",
]

DEFAULT_PROBES_PATH = Path(__file__).with_name("dialog_probes.jsonl")
TURN_KINDS = ("open", "short", "language")
EASYVQA_SPLITS = ("train", "test")

_CONV_KEYS = {"id", "image", "turns", "grounding", "grounding_other", "note", "caption"}
_TURN_KEYS = {"instruction", "kind", "reference", "checks"}
_CHECK_KEYS = {
    "must_include",
    "must_not_include",
    "expect_short_answer",
    "expect_count",
    "refers_back_to",
    "max_words",
    "min_words",
}


@dataclass(frozen=True)
class ImageSpec:
    """Where a conversation's image comes from, as its probe file says.

    ``source`` is ``"easyvqa"`` (``split``, ``image_id``), ``"counting"`` (``seed``, ``index``:
    :func:`mmgpt_eval.data.counting_images.make_counting_item`) or ``"path"`` (``path``; a
    relative path in a file is resolved against that file's folder when loading).
    """

    source: str
    split: str | None = None
    image_id: int | None = None
    seed: int | None = None
    index: int | None = None
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.source == "easyvqa":
            return {"source": "easyvqa", "split": self.split, "image_id": self.image_id}
        if self.source == "counting":
            return {"source": "counting", "seed": self.seed, "index": self.index}
        return {"path": self.path}

    def key(self) -> str:
        """A short stable name, e.g. ``easyvqa:test:12``, ``counting:3:5``, ``path:/x.png``."""
        if self.source == "easyvqa":
            return f"easyvqa:{self.split}:{self.image_id}"
        if self.source == "counting":
            return f"counting:{self.seed}:{self.index}"
        return f"path:{self.path}"

    def image_ref(self) -> ImageRef:
        """The sample image this names, read on demand with :func:`resolve_image`."""
        return ImageRef(key=self.key(), loader=lambda: resolve_image(self))


@dataclass(frozen=True)
class TurnChecks:
    must_include: tuple[str, ...] = ()
    must_not_include: tuple[str, ...] = ()
    expect_short_answer: str | None = None
    expect_count: int | None = None
    refers_back_to: int | None = None
    max_words: int | None = None
    min_words: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k in ("must_include", "must_not_include"):
            if getattr(self, k):
                out[k] = list(getattr(self, k))
        for k in ("expect_short_answer", "expect_count", "refers_back_to", "max_words", "min_words"):
            if getattr(self, k) is not None:
                out[k] = getattr(self, k)
        return out


@dataclass(frozen=True)
class Turn:
    instruction: str
    kind: str  # "open" | "short" | "language"
    reference: str | None = None
    checks: TurnChecks = field(default_factory=TurnChecks)


@dataclass(frozen=True)
class Conversation:
    id: str
    image: ImageSpec | None
    turns: tuple[Turn, ...]
    grounding: bool = False
    # The "other image" for the grounding probe; filled in by the loader when the file omits it.
    grounding_other: ImageSpec | None = None
    note: str | None = None
    file: str | None = None  # the probe file and line this conversation came from
    line: int | None = None
    caption: str | None = None  # what a judge model reads about the image (it does not see it)


# --------------------------------------------------------------------------- parsing


class _Ctx:
    def __init__(self, path: str | os.PathLike | None, line: int | None):
        self.path, self.line = path, line

    def err(self, msg: str) -> UserError:
        return UserError(msg, self.path, self.line)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _nonneg_int(ctx: _Ctx, v: Any, what: str) -> int:
    if not _is_int(v) or v < 0:
        raise ctx.err(f"{what} must be a non-negative integer, got {v!r}")
    return v


def _str(ctx: _Ctx, v: Any, what: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ctx.err(f"{what} must be a non-empty string, got {v!r}")
    return v


def _parse_image(ctx: _Ctx, obj: Any, what: str, base_dir: Path | None) -> ImageSpec | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ctx.err(f"{what} must be an object or null, got {type(obj).__name__}")
    source = obj.get("source", "path" if "path" in obj else None)
    if source == "easyvqa":
        extra = set(obj) - {"source", "split", "image_id"}
        if extra:
            raise ctx.err(f"{what}: unknown key(s) {sorted(extra)} for source 'easyvqa'")
        split = obj.get("split", "test")
        if split not in EASYVQA_SPLITS:
            raise ctx.err(f"{what}.split must be one of {list(EASYVQA_SPLITS)}, got {split!r}")
        if "image_id" not in obj:
            raise ctx.err(f"{what}: source 'easyvqa' needs image_id")
        return ImageSpec("easyvqa", split=split, image_id=_nonneg_int(ctx, obj["image_id"], f"{what}.image_id"))
    if source == "counting":
        extra = set(obj) - {"source", "seed", "index"}
        if extra:
            raise ctx.err(f"{what}: unknown key(s) {sorted(extra)} for source 'counting'")
        if "seed" not in obj or "index" not in obj:
            raise ctx.err(f"{what}: source 'counting' needs seed and index")
        seed = obj["seed"]
        if not _is_int(seed):
            raise ctx.err(f"{what}.seed must be an integer, got {seed!r}")
        return ImageSpec("counting", seed=seed, index=_nonneg_int(ctx, obj["index"], f"{what}.index"))
    if source == "path":
        extra = set(obj) - {"source", "path"}
        if extra:
            raise ctx.err(f"{what}: unknown key(s) {sorted(extra)} for an image path")
        rel = _str(ctx, obj.get("path"), f"{what}.path")
        p = inside(base_dir, rel, ctx.path, ctx.line) if base_dir is not None else Path(rel)
        return ImageSpec("path", path=os.fspath(p))
    raise ctx.err(f"{what}.source must be 'easyvqa', 'counting' or 'path', got {source!r}")


def _parse_str_list(ctx: _Ctx, v: Any, what: str) -> tuple[str, ...]:
    if not isinstance(v, list):
        raise ctx.err(f"{what} must be a list of strings")
    out = []
    for i, s in enumerate(v):
        s = _str(ctx, s, f"{what}[{i}]")
        if not any(alt.strip() for alt in s.split("|")):
            raise ctx.err(f"{what}[{i}] has no non-empty alternative")
        out.append(s)
    return tuple(out)


def _parse_checks(ctx: _Ctx, obj: Any, what: str, turn_index: int) -> TurnChecks:
    if obj is None:
        return TurnChecks()
    if not isinstance(obj, dict):
        raise ctx.err(f"{what} must be an object")
    extra = set(obj) - _CHECK_KEYS
    if extra:
        raise ctx.err(f"{what}: unknown key(s) {sorted(extra)}; expected some of {sorted(_CHECK_KEYS)}")
    kw: dict[str, Any] = {}
    for k in ("must_include", "must_not_include"):
        if k in obj:
            kw[k] = _parse_str_list(ctx, obj[k], f"{what}.{k}")
    if "expect_short_answer" in obj:
        v = _str(ctx, obj["expect_short_answer"], f"{what}.expect_short_answer")
        if not normalise_answer(v):
            raise ctx.err(f"{what}.expect_short_answer is empty once normalised: {v!r}")
        kw["expect_short_answer"] = v
    if "expect_count" in obj:
        kw["expect_count"] = _nonneg_int(ctx, obj["expect_count"], f"{what}.expect_count")
    for k in ("max_words", "min_words"):
        if k in obj:
            v = obj[k]
            if not _is_int(v) or v < 1:
                raise ctx.err(f"{what}.{k} must be a positive integer, got {v!r}")
            kw[k] = v
    if "max_words" in kw and "min_words" in kw and kw["min_words"] > kw["max_words"]:
        raise ctx.err(f"{what}: min_words {kw['min_words']} > max_words {kw['max_words']}")
    if "refers_back_to" in obj:
        k = obj["refers_back_to"]
        if not _is_int(k) or not 0 <= k < turn_index:
            raise ctx.err(
                f"{what}.refers_back_to must be the index of an earlier turn (0..{turn_index - 1}), got {k!r}"
            )
        if not kw.get("must_include"):
            raise ctx.err(f"{what}: refers_back_to needs must_include keywords (stated in turn {k})")
        kw["refers_back_to"] = k
    return TurnChecks(**kw)


def parse_conversation(
    obj: Any, path: str | os.PathLike | None = None, line: int | None = None, base_dir: Path | None = None
) -> Conversation:
    """Validate one JSON object; errors are ``UserError(msg, path, line)``."""
    ctx = _Ctx(path, line)
    if not isinstance(obj, dict):
        raise ctx.err(f"expected a JSON object, got {type(obj).__name__}")
    extra = set(obj) - _CONV_KEYS
    if extra:
        raise ctx.err(f"unknown key(s) {sorted(extra)}; expected some of {sorted(_CONV_KEYS)}")
    cid = _str(ctx, obj.get("id"), "id")
    if "image" not in obj:
        raise ctx.err(f"{cid}: missing 'image' (use null for a language-only conversation)")
    image = _parse_image(ctx, obj["image"], "image", base_dir)
    turns_obj = obj.get("turns")
    if not isinstance(turns_obj, list) or not turns_obj:
        raise ctx.err(f"{cid}: 'turns' must be a non-empty list")
    turns: list[Turn] = []
    for i, t in enumerate(turns_obj):
        what = f"turns[{i}]"
        if not isinstance(t, dict):
            raise ctx.err(f"{cid}: {what} must be an object")
        extra = set(t) - _TURN_KEYS
        if extra:
            raise ctx.err(f"{cid}: {what}: unknown key(s) {sorted(extra)}")
        instruction = _str(ctx, t.get("instruction"), f"{cid}: {what}.instruction")
        kind = t.get("kind")
        if kind not in TURN_KINDS:
            raise ctx.err(f"{cid}: {what}.kind must be one of {list(TURN_KINDS)}, got {kind!r}")
        if image is None and kind != "language":
            raise ctx.err(
                f"{cid}: {what}.kind is {kind!r} but the conversation has no image (only 'language' turns may)"
            )
        reference = t.get("reference")
        if reference is not None:
            reference = _str(ctx, reference, f"{cid}: {what}.reference")
        checks = _parse_checks(ctx, t.get("checks"), f"{cid}: {what}.checks", i)
        if checks.refers_back_to is not None:
            earlier = turns[checks.refers_back_to]
            stated = earlier.instruction + " \n " + (earlier.reference or "")
            for term in checks.must_include:
                if not find_term(stated, term):
                    raise ctx.err(f"{cid}: {what}: keyword {term!r} is not stated in turn {checks.refers_back_to}")
                if find_term(instruction, term):
                    raise ctx.err(f"{cid}: {what}: keyword {term!r} already appears in this turn's instruction")
        turns.append(Turn(instruction, kind, reference, checks))
    grounding = obj.get("grounding", False)
    if not isinstance(grounding, bool):
        raise ctx.err(f"{cid}: 'grounding' must be true or false, got {grounding!r}")
    if grounding and image is None:
        raise ctx.err(f"{cid}: 'grounding' needs an image")
    other = _parse_image(ctx, obj.get("grounding_other"), "grounding_other", base_dir)
    if other is not None:
        if not grounding:
            raise ctx.err(f"{cid}: 'grounding_other' is only meaningful with \"grounding\": true")
        if image is not None and other.key() == image.key():
            raise ctx.err(f"{cid}: 'grounding_other' is the conversation's own image")
    note = obj.get("note")
    if note is not None and not isinstance(note, str):
        raise ctx.err(f"{cid}: 'note' must be a string")
    caption = obj.get("caption")
    if caption is not None and (not isinstance(caption, str) or not caption.strip()):
        raise ctx.err(f"{cid}: 'caption' must be a non-empty string")
    if caption is not None and image is None:
        raise ctx.err(f"{cid}: 'caption' describes the image; this conversation has none")
    return Conversation(
        cid,
        image,
        tuple(turns),
        grounding,
        other,
        note,
        None if path is None else os.fspath(path),
        line,
        caption,
    )


def load_dialog_probes(path: str | os.PathLike | None = None) -> list[Conversation]:
    """Load and validate a probe JSONL file (default: the embedded set).

    Ids must be unique. A grounding conversation without ``grounding_other`` gets the image of
    the next conversation in the file (cyclically) whose image differs from its own.
    """
    p = Path(path) if path is not None else DEFAULT_PROBES_PATH
    if p.is_dir():
        raise UserError("is a directory, expected a JSONL file", p)
    convs: list[Conversation] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(p):
        conv = parse_conversation(obj, p, lineno, base_dir=p.parent)
        if conv.id in seen:
            raise UserError(f"duplicate id {conv.id!r} (first on line {seen[conv.id]})", p, lineno)
        seen[conv.id] = lineno
        convs.append(conv)
    if not convs:
        raise UserError("no conversations in file", p)
    for c in convs:  # every image file is readable before any model is loaded
        for ref in (c.image, c.grounding_other):
            if ref is not None and ref.source == "path":
                try:
                    resolve_image(ref)
                except UserError as e:
                    raise UserError(f"{c.id}: {e}", p, c.line) from None
    out = []
    for i, c in enumerate(convs):
        if c.grounding and c.grounding_other is None:
            assert c.image is not None
            other = None
            for j in range(1, len(convs)):
                cand = convs[(i + j) % len(convs)].image
                if cand is not None and cand.key() != c.image.key():
                    other = cand
                    break
            if other is None:
                raise UserError(f"{c.id}: no other image in the file for the grounding probe", p, c.line)
            c = dataclasses.replace(c, grounding_other=other)
        out.append(c)
    return out


# --------------------------------------------------------------------------- images


def blank_image(size: int = 64, colour: tuple[int, int, int] = (255, 255, 255)):
    """A plain ``size`` x ``size`` RGB image (white by default)."""
    from PIL import Image

    return Image.new("RGB", (size, size), colour)


# the white image of the grounding probe ("same question, blank image")
BLANK_IMAGE = ImageRef(key="blank:64:white", loader=lambda: blank_image(64))


def _open_blank_key(key: str):
    return blank_image(int(key.split(":")[1]))


register_image_key("blank", _open_blank_key)  # blank:<size>:white


def resolve_image(ref: ImageSpec):
    """Load the picture ``ref`` points at as an RGB ``PIL.Image`` (fully read, file closed)."""
    from PIL import Image, UnidentifiedImageError

    if ref.source == "counting":
        from .counting_images import make_counting_item

        assert ref.seed is not None and ref.index is not None  # a counting reference carries both
        return make_counting_item(ref.seed, ref.index).image()
    if ref.source == "easyvqa":
        paths = easyvqa_image_paths(ref.split or "test")
        if ref.image_id not in paths:
            raise UserError(f"easy-vqa {ref.split} split has no image {ref.image_id} (ids 0..{len(paths) - 1})")
        file = paths[ref.image_id]
    elif ref.source == "path":
        assert ref.path is not None  # a path reference carries its path
        file = ref.path
    else:
        raise UserError(f"unknown image source {ref.source!r}")
    try:
        with Image.open(file) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise UserError("image file not found", file) from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"cannot read image: {e}", file) from None
