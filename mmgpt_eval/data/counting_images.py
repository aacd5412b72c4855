"""Procedural counting images: 64x64 RGB pictures of 0-10 non-overlapping coloured shapes.

Determinism contract: the same ``(seed, index)`` gives the same item, the same pixels and the
same PNG bytes on every machine and Python/Pillow version. To get there:

* randomness comes only from ``random.Random(f"mmgpt-counting:{seed}:{index}")`` (string seeding
  is SHA-512 based and stable) through :func:`_below`, which uses only ``getrandbits`` (the raw
  Mersenne Twister stream) and integer arithmetic - never floats or ``randrange``/``choice``;
* shapes are rasterised here with integer arithmetic (no antialiasing, no Pillow drawing code);
* PNGs are encoded here (:func:`encode_png`): 8-bit RGB, no metadata chunks, "Sub" filter on
  every row, one fixed-Huffman deflate block with distance-1 run-length matches. Pillow's encoder
  is not used because its bytes depend on the zlib build Pillow was linked against.

Each item is independent of ``n``: item ``i`` of seed ``s`` is the same whatever the set size.

Balancing: item ``i`` asks about a count of ``i % 11`` (0..10) and alternates the asked
attribute in blocks of 11: ``kind`` when ``(i // 11)`` is even ("How many circles are there?"),
``colour`` when odd ("How many red shapes are there?"). The default 550 items therefore hold 50
questions per true count, 25 about a kind and 25 about a colour. Besides the ``answer`` target
shapes, an item holds ``d`` distractors that do not match the asked attribute, ``d`` uniform in
``0 .. 10 - answer``, so the total number of shapes is never more than 10.

Layout: each shape is a square bounding box of 8-12 px, at least 1 px from the border and at
least 2 px from every other box (rejection sampling, 100 tries per shape, 20 restarts); if that
ever fails, a jittered 4x4 grid layout (one shape per 16 px cell) is used, which always fits.
"""

from __future__ import annotations

import math
import os
import random
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..images import register_image_key
from ..io import atomic_write_bytes, atomic_write_text

__all__ = [
    "KINDS",
    "COLOURS",
    "IMAGE_SIZE",
    "MAX_TOTAL",
    "DEFAULT_N",
    "SPLIT_SEEDS",
    "DEFAULT_SEED",
    "PROBE_SEED",
    "Shape",
    "CountingItem",
    "make_counting_item",
    "generate_counting_set",
    "write_counting_set",
    "render_pixels",
    "encode_png",
]

KINDS: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 150, 50),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 0),
    "purple": (140, 50, 170),
    "orange": (245, 130, 20),
}
BACKGROUND = (255, 255, 255)
IMAGE_SIZE = 64
MAX_TOTAL = 10
MIN_SHAPE, MAX_SHAPE = 8, 12
MARGIN, GAP = 1, 2
DEFAULT_N = 550  # 50 items per true count 0..10
SPLIT_SEEDS = {"test": 1, "train": 2}
DEFAULT_SEED = SPLIT_SEEDS["test"]
PROBE_SEED = 3  # the dialogue probe set's counting images (mmgpt_eval/data/dialog_probes.jsonl)

_TRIES_PER_SHAPE = 100
_RESTARTS = 20
_CELL = 16


@dataclass(frozen=True)
class Shape:
    """One drawn shape. ``bbox`` is ``(left, top, right, bottom)`` with right/bottom exclusive."""

    kind: str
    colour: str
    bbox: tuple[int, int, int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "colour": self.colour, "bbox": list(self.bbox)}


