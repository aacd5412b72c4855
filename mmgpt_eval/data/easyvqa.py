"""easy-VQA (the PyPI package ``easy-vqa``, MIT) as samples: 64x64 images of one coloured shape,
questions about its shape and colour, one answer each. Used by the ``easyvqa`` task and by training.
Its images are keyed ``easyvqa:<split>:<image id>`` (the scheme is registered with ``mmgpt_eval.images``)."""

from __future__ import annotations

import functools

from ..errors import UserError
from ..images import register_image_key
from .sample import ImageRef, Sample

SHAPES = {"circle", "rectangle", "triangle"}
YES_NO = {"yes", "no"}


def answer_type(answer: str) -> str:
    return "yes/no" if answer in YES_NO else ("shape" if answer in SHAPES else "color")


def load_split(split: str) -> list[Sample]:
    import easy_vqa

    if split == "test":
        qs, ans, img_ids = easy_vqa.get_test_questions()
        paths = easy_vqa.get_test_image_paths()
    elif split == "train":
        qs, ans, img_ids = easy_vqa.get_train_questions()
        paths = easy_vqa.get_train_image_paths()
    else:
        raise UserError(f"easy-VQA split must be train or test, got {split!r}")
    return [
        Sample(
            id=str(i),
            images=[ImageRef(key=f"easyvqa:{split}:{img}", path=paths[img])],
            fields={"question": q},
            references=[a],
            meta={"answer_type": answer_type(a), "image_id": img, "split": split},
        )
        for i, (q, a, img) in enumerate(zip(qs, ans, img_ids))
    ]


@functools.lru_cache(maxsize=2)
def image_paths(split: str) -> dict[int, str]:
    """Image id -> file of the installed package's ``test`` split, or of ``train`` for any other name."""
    try:
        import easy_vqa
    except ImportError:  # pragma: no cover - easy-vqa is a dependency
        raise UserError("the easy-vqa package is needed for easyvqa images: pip install easy-vqa==1.0") from None
    return easy_vqa.get_test_image_paths() if split == "test" else easy_vqa.get_train_image_paths()


def _open_key(key: str):
    from PIL import Image

    _, split, iid = key.split(":")
    paths = image_paths(split or "test")
    if int(iid) not in paths:
        raise UserError(f"easy-vqa {split} split has no image {iid}")
    with Image.open(paths[int(iid)]) as im:
        return im.convert("RGB")


register_image_key("easyvqa", _open_key)  # easyvqa:<split>:<image id>
