"""``mmgpt-eval score``: score a predictions file with the official metrics.

    mmgpt-eval score vqav2 --questions Q.json --annotations A.json --predictions P.json \\
        [--vqa-normalization official|openflamingo] [--output OUT.json]
    mmgpt-eval score okvqa ...   (same scorer)
    mmgpt-eval score coco --annotations CAPTIONS.json --predictions P.json [--output OUT.json]

The output file is written atomically, and only after scoring succeeded.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UserError
from ..io import atomic_write_json, check_output_file, is_id, prediction_records, read_json

VQA_BENCHMARKS = ("vqav2", "okvqa")
BENCHMARKS = VQA_BENCHMARKS + ("coco",)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "score",
        help="score a predictions file: VQA accuracy (VQAv2, OK-VQA) or COCO captions (BLEU, METEOR, ROUGE-L, CIDEr)",
        description="Score predictions in the official results formats with numbers identical to the official "
        "evaluation code (VQA: GT-Vision-Lab/VQA vqaEval.py; captions: pycocoevalcap 1.2, without SPICE).",
    )
    sub = p.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name in VQA_BENCHMARKS:
        q = sub.add_parser(
            name,
            help=f"{'VQAv2' if name == 'vqav2' else 'OK-VQA'} accuracy (official vqaEval semantics)",
            description='Predictions: [{"question_id", "answer"}] covering exactly the annotated questions.',
        )
        q.add_argument("--questions", required=True, metavar="Q.json", help="official questions file")
        q.add_argument("--annotations", required=True, metavar="A.json", help="official annotations file")
        q.add_argument("--predictions", required=True, metavar="P.json", help="results file [{question_id, answer}]")
        q.add_argument(
            "--vqa-normalization",
            choices=["official", "openflamingo"],
            default="official",
            help="official: normalise answers only when the annotators disagree (GT-Vision-Lab/VQA master); "
            "openflamingo: always normalise (open_flamingo/eval/vqa_metric.py). Default: official",
        )
        q.add_argument(
            "--output",
            type=_output_file,
            metavar="OUT.json",
            help="write overall/per-type/per-question accuracies here",
        )
        q.add_argument("--top", type=int, default=10, help="question types shown in the table (default 10)")
    c = sub.add_parser(
        "coco",
        help="COCO captions: BLEU-1..4, METEOR, ROUGE-L, CIDEr via pycocoevalcap (needs Java)",
        description='Predictions: [{"image_id", "caption"}], one caption per image; scored on the images that '
        "have predictions (CIDEr's IDF comes from those images).",
    )
    c.add_argument("--annotations", required=True, metavar="CAPTIONS.json", help="COCO captions annotation file")
    c.add_argument("--predictions", required=True, metavar="P.json", help="results file [{image_id, caption}]")
    c.add_argument("--output", type=_output_file, metavar="OUT.json", help="write the scores and per-image CIDEr here")
    p.set_defaults(func=run)


def _output_file(value: str) -> str:
    """--output: a writable file path (not a directory), checked before anything is scored."""
    try:
        check_output_file(value, "--output file")
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def run(args: argparse.Namespace) -> int:
    if args.benchmark in VQA_BENCHMARKS:
        return _run_vqa(args)
    if args.benchmark == "coco":
        return _run_coco(args)
    raise UserError(f"choose what to score: {', '.join(BENCHMARKS)} (see `mmgpt-eval score --help`)")


# ------------------------------------------------------------------------------------------------
# VQA
# ------------------------------------------------------------------------------------------------


def _list_in(obj: Any, key: str, path: str, what: str) -> list:
    if not isinstance(obj, dict) or key not in obj:
        raise UserError(f"not an official {what} file: expected a JSON object with a {key!r} list", path)
    if not isinstance(obj[key], list):
        raise UserError(f"{key!r} must be a list", path)
    return obj[key]


def _run_vqa(args: argparse.Namespace) -> int:
    from ..metrics.vqa import score_vqa

    questions = _list_in(read_json(args.questions), "questions", args.questions, "VQA questions")
    annotations = _list_in(read_json(args.annotations), "annotations", args.annotations, "VQA annotations")
    predictions = read_json(args.predictions)
    scores = score_vqa(
        questions,
        annotations,
        predictions,
        mode=args.vqa_normalization,
        questions_path=args.questions,
        annotations_path=args.annotations,
        predictions_path=args.predictions,
    )
    if args.output:
        out = scores.to_dict()
        out["normalization"] = scores.normalization
        atomic_write_json(args.output, out)
    _print_vqa(args, scores)
    return 0


def _print_vqa(args: argparse.Namespace, scores: Any) -> None:
    from .common import stdout_console
    from rich.table import Table

    from rich.text import Text

    console = stdout_console()
    title = f"{args.benchmark} accuracy ({scores.normalization} normalization, {scores.n_questions} questions)"
    t = Table(title=title)
    t.add_column("group")
    t.add_column("questions", justify="right")
    t.add_column("accuracy", justify="right")
    t.add_row("overall", str(scores.n_questions), f"{scores.overall:.2f}", style="bold")
    for at, acc in sorted(scores.perAnswerType.items()):
        t.add_row(Text(f"answer type: {at}"), str(scores.answer_type_counts[at]), f"{acc:.2f}")
    counts = scores.question_type_counts
    top = sorted(counts, key=lambda k: (-counts[k], k))[: max(args.top, 0)]
    for qt in top:
        t.add_row(Text(f"question type: {qt}"), str(counts[qt]), f"{scores.perQuestionType[qt]:.2f}")
    if len(counts) > len(top):
        t.caption = f"{len(counts) - len(top)} more question types in the output file"
    console.print(t)
    if args.output:
        console.print(f"wrote {args.output}", markup=False)


# ------------------------------------------------------------------------------------------------
# COCO captions
# ------------------------------------------------------------------------------------------------


def _few(items: list, k: int = 3) -> str:
    return ", ".join(str(i) for i in items[:k]) + (", ..." if len(items) > k else "")


def load_coco_references(path: str) -> dict[Any, list[str]]:
    data = read_json(path)
    anns = _list_in(data, "annotations", path, "COCO captions")
    refs: dict[Any, list[str]] = {}
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise UserError(f"annotations entry {i} is not an object", path)
        for key in ("image_id", "caption"):
            if key not in a:
                raise UserError(f"annotations entry {i} has no {key!r} key", path)
        if not is_id(a["image_id"]):
            raise UserError(f"annotations entry {i}: 'image_id' must be an integer or string", path)
        if not isinstance(a["caption"], str):
            raise UserError(f"annotations entry {i} (image_id {a['image_id']}): 'caption' must be a string", path)
        refs.setdefault(a["image_id"], []).append(a["caption"])
    if not refs:
        raise UserError("no reference captions in 'annotations'", path)
    return refs


def load_coco_predictions(path: str, refs: dict[Any, list[str]]) -> dict[Any, str]:
    res: dict[Any, str] = {}
    dups: list[Any] = []
    for _, img, caption in prediction_records(read_json(path), path, "image_id", "caption"):
        if img in res:
            dups.append(img)
        res[img] = caption
    if dups:
        raise UserError(
            f"{len(dups)} images have more than one predicted caption (e.g. {_few(dups)}); give one caption per image",
            path,
        )
    if not res:
        raise UserError("no predicted captions (empty list)", path)
    unknown = [k for k in res if k not in refs]
    if unknown:
        hint = ""
        if {type(k) for k in unknown} != {type(k) for k in refs}:
            hint = " (image ids differ in type: integers vs strings)"
        raise UserError(
            f"{len(unknown)} predicted image ids are not in the annotations (e.g. {_few(unknown)}){hint}", path
        )
    if len({str(k) for k in res}) != len(res):
        raise UserError('image ids collide when written as text (e.g. 1 and "1")', path)
    return res


def _run_coco(args: argparse.Namespace) -> int:
    from ..metrics.caption import require_java, score_captions

    require_java()  # before reading anything
    refs = load_coco_references(args.annotations)
    res = load_coco_predictions(args.predictions, refs)
    scores = score_captions({str(k): refs[k] for k in res}, {str(k): v for k, v in res.items()})
    out: dict[str, Any] = dict(scores.corpus)
    out["perImageCIDEr"] = scores.per_image_metric("CIDEr")
    if args.output:
        atomic_write_json(args.output, out)
    _print_coco(args, scores)
    return 0


def _print_coco(args: argparse.Namespace, scores: Any) -> None:
    from .common import stdout_console
    from rich.table import Table

    console = stdout_console()
    t = Table(title=f"COCO captions ({scores.n_images} images, pycocoevalcap scale)")
    t.add_column("metric")
    t.add_column("score", justify="right")
    for k, v in scores.corpus.items():
        t.add_row(k, f"{v:.4f}")
    t.add_row("SPICE", "n/a")
    console.print(t)
    console.print(scores.spice, markup=False)
    for note in scores.notes:
        console.print(f"note: {note}", markup=False)
    if args.output:
        console.print(f"wrote {args.output}", markup=False)