@dataclass(frozen=True)
class CountingItem:
    """A counting question; the image is rendered on demand (pixels ~0.2 ms, PNG ~2 ms)."""

    id: str
    seed: int
    index: int
    question: str
    answer: int
    asked: tuple[str, str]  # ("kind", "circle") or ("colour", "red")
    shapes: tuple[Shape, ...]

    @property
    def size(self) -> int:
        return IMAGE_SIZE

    def pixels(self) -> bytes:
        """Raw RGB bytes, row-major, ``64 * 64 * 3`` long."""
        return render_pixels(self.shapes)

    def image(self):
        """The picture as a new ``PIL.Image`` in RGB mode."""
        from PIL import Image

        return Image.frombytes("RGB", (IMAGE_SIZE, IMAGE_SIZE), self.pixels())

    def png_bytes(self) -> bytes:
        return encode_png(IMAGE_SIZE, IMAGE_SIZE, self.pixels())

    def count(self, attribute: str, value: str) -> int:
        """How many shapes have ``attribute`` (``"kind"``/``"colour"``) equal to ``value``."""
        if attribute not in ("kind", "colour"):
            raise ValueError(f"attribute must be 'kind' or 'colour', got {attribute!r}")
        return sum(1 for s in self.shapes if getattr(s, attribute) == value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seed": self.seed,
            "index": self.index,
            "question": self.question,
            "answer": self.answer,
            "asked": {"attribute": self.asked[0], "value": self.asked[1]},
            "shapes": [s.to_dict() for s in self.shapes],
        }


# --------------------------------------------------------------------------- randomness


def _below(rng: random.Random, n: int) -> int:
    """Uniform integer in ``[0, n)`` from raw 32-bit draws (rejection sampling, no floats)."""
    if n <= 0:
        raise ValueError("n must be positive")
    limit = (1 << 32) - ((1 << 32) % n)
    while True:
        v = rng.getrandbits(32)
        if v < limit:
            return v % n


def _shuffle(rng: random.Random, xs: list) -> None:
    for i in range(len(xs) - 1, 0, -1):
        j = _below(rng, i + 1)
        xs[i], xs[j] = xs[j], xs[i]


# --------------------------------------------------------------------------- layout


def _separated(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] >= b[2] + GAP or b[0] >= a[2] + GAP or a[1] >= b[3] + GAP or b[1] >= a[3] + GAP


def _layout_random(rng: random.Random, count: int) -> list[tuple[int, int, int, int]] | None:
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(count):
        for _ in range(_TRIES_PER_SHAPE):
            s = MIN_SHAPE + _below(rng, MAX_SHAPE - MIN_SHAPE + 1)
            x = MARGIN + _below(rng, IMAGE_SIZE - 2 * MARGIN - s + 1)
            y = MARGIN + _below(rng, IMAGE_SIZE - 2 * MARGIN - s + 1)
            box = (x, y, x + s, y + s)
            if all(_separated(box, b) for b in boxes):
                boxes.append(box)
                break
        else:
            return None
    return boxes


