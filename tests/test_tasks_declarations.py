"""The task plugins' building blocks: image-key schemes registered by the data modules, the data layer
below the task API, declared report views and the VQA family's shared declaration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ image keys
def test_generated_image_keys_reopen_through_registered_schemes(tmp_path):
    import easy_vqa

    import mmgpt_eval.data  # noqa: F401 - registers the built-in schemes
    from mmgpt_eval.data.counting_images import make_counting_item
    from mmgpt_eval.data.easyvqa import load_split
    from mmgpt_eval.images import _SCHEMES, open_image_key

    assert {"easyvqa", "counting", "blank"} <= set(_SCHEMES)
    sample = load_split("test")[7]
    key = sample.images[0].key
    assert key.startswith("easyvqa:test:")
    with Image.open(easy_vqa.get_test_image_paths()[sample.meta["image_id"]]) as im:
        assert open_image_key(key).tobytes() == im.convert("RGB").tobytes() == sample.images[0].open().tobytes()
    assert open_image_key("counting:3:5").tobytes() == make_counting_item(3, 5).pixels()
    blank = open_image_key("blank:32:white")
    assert blank.size == (32, 32) and blank.getcolors() == [(32 * 32, (255, 255, 255))]
    # malformed or unknown keys: None, never an exception
    for bad in (
        "counting:3",
        "counting:x:1",
        "easyvqa:test:999999",
        "easyvqa:test",
        "blank:big",
        "nope:1:2",
        str(tmp_path / "missing.png"),
    ):
        assert open_image_key(bad) is None, bad
    # a file key, plain or with the path: prefix
    p = tmp_path / "a.png"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(p)
    assert open_image_key(str(p)).size == open_image_key(f"path:{p}").size == (5, 4)


def test_a_data_module_registers_its_own_scheme(monkeypatch):
    import mmgpt_eval.images as images

    monkeypatch.setattr(images, "_SCHEMES", dict(images._SCHEMES))
    assert images.open_image_key("stripes:3") is None
    images.register_image_key("stripes", lambda key: Image.new("RGB", (int(key.split(":")[1]), 1)))
    assert images.open_image_key("stripes:3").size == (3, 1)


# ------------------------------------------------------------------------------------------ layering
def _package_imports(path: Path) -> set[str]:
    """Absolute names of the mmgpt_eval modules ``path`` imports (relative imports resolved)."""
    pkg = list(path.relative_to(ROOT).parent.parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.split(".")[0] == "mmgpt_eval"}


def test_the_data_layer_sits_below_the_task_api_and_the_metrics():
    data = sorted((ROOT / "mmgpt_eval" / "data").glob("*.py"))
    assert len(data) >= 8
    wrong = {
        f.name: sorted(
            m
            for m in _package_imports(f)
            if m.startswith(("mmgpt_eval.taskapi", "mmgpt_eval.metrics", "mmgpt_eval.report"))
        )
        for f in data
    }
    assert {k: v for k, v in wrong.items() if v} == {}
    # and the check sees such imports, relative ones too
    assert {"mmgpt_eval.taskapi.types", "mmgpt_eval.metrics.vqa"} <= _package_imports(
        ROOT / "mmgpt_eval" / "taskapi" / "vqa.py"
    )


def test_one_image_ref():
    from mmgpt_eval.data.dialog_spec import ImageSpec
    from mmgpt_eval.data.sample import ImageRef
    from mmgpt_eval.taskapi import ImageRef as PluginImageRef
    from mmgpt_eval.taskapi.types import ImageRef as TypesImageRef

    assert PluginImageRef is TypesImageRef is ImageRef
    spec = ImageSpec("counting", seed=3, index=5)
    ref = spec.image_ref()
    assert isinstance(ref, ImageRef) and ref.key == "counting:3:5" and ref.open().size == (64, 64)


# ------------------------------------------------------------------------------------------ views
def test_tasks_declare_views_and_carry_no_report_hooks():
    from mmgpt_eval.taskapi import Task
    from mmgpt_eval.taskapi.reporting import Column, ReportHooks
    from mmgpt_eval.taskregistry import discover

    assert not hasattr(Task, "report_tables") and not hasattr(Task, "transcript")
    classes = discover()
    assert all(isinstance(cls.view, ReportHooks) for cls in classes.values())
    bd = {
        "perAnswerType": {"other": 20.0, "yes/no": 50.0},
        "n_by_answer_type": {"other": 1, "yes/no": 2},
        "accuracy_by_answerable": {"answerable": 40.0},
        "n_by_answerable": {"answerable": 3},
    }
    view = classes["vizwiz"].view.report_tables([Column("base", bd, True), Column("new", {})])
    assert [t.title for t in view.tables] == ["VQA accuracy per answer type", "VQA accuracy per answerability"]
    assert view.tables[0].header == ["group", "n (base)", "base", "new"]
    assert view.tables[0].rows == [["other", "1", "20%", "—"], ["yes/no", "2", "50%", "—"]]
    assert view.consumed == set(bd)
    assert classes["vqav2"].view.report_tables([Column("a", {"perQuestionType": {"what": 5.0}})]).tables[0].header == [
        "group",
        "a",
    ]


# ------------------------------------------------------------------------------------------ VQA family
def test_vqa_family_shares_one_declaration():
    from mmgpt_eval.taskapi.vqa import VQATask
    from mmgpt_eval.taskregistry import discover

    classes = discover()
    for name in ("vqav2", "okvqa", "textvqa", "vizwiz"):
        cls = classes[name]
        assert issubclass(cls, VQATask)
        assert cls.declared("normalization").key(name) == "vqa_normalization"
        assert cls.openflamingo_options == {"normalization": "openflamingo"}
    vizwiz = classes["vizwiz"]
    assert (
        vizwiz({"vqa_normalization": "openflamingo"}).metric_info()["accuracy"].description
        == "VQA accuracy over the 10 answers (OpenFlamingo normalisation), x100, 2 decimals"
    )
    assert (
        classes["vqav2"]().metric_info()["accuracy"].description
        == "VQA accuracy (official normalisation), x100, 2 decimals"
    )


def test_vqa_breakdown_groups():
    from mmgpt_eval.taskapi import Sample
    from mmgpt_eval.taskregistry import discover

    task = discover()["vizwiz"]()
    samples = [
        Sample(str(i), [], {}, [], {"answer_type": t, "answerable": a})
        for i, (t, a) in enumerate([("other", 1), ("other", 0), (None, None), ("yes/no", 1)])
    ]
    records = [{"metrics": {"accuracy": x}} for x in (1.0, 0.0, 1 / 3, 2 / 3)]
    agg = task.aggregate(samples, records)
    assert agg.metrics == {"accuracy": round(100 * (2.0) / 4, 2)}
    assert list(agg.breakdown) == [
        "normalization",
        "perAnswerType",
        "n_by_answer_type",
        "accuracy_by_answerable",
        "n_by_answerable",
    ]
    assert agg.breakdown["perAnswerType"] == {"other": 50.0, "yes/no": 66.67}
    assert agg.breakdown["accuracy_by_answerable"] == {"answerable": 83.33, "unanswerable": 0.0}
    assert agg.breakdown["n_by_answerable"] == {"answerable": 2, "unanswerable": 1}


@pytest.mark.parametrize(
    "name", ["vqav2", "textvqa", "vizwiz", "easyvqa", "easyvqa_mc", "coco", "flickr30k", "hatefulmemes", "imagenet"]
)
def test_declared_tasks_are_short(name):
    """Declarations, not implementations: under 90 lines of code (docstrings, comments and blank lines
    not counted: the formatter lays a declaration out one argument per line where it overflows)."""
    lines = code_lines((ROOT / "tasks" / f"{name}.py").read_text())
    assert lines < 90, lines


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not a comment, not part of a docstring."""
    docs: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docs.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return sum(
        1
        for i, line in enumerate(source.splitlines(), 1)
        if line.strip() and not line.strip().startswith("#") and i not in docs
    )


def test_code_lines_counts_code_only():
    src = '"""Doc\n\nstring."""\n\n# a comment\nx = 1\n\n\ndef f():\n    """Doc."""\n    return x\n'
    assert code_lines(src) == 3
