"""easy-VQA (the PyPI package ``easy-vqa``, MIT) as samples: 64x64 images of one coloured shape,
questions about its shape and colour, one answer each. Used by the ``easyvqa`` task and by training."""

from __future__ import annotations

from ..errors import UserError
from ..taskapi.types import ImageRef, Sample

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
    return [Sample(id=str(i), images=[ImageRef(key=f"easyvqa:{split}:{img}", path=paths[img])],
                   fields={"question": q}, references=[a],
                   meta={"answer_type": answer_type(a), "image_id": img, "split": split})
            for i, (q, a, img) in enumerate(zip(qs, ans, img_ids))]
