"""Run folders at VQAv2 scale: time and peak memory of the commands that read runs, as a user runs them.

    python benchmarks/run_folders_scale.py [--quick] [--sizes 10000,50000,214354] [--source BASE CAND]
                                           [--before EXE] [--no-write]

Two real easy-VQA runs (``--source``; default: made here with ``mmgpt-eval run --model tiny-openflamingo
[--ckpt tiny-mmgpt] --tasks easyvqa --limit 500``) are copied up to each size: record ``j`` is source record
``j % n`` under the id ``<id>#<j // n>``, and the metrics and breakdown are recomputed with the task's own
``aggregate`` so the copies pass ``check_run``. Each command then runs in its own process (``mmgpt-eval
compare``, ``report --baseline``, ``gate``, ``export``, and ``score vqav2`` on the same predictions written as
VQAv2 question/annotation/prediction files with ten answers per question); peak memory is that process's
maximum RSS (``os.wait4`` in a small process that starts it, so that this script's own memory is not
counted), nothing excluded (imports included). Resume (``mmgpt-eval run`` again on a
finished folder) is measured on the source runs' size: a task's resume cannot be larger than its data.

``--before EXE`` also times another mmgpt-eval executable (the code before this change) on the largest size,
and both get a profile of ``compare`` (top functions by own time). The section between the
``bench-runfolders`` markers of RESULTS.md is rewritten unless ``--no-write`` or ``--quick``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BEGIN, END = "<!-- bench-runfolders:begin -->", "<!-- bench-runfolders:end -->"
SIZES = (10_000, 50_000, 214_354)
TARGET_S, TARGET_MB = 10.0, 1024.0
POLICY = '[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\ndirection = "higher"\nmargin = 1.0\n'


# Starts the command from a small process of its own and reports the command's wall time and peak RSS.
# Measured from this (large) process directly, the peak would include this process's: Linux carries a
# process's peak RSS over exec, and a child started by vfork shares this process's memory until then.
_WRAP = """
import os, sys, time
t = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{time.perf_counter() - t} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def measure(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one command in its own process."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        p = subprocess.Popen(
            [sys.executable, "-c", _WRAP, out.name, *cmd],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        )
        _, err_b = p.communicate()
        wall_s, rss_kb, rc_s = out.read().split()
    wall, rc = float(wall_s), int(rc_s)
    err = err_b.decode(errors="replace") if err_b else ""
    if rc not in (0, 1):
        print(f"  ! {' '.join(cmd[:3])} exited {rc}: {err.strip()[-400:]}", flush=True)
    return wall, int(rss_kb) / 1024.0, rc