def _layout_grid(rng: random.Random, count: int) -> list[tuple[int, int, int, int]]:
    """One shape per 16 px cell, inset >= 1 px: boxes are always >= 2 px apart."""
    per_row = IMAGE_SIZE // _CELL
    cells = list(range(per_row * per_row))
    _shuffle(rng, cells)
    boxes = []
    for cell in cells[:count]:
        cx, cy = (cell % per_row) * _CELL, (cell // per_row) * _CELL
        s = MIN_SHAPE + _below(rng, MAX_SHAPE - MIN_SHAPE + 1)
        x = cx + 1 + _below(rng, _CELL - s - 1)
        y = cy + 1 + _below(rng, _CELL - s - 1)
        boxes.append((x, y, x + s, y + s))
    return boxes


def _layout(rng: random.Random, count: int, force_grid: bool = False) -> list[tuple[int, int, int, int]]:
    if not force_grid:
        for _ in range(_RESTARTS):
            boxes = _layout_random(rng, count)
            if boxes is not None:
                return boxes
    return _layout_grid(rng, count)


# --------------------------------------------------------------------------- items


def _plural(kind: str) -> str:
    return kind + "s"


def make_counting_item(seed: int, index: int, *, _force_grid: bool = False) -> CountingItem:
    """Item ``index`` of the counting set with ``seed`` (independent of the set size)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index must be a non-negative int, got {index!r}")
    rng = random.Random(f"mmgpt-counting:{seed}:{index}")
    answer = index % (MAX_TOTAL + 1)
    attribute = "kind" if (index // (MAX_TOTAL + 1)) % 2 == 0 else "colour"
    colours = list(COLOURS)
    if attribute == "kind":
        value = KINDS[_below(rng, len(KINDS))]
        others = [k for k in KINDS if k != value]
        question = f"How many {_plural(value)} are there?"
        targets = [(value, colours[_below(rng, len(colours))]) for _ in range(answer)]
        n_distract = _below(rng, MAX_TOTAL - answer + 1)
        distract = [(others[_below(rng, len(others))], colours[_below(rng, len(colours))]) for _ in range(n_distract)]
    else:
        value = colours[_below(rng, len(colours))]
        others = [c for c in colours if c != value]
        question = f"How many {value} shapes are there?"
        targets = [(KINDS[_below(rng, len(KINDS))], value) for _ in range(answer)]
        n_distract = _below(rng, MAX_TOTAL - answer + 1)
        distract = [(KINDS[_below(rng, len(KINDS))], others[_below(rng, len(others))]) for _ in range(n_distract)]
    attrs = targets + distract
    _shuffle(rng, attrs)
    boxes = _layout(rng, len(attrs), force_grid=_force_grid)
    shapes = tuple(Shape(k, c, b) for (k, c), b in zip(attrs, boxes))
    return CountingItem(
        id=f"counting-s{seed}-{index:05d}",
        seed=seed,
        index=index,
        question=question,
        answer=answer,
        asked=(attribute, value),
        shapes=shapes,
    )


def generate_counting_set(n: int = DEFAULT_N, seed: int = DEFAULT_SEED, start: int = 0) -> list[CountingItem]:
    """Items ``start .. start + n - 1`` of ``seed``. Images are not rendered until asked for."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    return [make_counting_item(seed, i) for i in range(start, start + n)]


def _open_key(key: str):
    _, seed, index = key.split(":")
    return make_counting_item(int(seed), int(index)).image()


register_image_key("counting", _open_key)  # counting:<seed>:<index>, the image of make_counting_item


def write_counting_set(
    out_dir: str | os.PathLike,
    n: int = DEFAULT_N,
    seed: int | None = None,
    split: str = "test",
) -> Path:
    """Write ``images/<id>.png`` and ``annotations.jsonl`` under ``out_dir``; return the JSONL path.

    Each JSONL row is TallyQA-like: ``{"image": "images/<id>.png", "question": str,
    "answer": int}`` plus ``id``, ``split``, ``seed``, ``index``, ``asked`` and ``shapes``.
    ``image`` is relative to ``out_dir``. ``seed`` defaults to ``SPLIT_SEEDS[split]``; a train
    split may not use the test seed (that would train on the test images).
    """
    import json

    if split not in SPLIT_SEEDS:
        raise UserError(f"unknown counting split {split!r}; expected one of {sorted(SPLIT_SEEDS)}")
    if seed is None:
        seed = SPLIT_SEEDS[split]
    if split == "train" and seed == SPLIT_SEEDS["test"]:
        raise UserError(f"the train split cannot use the test seed {seed}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for item in generate_counting_set(n, seed):
        rel = f"images/{item.id}.png"
        atomic_write_bytes(out / rel, item.png_bytes())
        row = {"image": rel, "question": item.question, "answer": item.answer, "split": split}
        row.update({k: v for k, v in item.to_dict().items() if k not in row})
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=False))
    path = out / "annotations.jsonl"
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path


# --------------------------------------------------------------------------- raster


