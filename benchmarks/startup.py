"""Start-up time of the commands that run no model, as a user (or a CI job that only gates stored results)
runs them: each command in a fresh interpreter through the installed ``mmgpt-eval`` console script.

    python benchmarks/startup.py [--repeats 7] [--no-write]

Stored runs: the shipped CI baseline (examples/ci/baseline: easyvqa, counting and dialog, 300 samples each,
made by the embedded tiny MultiModal-GPT) and a copy of it as the candidate; examples/ci/gate.toml as the
policy. Commands: ``--version``, ``tasks``, ``data check``, ``compare``, ``gate``, ``report``, ``export``.
Each is run once untimed (warm file cache), then ``--repeats`` times; median and min-max. A separate probe
run of each command (``python -c``, the same ``main``) lists the model libraries it imported. Targets:
``--version`` < 1 s, ``gate`` < 2 s; met / NOT met. The section between the ``bench-startup`` markers of
RESULTS.md is rewritten unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BEGIN, END = "<!-- bench-startup:begin -->", "<!-- bench-startup:end -->"
TARGETS = {"--version": 1.0, "gate": 2.0}
HEAVY = ("torch", "transformers", "open_flamingo", "open_clip")
PROBE = (
    "import json, sys\n"
    "from mmgpt_eval.cli import main\n"
    "try:\n"
    "    rc = main(json.loads(sys.argv[1]))\n"
    "except SystemExit as e:\n"
    "    rc = e.code\n"
    f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})\n"
    "print('PROBE ' + json.dumps({'rc': rc, 'heavy': heavy}))\n"
)


def commands(work: Path) -> dict[str, list[str]]:
    base, cand = work / "baseline", work / "candidate"
    return {
        "--version": ["--version"],
        "tasks": ["tasks"],
        "data check": ["data", "check", "--tasks", "easyvqa,counting", "--data-root", str(work / "no-data")],
        "compare": ["compare", str(base), str(cand)],
        "gate": ["gate", "--baseline", str(base), "--candidate", str(cand), "--policy", str(work / "gate.toml")],
        "report": ["report", str(cand), "--baseline", str(base), "-o", str(work / "report.html")],
        "export": ["export", str(base), str(cand), "-o", str(work / "export")],
    }


def time_once(exe: str, argv: list[str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds (user + system) of the process, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([exe, *argv], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.returncode


def probe(argv: list[str], cwd: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], cwd=cwd, capture_output=True, text=True)
    line = next((x for x in p.stdout.splitlines() if x.startswith("PROBE ")), None)
    return json.loads(line[len("PROBE ") :]) if line else {"rc": p.returncode, "heavy": ["(probe failed)"]}


def measure(exe: str, work: Path, repeats: int) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name, argv in commands(work).items():
        time_once(exe, argv, work)  # untimed: warms the file cache
        runs = [time_once(exe, argv, work) for _ in range(repeats)]
        secs = [w for w, _, _ in runs]
        out[name] = {
            "argv": argv,
            "seconds": secs,
            "median_s": statistics.median(secs),
            "cpu_median_s": statistics.median(c for _, c, _ in runs),
            "exit_codes": sorted({rc for _, _, rc in runs}),
            "heavy_imports": probe(argv, work)["heavy"],
        }
        print(
            f"{name}: median {out[name]['median_s']:.3f} s (CPU {out[name]['cpu_median_s']:.3f} s) over {repeats} "
            f"(exit {out[name]['exit_codes']})"
        )
    return out


def render(r: dict[str, dict], repeats: int, machine: str, load: str) -> str:
    lines = [
        BEGIN,
        "## Start-up of the commands that run no model (`make bench`; `python benchmarks/startup.py`)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {machine}, load average before the run {load}. Each "
        f"command run through the installed `mmgpt-eval` console script in a fresh process, once untimed, then "
        f"{repeats} times: median and min-max wall time (process start to exit), and the median CPU time "
        "(user + system) of the process, which a busy machine inflates less than the wall time. Stored runs: "
        "`examples/ci/baseline` (easyvqa, counting, dialog; 300 samples each) and a copy of it as the candidate, "
        "policy `examples/ci/gate.toml`. Model libraries imported: a separate probe run of the same command "
        f"({', '.join(HEAVY)}).",
        "",
        "| command | median s | min-max s | CPU s | exit code | model libraries imported | target (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in r.items():
        target = TARGETS.get(name)
        verdict = "-" if target is None else f"< {target:g} s: {'met' if x['median_s'] < target else 'NOT met'}"
        lines.append(
            f"| `mmgpt-eval {' '.join(_short(a) for a in x['argv'])}` | {x['median_s']:.2f} | "
            f"{min(x['seconds']):.2f}-{max(x['seconds']):.2f} | {x['cpu_median_s']:.2f} | "
            f"{', '.join(map(str, x['exit_codes']))} | "
            f"{', '.join(x['heavy_imports']) or 'none'} | {verdict} |"
        )
    lines.append(END)
    return "\n".join(lines) + "\n"


def _short(arg: str) -> str:
    """A path argument by its name (the temporary folder says nothing)."""
    return Path(arg).name if os.path.isabs(arg) else arg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args(argv)
    exe = shutil.which("mmgpt-eval", path=str(Path(sys.executable).parent)) or "mmgpt-eval"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "examples" / "ci" / "baseline", work / "baseline")
        shutil.copytree(ROOT / "examples" / "ci" / "baseline", work / "candidate")
        shutil.copy(ROOT / "examples" / "ci" / "gate.toml", work / "gate.toml")
        r = measure(exe, work, args.repeats)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    section = render(r, args.repeats, machine, load)
    print(section)
    if not args.no_write:
        from benchmarks.run_all import _write_results

        _write_results(BEGIN, END, section)
    failed = [n for n, x in r.items() if x["exit_codes"] != [0] and n != "data check"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