# ------------------------------------------------------------------------------------------ runs
def make_source(exe: str, work: Path, limit: int, only_base: bool = False) -> tuple[Path, Path]:
    runs = []
    for name, ck in (("base", []), ("mmgpt", ["--ckpt", "tiny-mmgpt"]))[: 1 if only_base else 2]:
        out = work / f"source-{name}"
        subprocess.run(
            [
                exe,
                "-q",
                "run",
                "--model",
                "tiny-openflamingo",
                *ck,
                "--tasks",
                "easyvqa",
                "--limit",
                str(limit),
                "--output-dir",
                str(out),
                "--no-report",
                "--no-progress",
                "--batch-size",
                "16",
            ],
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        runs.append(out)
    return runs[0], runs[-1]


def scale_run(src: Path, dst: Path, size: int) -> None:
    """A copy of the run ``src`` with ``size`` samples whose metrics come from the task's aggregation."""
    from mmgpt_eval.results import RunResults
    from mmgpt_eval.taskregistry import discover

    res = RunResults.load(src)
    ((task, tr),) = res.tasks.items()
    lines = (src / tr.samples_file).read_text(encoding="utf-8").splitlines()
    header, records = lines[0], [json.loads(x) for x in lines[1:] if x.strip()][: tr.n_samples]
    n = len(records)
    out_recs, samples = [], []
    (dst / tr.samples_file).parent.mkdir(parents=True, exist_ok=True)
    with (dst / tr.samples_file).open("w", encoding="utf-8") as f:
        f.write(header + "\n")
        for j in range(size):
            r = dict(records[j % n])
            if j >= n:
                r["id"] = f"{r['id']}#{j // n}"
            out_recs.append(r)
            samples.append(SimpleNamespace(id=r["id"], meta=r.get("meta", {})))
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    agg = discover()[task](tr.options).aggregate(samples, out_recs)
    tr.metrics, tr.breakdown = dict(agg.metrics), {**tr.breakdown, **agg.breakdown}
    tr.n_samples = tr.n_available = size
    tr.limit = None
    res.run = {**res.run, "output_dir": str(dst)}
    res.save(dst / "results.json")


def vqa_files(run: Path, out: Path) -> list[str]:
    """``score vqav2`` inputs from a run: every sample as a VQAv2 question with ten answers."""
    out.mkdir(parents=True, exist_ok=True)
    qs, anns, preds = [], [], []
    with (run / "samples" / "easyvqa.jsonl").open(encoding="utf-8") as f:
        next(f)
        for qid, line in enumerate(f):
            r = json.loads(line)
            ref = r["references"][0]
            qs.append({"question_id": qid, "image_id": qid, "question": r["prompt"][-80:]})
            anns.append(
                {
                    "question_id": qid,
                    "image_id": qid,
                    "question_type": r["meta"]["answer_type"],
                    "answer_type": "other",
                    "multiple_choice_answer": ref,
                    "answers": [{"answer": ref if k < 7 else "other", "answer_id": k + 1} for k in range(10)],
                }
            )
            preds.append({"question_id": qid, "answer": r["prediction"]})
    for name, obj in (("q.json", {"questions": qs}), ("a.json", {"annotations": anns}), ("p.json", preds)):
        (out / name).write_text(json.dumps(obj))
    return [
        "--questions",
        str(out / "q.json"),
        "--annotations",
        str(out / "a.json"),
        "--predictions",
        str(out / "p.json"),
    ]


def commands(exe: str, base: Path, cand: Path, work: Path, vqa: list[str]) -> dict[str, list[str]]:
    (work / "gate.toml").write_text(POLICY)
    return {
        "compare": [exe, "compare", str(base), str(cand)],
        "report --baseline": [exe, "report", str(cand), "--baseline", str(base), "-o", str(work / "r.html")],
        "gate": [exe, "gate", "--baseline", str(base), "--candidate", str(cand), "--policy", str(work / "gate.toml")],
        "export": [exe, "export", str(base), str(cand), "-o", str(work / "export")],
        "score vqav2": [exe, "score", "vqav2", *vqa, "--output", str(work / "score.json")],
    }


def profile_compare(python: str, base: Path, cand: Path, work: Path, top: int = 8) -> list[str]:
    """The ``top`` functions of ``compare`` by own time, from cProfile in a child process."""
    prof = work / "compare.prof"
    # in-process, from the work folder (so the interpreter's own install is imported, not a checkout in cwd)
    code = (
        "import cProfile, sys\nprof = cProfile.Profile()\nprof.enable()\nimport mmgpt_eval.cli as c\n"
        "try:\n    c.main(sys.argv[2:])\nfinally:\n    prof.disable()\n    prof.dump_stats(sys.argv[1])\n"
    )
    rc = subprocess.run(
        [python, "-c", code, str(prof), "compare", str(base), str(cand)],
        stdout=subprocess.DEVNULL,
        check=False,
        cwd=work,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).returncode
    if rc != 0 or not prof.is_file():
        return [f"(the profiled compare exited {rc})"]
    s = io.StringIO()
    stats = pstats.Stats(str(prof), stream=s)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    out = []
    for (file, line, fn), (_, nc, tt, ct, _) in rows:
        where = f"{Path(file).name}:{line}" if line else file
        out.append(f"{tt:.2f} s own, {ct:.2f} s cum, {nc} calls: `{fn}` ({where})")
    return out


def stored_before_profile() -> list[str]:
    """The 'before' profile lines of the section RESULTS.md holds (without their numbering)."""
    text = (ROOT / "RESULTS.md").read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        return []
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    marker = "top functions by own time (before):"
    if marker not in section:
        return []
    out = []
    for line in section.split(marker, 1)[1].split("\n\n", 2)[1].splitlines():
        num, _, rest = line.partition(". ")
        if not num.isdigit():
            break
        out.append(rest)
    return out


def measure_last(results: dict[tuple[str, int], tuple[float, float, int]]) -> tuple[float, float, int]:
    return list(results.values())[-1]


def fmt_row(name: str, size: int, wall: float, mb: float, rc: int) -> str:
    return f"| {name} | {size:,} | {wall:.2f} | {mb:.0f} | {rc} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="sizes 2,000 and 5,000, nothing written")
    ap.add_argument("--sizes", default=None, help="comma-separated sample counts [10000,50000,214354]")
    ap.add_argument("--source", nargs=2, default=None, metavar=("BASE", "CAND"), help="two real easy-VQA runs")
    ap.add_argument("--before", default=None, metavar="EXE", help="another mmgpt-eval to time at the largest size")
    ap.add_argument(
        "--before-commands", default=None, metavar="a,b", help="only these commands with --before (default: all)"
    )
    ap.add_argument(
        "--resume-source",
        action="store_true",
        help="measure resume on --source's baseline run (made by this install) instead of a fresh run",
    )
    ap.add_argument(
        "--keep-before-profile",
        action="store_true",
        help="keep the 'before' profile of compare that RESULTS.md holds instead of profiling --before again",
    )
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args(argv)
    exe = str(Path(sys.executable).parent / "mmgpt-eval")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([2000, 5000] if args.quick else list(SIZES))
    load_start = os.getloadavg()[0]
    results: dict[tuple[str, int], tuple[float, float, int]] = {}
    before: dict[str, tuple[float, float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.source:
            src_base, src_cand = Path(args.source[0]), Path(args.source[1])
        else:
            src_base, src_cand = make_source(exe, work, 200 if args.quick else 500)
        n_src = json.loads((src_cand / "results.json").read_text())["tasks"]["easyvqa"]["n_samples"]
        for size in sizes:
            d = work / str(size)
            base, cand = d / "base", d / "cand"
            scale_run(src_base, base, size)
            scale_run(src_cand, cand, size)
            vqa = vqa_files(cand, d / "vqa")
            for name, cmd in commands(exe, base, cand, d, vqa).items():
                results[(name, size)] = measure(cmd, d)
                print(fmt_row(name, size, *results[(name, size)]), flush=True)
            if size == max(sizes) and args.before:
                only = args.before_commands.split(",") if args.before_commands else None
                for name, cmd in commands(args.before, base, cand, d, vqa).items():
                    if only is not None and name not in only:
                        continue
                    before[name] = measure(cmd, d)
                    print("before", fmt_row(name, size, *before[name]), flush=True)
            shutil.rmtree(d / "export", ignore_errors=True)
        # resume: the run command again on a finished folder, made by this same install (the fingerprint
        # holds the model preset's paths, so a folder written by another checkout starts over)
        res_src, _ = (src_base, src_cand) if args.resume_source else make_source(exe, work, 500, only_base=True)
        res = json.loads((res_src / "results.json").read_text())
        n_res = res["tasks"]["easyvqa"]["n_samples"]
        resume_dir = work / "resume"
        shutil.copytree(res_src, resume_dir)
        resume_cmd = [exe, *(res["run"].get("argv") or [])]
        if "--output-dir" in resume_cmd:
            resume_cmd[resume_cmd.index("--output-dir") + 1] = str(resume_dir)
        key = ("resume (nothing left to run)", n_res)
        results[key] = measure(resume_cmd, work)
        stale = sorted(p.name for p in (resume_dir / "samples").iterdir() if ".stale-" in p.name)
        if stale:
            print(f"  ! resume started over ({', '.join(stale)}): the fingerprint differs", flush=True)
            results[("resume (started over: another fingerprint)", n_res)] = results.pop(key)
        print(fmt_row("resume", n_res, *measure_last(results)), flush=True)
        top = max(sizes)
        prof_after = profile_compare(sys.executable, work / str(top) / "base", work / str(top) / "cand", work)
        prof_before = []
        if args.keep_before_profile:
            prof_before = stored_before_profile()
        elif args.before:
            py = str(Path(args.before).parent / "python")
            prof_before = profile_compare(py, work / str(top) / "base", work / str(top) / "cand", work)
    args.load = (load_start, os.getloadavg()[0])
    section = render(results, before, sizes, n_src, prof_before, prof_after, args)
    print(section)
    if not (args.quick or args.no_write):
        from benchmarks.run_all import _write_results

        _write_results(BEGIN, END, section)
    return 0


def render(
    results: dict[tuple[str, int], tuple[float, float, int]],
    before: dict[str, tuple[float, float, int]],
    sizes: list[int],
    n_src: int,
    prof_before: list[str],
    prof_after: list[str],
    args: Any,
) -> str:
    top = max(sizes)
    lines = [
        BEGIN,
        "## Run folders at scale (`make bench`; `python benchmarks/run_folders_scale.py`, "
        "`python benchmarks/run_all.py --only runfolders`)",
        "",
        f"Two real easy-VQA runs of {n_src:,} samples (tiny-openflamingo and tiny-mmgpt), copied up to each size "
        "with metrics recomputed by the task's own aggregation; every command in its own process as a user runs "
        "it, peak RSS of that process (its imports included). Targets at the largest size: under "
        f"{TARGET_S:g} s and under {TARGET_MB:.0f} MB. Machine: {os.cpu_count()} CPU cores, 1-minute load average "
        f"{args.load[0]:.1f} at the start and {args.load[1]:.1f} at the end (other jobs share it: the times are "
        "those of this machine at that load).",
        "",
        "| command | samples | wall s | peak RSS MB | exit |",
        "|---|---:|---:|---:|---:|",
    ]
    for (name, size), v in sorted(results.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        lines.append(fmt_row(name, size, *v))
    lines += [
        "",
        "| command at largest size | time target | memory target | growth (s per 100k samples) |",
        "|---|---|---|---|",
    ]
    for name in sorted({k[0] for k in results if k[1] == top}):
        wall, mb, _ = results[(name, top)]
        small = min(sizes)
        growth = ""
        if len(sizes) > 1 and (name, small) in results:
            growth = f"{(wall - results[(name, small)][0]) / (top - small) * 1e5:.2f}"
        lines.append(
            f"| {name} | {wall:.2f} s: {'met' if wall < TARGET_S else 'NOT met'} | "
            f"{mb:.0f} MB: {'met' if mb < TARGET_MB else 'NOT met'} | {growth} |"
        )
    if before:
        lines += [
            "",
            f"Before this change (`{args.before}`) at {top:,} samples:",
            "",
            "| command | wall s before | wall s now | peak MB before | peak MB now |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, (w0, m0, _) in before.items():
            w1, m1, _ = results[(name, top)]
            lines.append(f"| {name} | {w0:.2f} | {w1:.2f} | {m0:.0f} | {m1:.0f} |")
    for title, prof in (("before", prof_before), ("now", prof_after)):
        if prof:
            lines += ["", f"`compare` at {top:,} samples, top functions by own time ({title}):", ""]
            lines += [f"{i + 1}. {p}" for i, p in enumerate(prof)]
    lines.append(END)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