def _span(s: int, m: int) -> tuple[int, int]:
    """Columns ``c`` of an ``s``-wide box with ``|2c + 1 - s| <= m`` (inclusive range)."""
    lo = max(0, -((m - s + 1) // 2))
    hi = min(s - 1, (s - 1 + m) // 2)
    return lo, hi


def _row_spans(kind: str, s: int) -> list[tuple[int, int]]:
    spans = []
    for r in range(s):
        dy = abs(2 * r + 1 - s)
        if kind == "square":
            lo, hi = 0, s - 1
        elif kind == "circle":  # (2c+1-s)^2 + (2r+1-s)^2 <= s^2
            lo, hi = _span(s, math.isqrt(s * s - dy * dy))
        elif kind == "triangle":  # apex up: 2|2c+1-s| <= 2r+1  <=>  |2c+1-s| <= r
            lo, hi = _span(s, r)
        elif kind == "diamond":  # |2c+1-s| + |2r+1-s| <= s
            lo, hi = _span(s, s - dy)
        else:
            raise ValueError(f"unknown shape kind {kind!r}")
        spans.append((lo, hi))
    return spans


def render_pixels(shapes) -> bytes:
    """Rasterise ``shapes`` on the white background; returns row-major RGB bytes."""
    buf = bytearray(bytes(BACKGROUND) * (IMAGE_SIZE * IMAGE_SIZE))
    for sh in shapes:
        x0, y0, x1, y1 = sh.bbox
        s = x1 - x0
        if s != y1 - y0 or s <= 0 or x0 < 0 or y0 < 0 or x1 > IMAGE_SIZE or y1 > IMAGE_SIZE:
            raise ValueError(f"bad bbox {sh.bbox}")
        rgb = bytes(COLOURS[sh.colour])
        for r, (lo, hi) in enumerate(_row_spans(sh.kind, s)):
            if hi < lo:
                continue
            start = ((y0 + r) * IMAGE_SIZE + x0 + lo) * 3
            buf[start : start + (hi - lo + 1) * 3] = rgb * (hi - lo + 1)
    return bytes(buf)


# --------------------------------------------------------------------------- PNG encoder


def _rev(code: int, nbits: int) -> int:
    out = 0
    for _ in range(nbits):
        out = (out << 1) | (code & 1)
        code >>= 1
    return out


def _fixed_litlen(sym: int) -> tuple[int, int]:
    if sym < 144:
        code, n = 0x30 + sym, 8
    elif sym < 256:
        code, n = 0x190 + sym - 144, 9
    elif sym < 280:
        code, n = sym - 256, 7
    else:
        code, n = 0xC0 + sym - 280, 8
    return _rev(code, n), n


_LIT = [_fixed_litlen(s) for s in range(288)]
_LEN_BASE = [
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    13,
    15,
    17,
    19,
    23,
    27,
    31,
    35,
    43,
    51,
    59,
    67,
    83,
    99,
    115,
    131,
    163,
    195,
    227,
    258,
]
_LEN_EXTRA = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]


def _match_code(length: int) -> tuple[int, int]:
    """Bits for a (length, distance=1) match: length code, its extra bits, distance code 0."""
    i = max(k for k in range(len(_LEN_BASE)) if _LEN_BASE[k] <= length)
    if length == 258:
        i = 28
    code, n = _LIT[257 + i]
    extra, ne = length - _LEN_BASE[i], _LEN_EXTRA[i]
    value = code | (extra << n)
    n += ne
    # distance 1 -> distance code 0, 5 bits, no extra bits
    return value, n + 5


_MATCH = {L: _match_code(L) for L in range(3, 259)}
_RUN_RE = re.compile(rb"(.)\1*", re.S)


def _deflate_fixed(data: bytes) -> bytes:
    out = bytearray()
    acc = 0b011  # BFINAL=1, BTYPE=01 (fixed Huffman), written LSB first
    nbits = 3
    lit = _LIT
    match = _MATCH
    for m in _RUN_RE.finditer(data):
        b = data[m.start()]
        run = m.end() - m.start()
        code, n = lit[b]
        acc |= code << nbits
        nbits += n
        rem = run - 1
        while rem >= 3:
            ln = 258 if rem >= 258 else rem
            code, n = match[ln]
            acc |= code << nbits
            nbits += n
            rem -= ln
        code, n = lit[b]
        for _ in range(rem):  # a run tail of 1-2 bytes: literals
            acc |= code << nbits
            nbits += n
        if nbits >= 64:
            k = nbits // 8
            out += (acc & ((1 << (8 * k)) - 1)).to_bytes(k, "little")
            acc >>= 8 * k
            nbits -= 8 * k
    code, n = lit[256]  # end of block
    acc |= code << nbits
    nbits += n
    k = (nbits + 7) // 8
    out += acc.to_bytes(k, "little")
    return bytes(out)


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rgb: bytes) -> bytes:
    """Encode 8-bit RGB pixels as a PNG, deterministically (see the module docstring)."""
    stride = width * 3
    if len(rgb) != stride * height:
        raise ValueError(f"expected {stride * height} bytes of RGB, got {len(rgb)}")
    raw = bytearray()
    for y in range(height):
        row = rgb[y * stride : (y + 1) * stride]
        raw.append(1)  # filter type Sub
        raw += row[:3]
        raw += bytes([(a - b) & 0xFF for a, b in zip(row[3:], row)])
    data = bytes(raw)
    stream = b"\x78\x01" + _deflate_fixed(data) + struct.pack(">I", zlib.adler32(data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")
