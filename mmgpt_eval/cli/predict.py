"""``mmgpt-eval predict``: generate for a JSONL file of prompts.

Input lines: ``{"id", "prompt", "images": [paths]}`` (``<image>`` tokens in the prompt mark the
images, in order) or ``{"id", "question", "images"}`` rendered through ``--template``. Relative image
paths resolve against the input file's folder. Every line is validated and every image decoded, and
the output folder is checked for writing, before the model is loaded; a prompt longer than the model's
context is refused before generating; the output file appears only when everything succeeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..images import image_problem
from ..records import PredictionRecord
from ..io import atomic_writer, iter_jsonl, sha256_file
from ..model.seam import STOP_END_OF_CHUNK, STOP_EOS, Generation
from ..templates import IMAGE, MMGPT_SPLIT, TEMPLATES, Template, get_template, prompt_sha256
from ..io import check_output_file
from .common import add_generation_args, add_model_args, generation_settings, load_from_args, output_file_arg

log = logging.getLogger("mmgpt_eval")


@dataclass
class Case:
    id: str
    prompt: str
    images: list[str]
    template: Template
    line: int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="generate answers for a JSONL file of prompts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p, model_required=True)
    p.add_argument("--input", required=True, help="cases.jsonl")
    p.add_argument(
        "--output", type=output_file_arg, required=True, help="out.jsonl ({id, text, token_ids, prompt_hash} per line)"
    )
    p.add_argument(
        "--template", default=None, help=f"template for lines with a 'question' ({', '.join(TEMPLATES)}; default mmgpt)"
    )
    p.add_argument(
        "--stop",
        choices=["eos", "endofchunk"],
        default=None,
        help="stop token for raw prompts (default: the LM's EOS; templates bring their own)",
    )
    add_generation_args(p)
    p.set_defaults(func=run)


def _check_image(path: Path, src: Path, line: int) -> None:
    if path.is_dir():
        raise UserError(f"image {path} is a directory, expected an image file", src, line)
    if not path.is_file():
        raise UserError(f"image not found: {path}", src, line)
    problem = image_problem(path)
    if problem is not None:
        raise UserError(f"image {path} is not a readable image ({problem})", src, line)


def check_writable(out: Path) -> None:
    """The folder ``out`` will be written in (its nearest existing ancestor when it does not exist yet)
    takes a new file: one is made and removed, before any work."""
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise UserError(
            f"cannot write the --output file: the folder {folder} is not writable ({e.strerror or type(e).__name__})",
            out,
        ) from None


def read_cases(path: Path, template_name: str | None) -> list[Case]:
    template = get_template(template_name) if template_name else None
    cases: list[Case] = []
    seen: dict[str, int] = {}
    base = path.resolve().parent
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise UserError("each line must be a JSON object", path, lineno)
        if "id" not in obj:
            raise UserError("missing key 'id'", path, lineno)
        cid = obj["id"]
        if not isinstance(cid, (str, int)) or isinstance(cid, bool):
            raise UserError("'id' must be a string or an integer", path, lineno)
        cid = str(cid)
        if cid in seen:
            raise UserError(f"duplicate id {cid!r} (first on line {seen[cid]})", path, lineno)
        seen[cid] = lineno
        images = obj.get("images", [])
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise UserError("'images' must be a list of paths", path, lineno)
        img_paths = [p if p.is_absolute() else (base / p) for p in map(Path, images)]
        if "prompt" in obj:
            if "question" in obj:
                raise UserError("give either 'prompt' or 'question', not both", path, lineno)
            prompt = obj["prompt"]
            if not isinstance(prompt, str):
                raise UserError("'prompt' must be a string", path, lineno)
            tmpl = TEMPLATES["raw"]
        elif "question" in obj:
            q = obj["question"]
            if not isinstance(q, str):
                raise UserError("'question' must be a string", path, lineno)
            tmpl = template or TEMPLATES["mmgpt"]
            if tmpl.name == "raw" or tmpl.name == "mmgpt-turn":
                raise UserError(f"template {tmpl.name} cannot render a question on its own", path, lineno)
            if tmpl.n_images != len(img_paths):
                hint = " (use --template mmgpt-text for questions without an image)" if tmpl.name == "mmgpt" else ""
                raise UserError(
                    f"template {tmpl.name} takes {tmpl.n_images} image(s) but the line has {len(img_paths)}{hint}",
                    path,
                    lineno,
                )
            prompt = tmpl.render(question=q)
        else:
            raise UserError("missing key 'prompt' (or 'question' with --template)", path, lineno)
        n_tok = prompt.count(IMAGE)
        if n_tok != len(img_paths):
            raise UserError(
                f"the prompt has {n_tok} {IMAGE} token(s) but {len(img_paths)} image(s) are given", path, lineno
            )
        for ip in img_paths:
            _check_image(ip, path, lineno)
        cases.append(Case(cid, prompt, [str(p) for p in img_paths], tmpl, lineno))
    if not cases:
        raise UserError("no cases in the input file", path)
    return cases


def run(args: argparse.Namespace) -> int:
    from ..engine import GenerationRequest, engine_for

    inp = Path(args.input)
    out = check_output_file(args.output, "--output file")  # before any work
    if inp.is_dir():
        raise UserError("is a directory, expected a JSONL file of cases", inp)
    cases = read_cases(inp, args.template)
    settings = generation_settings(args)  # validated: a bad combination fails before the model loads
    check_writable(out)
    lm = load_from_args(args)
    engine = engine_for(lm, args.batch_size, share_prefix=not args.no_share_prefix)
    stop_raw = STOP_END_OF_CHUNK if args.stop == "endofchunk" else STOP_EOS
    requests = [
        GenerationRequest(
            c.prompt, c.images, settings=settings, stop=stop_raw if c.template.name == "raw" else c.template.stop
        )
        for c in cases
    ]
    if not engine.model.accepts_images:
        for c in cases:
            if c.images:
                raise UserError(
                    f"model family {engine.model.family} takes no images; this case has {len(c.images)}", inp, c.line
                )
    engine.fit(requests, [f"{inp}:{c.line}: id {c.id}" for c in cases])  # refused before any generation
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("predict", total=len(cases), rate="")
        gens = engine.answer(requests, on_batch=lambda n: progress.update(task, advance=n))
    results = []
    for c, g in zip(cases, gens):
        assert isinstance(g, Generation)
        if c.template.name == "raw":
            text = g.full_text.split(MMGPT_SPLIT)[-1].strip() if MMGPT_SPLIT in c.prompt else g.text.strip()
        else:
            text = c.template.extract(g.full_text, g.text)
        sha = prompt_sha256(c.prompt, [sha256_file(p) for p in c.images])
        results.append(PredictionRecord(c.id, text, g.token_ids, sha))
    with atomic_writer(out) as f:
        for r in results:
            assert r is not None  # every sample was predicted above
            f.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    log.info("wrote %d predictions to %s", len(results), out)
    return 0
