"""``make reproduce``: the embedded tiny reproduction, end to end, from nothing but this repository.

1. the tiny base OpenFlamingo (recipes/tiny-base.toml, every parameter trained from scratch);
2. tiny MultiModal-GPT: LoRA joint training on it (recipes/tiny-mmgpt.toml);
3. the ablation: the same LoRA training, vision-language data with short answers only
   (recipes/tiny-ablation.toml);
4. evaluation of the base, the tiny MultiModal-GPT and the ablation with the MultiModal-GPT template
   on the full easy-VQA test split, the counting set and the dialogue probes, paired comparisons;
5. the results table, written into RESULTS.md between markers (nothing typed by hand);
6. the HTML report of the three, ``reports/tiny-reproduction.html`` (committed).

``--smoke`` runs the same pipeline with a few steps and small subsets (CI); ``--install`` copies the
trained base and adapters into the package (what ``make demo`` and the presets use); ``--shipped``
(``make reports``) evaluates the shipped models without training and rewrites ``reports/`` only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import mmgpt_eval

ROOT = Path(__file__).resolve().parents[1]  # the checkout: recipes/, reports/, RESULTS.md, runs/
PACKAGE = Path(mmgpt_eval.__file__).resolve().parent  # the runtime package the shipped models go into
PRESETS = PACKAGE / "model" / "presets"
WEIGHTS = PACKAGE / "weights"
BEGIN, END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"


def _main(argv: list[str]) -> None:
    from mmgpt_eval.cli import main

    rc = main(argv)
    if rc != 0:
        raise SystemExit(f"step failed ({rc}): mmgpt-eval {' '.join(argv)}")


def train_all(out: Path, smoke: bool, threads: int | None) -> dict[str, Path]:
    extra = ["--threads", str(threads)] if threads else []
    steps = {"base": ["--steps", "3"], "lora": ["--steps", "3"]} if smoke else {"base": [], "lora": []}
    t0 = time.time()
    _main(
        [
            "-q",
            "train",
            "--config",
            str(ROOT / "recipes" / "tiny-base.toml"),
            "--output-dir",
            str(out / "tiny-base"),
            *steps["base"],
            *extra,
        ]
    )
    minutes = {"tiny-base": (time.time() - t0) / 60}
    base = out / "tiny-base" / "final" / "model.toml"
    for name in ("tiny-mmgpt", "tiny-ablation"):
        t0 = time.time()
        _main(
            [
                "-q",
                "train",
                "--config",
                str(ROOT / "recipes" / f"{name}.toml"),
                "--model",
                str(base),
                "--output-dir",
                str(out / name),
                *steps["lora"],
                *extra,
            ]
        )
        minutes[name] = (time.time() - t0) / 60
    (out / "train_minutes.json").write_text(json.dumps(minutes, indent=2))
    return {"base": base, "mmgpt": out / "tiny-mmgpt" / "final", "ablation": out / "tiny-ablation" / "final"}


def evaluate_all(models: dict[str, Path], out: Path, smoke: bool) -> dict[str, Any]:
    limit = ["--limit", "12"] if smoke else []
    common = [
        "-q",
        "run",
        "--tasks",
        "easyvqa,counting,dialog",
        "--template",
        "mmgpt",
        "--no-progress",
        "--batch-size",
        "64",
        *limit,
    ]
    if smoke:
        common += ["--dialog-max-new-tokens", "8"]
    _main(
        common
        + [
            "--model",
            str(models["base"]),
            "--output-dir",
            str(out / "eval-base"),
            "--no-report",
            "--label",
            "tiny-openflamingo",
        ]
    )
    _main(
        common
        + [
            "--model",
            str(models["base"]),
            "--ckpt",
            str(models["ablation"]),
            "--output-dir",
            str(out / "eval-ablation"),
            "--no-report",
            "--label",
            "tiny-ablation",
        ]
    )
    _main(
        common
        + [
            "--model",
            str(models["base"]),
            "--ckpt",
            str(models["mmgpt"]),
            "--output-dir",
            str(out / "eval-mmgpt"),
            "--baseline",
            str(out / "eval-base"),
            "--label",
            "tiny-mmgpt",
        ]
    )
    return summarize(out)


REPORTS = ROOT / "reports"
REPORT_NAME = "tiny-reproduction.html"


def write_reports(out: Path, reports_dir: Path = REPORTS) -> Path:
    """The reproduction's HTML report -- tiny MultiModal-GPT and the ablation against their base on
    easy-VQA, counting and the dialogue probes -- into ``reports/`` (committed, so a visitor can open
    it without installing anything)."""
    from mmgpt_eval.report import write_report
    from mmgpt_eval.results import RunResults

    runs = [RunResults.load(out / f"eval-{k}") for k in ("mmgpt", "ablation")]
    path = write_report(
        reports_dir / REPORT_NAME,
        runs,
        baseline=RunResults.load(out / "eval-base"),
        title="mmgpt-eval: the embedded tiny reproduction (make reproduce)",
    )
    print(f"report: {path}")
    return path


def shipped_models() -> dict[str, Any]:
    """The models the package ships (what ``make reproduce --install`` put there): no training."""
    return {"base": "tiny-openflamingo", "mmgpt": "tiny-mmgpt", "ablation": "tiny-ablation"}


def _metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def summarize(out: Path) -> dict[str, Any]:
    from mmgpt_eval.compare import compare_runs
    from mmgpt_eval.results import RunResults

    runs = {k: RunResults.load(out / f"eval-{k}") for k in ("base", "mmgpt", "ablation")}
    table: dict[str, dict[str, Any]] = {}
    for k, r in runs.items():
        e, c, d = r.tasks["easyvqa"], r.tasks["counting"], r.tasks["dialog"]
        table[k] = {
            "easyvqa_accuracy": e.metrics["accuracy"],
            "easyvqa_n": e.n_samples,
            "easyvqa_by_type": e.breakdown["accuracy_by_answer_type"],
            "counting_accuracy": c.metrics["accuracy"],
            "counting_mae": c.metrics["mae"],
            "counting_unparsable_rate": c.metrics["unparsable_rate"],
            "open_median_words": d.metrics["open_median_words"],
            "open_words_mean": d.metrics["open_words_mean"],
            # this summary's own keys (older summaries use them too): the conversation-level dialog metrics
            "collapse_rate": d.metrics["conv_collapse_rate"],
            "checks_pass_rate": d.metrics["checks_pass_rate"],
            "language_pass_rate": d.metrics["language_pass_rate"],
            "template_leak_rate": d.metrics["conv_leak_rate"],
            "grounding_rate": d.metrics["grounding_rate"],
            "eos_rate": d.metrics["conv_eos_rate"],
        }
    paired = {
        name: [c.to_dict() for c in compare_runs(runs[a], runs[b], tasks=["easyvqa"])]
        for name, (a, b) in {"mmgpt_vs_base": ("base", "mmgpt"), "mmgpt_vs_ablation": ("ablation", "mmgpt")}.items()
    }
    j, a = table["mmgpt"], table["ablation"]
    ratio = (j["open_median_words"] / a["open_median_words"]) if a["open_median_words"] else None
    targets = {
        "easyvqa_accuracy_at_least_90": j["easyvqa_accuracy"] >= 90.0,
        "baseline_clearly_lower": table["base"]["easyvqa_accuracy"] <= j["easyvqa_accuracy"] - 10.0,
        "open_median_length_ratio_vs_ablation": None if ratio is None else round(ratio, 2),
        "open_median_length_at_least_2x_ablation": ratio is not None and ratio >= 2.0,
        "collapse_rate_lower_than_ablation": j["collapse_rate"] < a["collapse_rate"],
        "easyvqa_within_2_points_of_ablation": abs(j["easyvqa_accuracy"] - a["easyvqa_accuracy"]) <= 2.0,
    }
    return {"table": table, "paired": paired, "targets": targets}


NUMERIC = (
    "easyvqa_accuracy",
    "counting_accuracy",
    "counting_mae",
    "open_median_words",
    "open_words_mean",
    "collapse_rate",
    "checks_pass_rate",
    "language_pass_rate",
    "grounding_rate",
    "eos_rate",
)


def repeatability(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """Largest absolute difference per table column between two complete reproductions."""
    diffs: dict[str, float] = {}
    for k in NUMERIC:
        diffs[k] = max(abs(float(first["table"][m][k]) - float(second["table"][m][k])) for m in first["table"])
    return {
        "max_abs_diff": diffs,
        "max_percentage_point_diff": max(
            v
            for k, v in diffs.items()
            if k
            in (
                "easyvqa_accuracy",
                "counting_accuracy",
                "collapse_rate",
                "checks_pass_rate",
                "language_pass_rate",
                "grounding_rate",
                "eos_rate",
            )
        ),
        "second_meta": second.get("meta", {}),
    }


def render_markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    t = summary["table"]
    names = {
        "base": "tiny base OpenFlamingo (baseline)",
        "mmgpt": "tiny MultiModal-GPT (joint)",
        "ablation": "ablation (vision-language, short answers only)",
    }
    lines = [
        BEGIN,
        "## Embedded tiny reproduction (`make reproduce`)",
        "",
        f"Machine: {meta['machine']}. Wall time: {meta['wall_min']:.1f} min"
        + (
            f" (training {' + '.join(f'{v:.1f}' for v in meta['train_min'].values())} min for "
            f"{', '.join(meta['train_min'])}, evaluation "
            f"{meta['eval_min']:.1f} min)"
            if meta.get("train_min")
            else " (training + evaluation)"
        )
        + ". "
        f"Date: {meta['date']}. Commit: {meta['git']}.",
        "",
        f"Commands: `{meta['command']}` (= `python -m mmgpt_eval_dev.reproduce`; stages: "
        "`mmgpt-eval train --config recipes/tiny-base.toml`, `recipes/tiny-mmgpt.toml`, "
        "`recipes/tiny-ablation.toml`, then `mmgpt-eval run --tasks easyvqa,counting,dialog --template mmgpt` "
        "on each). All prompts use the MultiModal-GPT template; easy-VQA is the full test split.",
        "",
        "| model | easy-VQA acc. (n) | yes/no | shape | color | counting acc. | counting MAE | "
        "open-ended median words | mean words | collapse rate | dialog checks pass | language-only pass | "
        "EOS rate | grounding |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def f(v, unit=""):
        return "-" if v is None else (f"{v:.2f}{unit}" if isinstance(v, float) else f"{v}{unit}")

    for k in ("base", "mmgpt", "ablation"):
        r = t[k]
        bt = r["easyvqa_by_type"]
        lines.append(
            f"| {names[k]} | {f(r['easyvqa_accuracy'], '%')} ({r['easyvqa_n']}) | {f(bt.get('yes/no'), '%')} | "
            f"{f(bt.get('shape'), '%')} | {f(bt.get('color'), '%')} | {f(r['counting_accuracy'], '%')} | "
            f"{f(r['counting_mae'])} | {f(r['open_median_words'])} | {f(r['open_words_mean'])} | "
            f"{f(r['collapse_rate'], '%')} | {f(r['checks_pass_rate'], '%')} | {f(r['language_pass_rate'], '%')} | "
            f"{f(r['eos_rate'], '%')} | {f(r['grounding_rate'], '%')} |"
        )
    lines += ["", "Paired easy-VQA comparisons (95% bootstrap interval, McNemar p):", ""]
    for name, comps in summary["paired"].items():
        for c in comps:
            lines.append(
                f"- {name.replace('_', ' ')}: accuracy delta {c['delta']:+.2f} points "
                f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], p = {c['p_value']:.3g} (n = {c['n']})"
            )
    tg = summary["targets"]
    lines += [
        "",
        "Targets (issue: the paper's finding in miniature):",
        "",
        f"- tiny MultiModal-GPT easy-VQA accuracy >= 90%: {'met' if tg['easyvqa_accuracy_at_least_90'] else 'NOT met'}",
        f"- baseline clearly lower (>= 10 points): {'met' if tg['baseline_clearly_lower'] else 'NOT met'}",
        f"- open-ended median length >= 2x the ablation's: ratio {tg['open_median_length_ratio_vs_ablation']} "
        f"({'met' if tg['open_median_length_at_least_2x_ablation'] else 'NOT met'})",
        "- lower short-answer-collapse rate than the ablation: "
        f"{'met' if tg['collapse_rate_lower_than_ablation'] else 'NOT met'}",
        "- easy-VQA accuracy within 2 points of the ablation: "
        f"{'met' if tg['easyvqa_within_2_points_of_ablation'] else 'NOT met'}",
    ]
    rep = summary.get("repeatability")
    if rep:
        d = rep["max_abs_diff"]
        sm = rep["second_meta"]
        lines += [
            "",
            f"Repeatability: a second complete run from scratch (`{sm.get('command', '?')}`, "
            f"{sm.get('wall_min', 0):.1f} min, commit {sm.get('git', '?')}) differs from the table above by at "
            f"most {rep['max_percentage_point_diff']:.2f} percentage points in any rate "
            f"({'within' if rep['max_percentage_point_diff'] <= 1.0 else 'NOT within'} +-1 point); "
            "largest differences: " + ", ".join(f"{k} {v:.2f}" for k, v in d.items()) + ".",
        ]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_results_md(section: str, path: Path = ROOT / "RESULTS.md") -> None:
    text = path.read_text() if path.exists() else "# Results\n"
    if BEGIN in text and END in text:
        pre, rest = text.split(BEGIN, 1)
        post = rest.split(END, 1)[1]
        text = pre + section.rstrip("\n") + post
    else:
        text = text.rstrip("\n") + "\n\n" + section
    from mmgpt_eval.io import atomic_write_text

    atomic_write_text(path, text)


def install(models: dict[str, Path]) -> None:
    """Copy the trained base and adapters into the package (presets tiny-openflamingo, weights/)."""
    base_dir = models["base"].parent
    dst = PRESETS / "tiny-openflamingo"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(base_dir, dst, ignore=shutil.ignore_patterns("*.tmp"))
    toml = (
        (dst / "model.toml")
        .read_text()
        .replace(
            "trained base OpenFlamingo exported by mmgpt-eval train",
            "the tiny base OpenFlamingo of the embedded reproduction",
        )
    )
    (PRESETS / "tiny-openflamingo.toml").write_text(
        toml.replace('vision_encoder = "vision"', 'vision_encoder = "tiny-openflamingo/vision"')
        .replace(
            'vision_pretrained = "vision_tower.safetensors"',
            'vision_pretrained = "tiny-openflamingo/vision_tower.safetensors"',
        )
        .replace('lm = "lm"', 'lm = "tiny-openflamingo/lm"')
        .replace('tokenizer = "tokenizer"', 'tokenizer = "tiny-openflamingo/tokenizer"')
        .replace(
            'openflamingo_checkpoint = "openflamingo_checkpoint.pt"',
            'openflamingo_checkpoint = "tiny-openflamingo/openflamingo_checkpoint.pt"',
        )
    )
    (dst / "model.toml").unlink()
    for name, key in (("tiny-mmgpt", "mmgpt"), ("tiny-ablation", "ablation")):
        d = WEIGHTS / name
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(models[key], d)
        meta = json.loads((d / "mmgpt_eval.json").read_text())
        meta["model_spec"] = {"name": "tiny-openflamingo"}  # resolves by preset name wherever installed
        if meta.get("recipe") and (ROOT / "recipes" / Path(meta["recipe"]).name).is_file():
            meta["recipe"] = f"recipes/{Path(meta['recipe']).name}"  # not the training checkout's absolute path
        (d / "mmgpt_eval.json").write_text(json.dumps(meta, indent=2) + "\n")


DEFAULT_OUTPUT_DIR = ROOT / "runs" / "reproduce"
SHIPPED_OUTPUT_DIR = ROOT / "runs" / "reproduce-shipped"


def command_line(args: argparse.Namespace) -> str:
    """The command as RESULTS.md should quote it: enough to run the same thing again."""
    if not args.repeat_of and not args.skip_training:
        return "make reproduce"
    cmd = "python -m mmgpt_eval_dev.reproduce"
    if args.output_dir and Path(args.output_dir).resolve() != DEFAULT_OUTPUT_DIR.resolve():
        cmd += f" --output-dir {args.output_dir}"
    if args.repeat_of:
        cmd += f" --repeat-of {args.repeat_of}"
    if args.skip_training:
        cmd += (
            " --skip-training (evaluating the stages this command trained before)"
            if args.repeat_of
            else " --skip-training (evaluating stages trained beforehand with the same mmgpt-eval train commands)"
        )
    return cmd


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mmgpt_eval_dev.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--output-dir", default=None, help="default runs/reproduce (runs/reproduce-shipped with --shipped)")
    p.add_argument("--smoke", action="store_true", help="a few steps and small subsets (CI); RESULTS.md untouched")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--skip-training", action="store_true", help="evaluate models already trained in --output-dir")
    p.add_argument(
        "--shipped",
        action="store_true",
        help="evaluate the shipped models (the tiny-openflamingo preset, "
        "the tiny-mmgpt and tiny-ablation adapters) instead of training; writes reports/, not RESULTS.md",
    )
    p.add_argument("--reports-dir", default=str(REPORTS), help="where the HTML report goes (default reports/)")
    p.add_argument("--install", action="store_true", help="copy the trained models into the package")
    p.add_argument("--no-results-md", action="store_true")
    p.add_argument(
        "--repeat-of",
        metavar="DIR",
        help="an earlier complete reproduction (its summary.json): write "
        "that run's table to RESULTS.md with how much this run differs from it",
    )
    args = p.parse_args(argv)
    if args.repeat_of and (args.install or args.smoke):
        p.error("--repeat-of checks an earlier full run; it cannot be combined with --install or --smoke")
    if args.shipped and (args.install or args.skip_training or args.repeat_of):
        p.error(
            "--shipped evaluates the shipped models; it cannot be combined with --install, --skip-training "
            "or --repeat-of"
        )
    out = Path(args.output_dir) if args.output_dir else (SHIPPED_OUTPUT_DIR if args.shipped else DEFAULT_OUTPUT_DIR)
    t0 = time.time()
    if args.shipped:
        models = shipped_models()
    elif args.skip_training:
        models = {
            "base": out / "tiny-base" / "final" / "model.toml",
            "mmgpt": out / "tiny-mmgpt" / "final",
            "ablation": out / "tiny-ablation" / "final",
        }
    else:
        models = train_all(out, args.smoke, args.threads)
    t_eval = time.time()
    summary = evaluate_all(models, out, args.smoke)
    eval_min = (time.time() - t_eval) / 60
    if not args.smoke:
        write_reports(out, Path(args.reports_dir))
    if args.shipped:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return 0
    # each stage's wall time, end to end (also right when --skip-training evaluates earlier trainings);
    # without train_minutes.json, the training loops' own time from train_summary.json
    tm = out / "train_minutes.json"
    train_min = json.loads(tm.read_text()) if tm.exists() else {}
    for stage in ("tiny-base", "tiny-mmgpt", "tiny-ablation"):
        ts = out / stage / "train_summary.json"
        if stage not in train_min and ts.exists():
            train_min[stage] = json.loads(ts.read_text())["last"]["elapsed_s"] / 60
    wall = sum(train_min.values()) + eval_min if len(train_min) == 3 else (time.time() - t0) / 60
    import torch

    from mmgpt_eval.results import git_info

    g = git_info()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    meta = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {device}",
        "wall_min": wall,
        "train_min": train_min,
        "eval_min": eval_min,
        "date": time.strftime("%Y-%m-%d"),
        "git": (g.get("hash") or "?")[:12] + (" (dirty)" if g.get("dirty") else ""),
        "command": "make reproduce",
    }
    meta["command"] = command_line(args)
    summary["meta"] = meta
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.repeat_of:
        first = json.loads((Path(args.repeat_of) / "summary.json").read_text())
        first["repeatability"] = repeatability(first, summary)
        (out / "repeatability.json").write_text(json.dumps(first["repeatability"], indent=2))
        summary, meta = first, first["meta"]
    md = render_markdown(summary, meta)
    print(md)
    if not args.smoke and not args.no_results_md:
        write_results_md(md)
    if args.install:
        install(models)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
