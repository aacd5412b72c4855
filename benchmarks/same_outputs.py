"""Do compare / gate / export / report print and write the same as another mmgpt-eval on the same run folders?

    python benchmarks/same_outputs.py OTHER_EXE [RUN_A RUN_B ...]

Builds test-style run folders (tests/fakeruns.make_run: binary and continuous metrics, equal and
different sample sets) and adds any run-folder pairs given; runs each command with this checkout's
``mmgpt-eval`` and with ``OTHER_EXE`` (e.g. the checkout before a change) and diffs stdout, exit code and
written files. The HTML report is compared after removing what differs by construction (times, paths,
versions). Prints one line per comparison and exits 1 when any differ.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
POLICY = '[[rule]]\ntask = "easyvqa"\nmetric = "accuracy"\ndirection = "higher"\nmargin = 1.0\n'
VOLATILE = [
    re.compile(p)
    for p in (
        r"\d{4}-\d\d-\d\dT[\d:.+]+(Z|[+-]\d\d:\d\d)?",
        r"/tmp/[^\s\"'<]*",
        r"mmgpt-eval \d+\.\d+\.\d+[^\s<]*",
        r"generated [^<]*",
    )
]


def run(exe: str, args: list[str], cwd: Path) -> tuple[int, str]:
    p = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def clean(text: str, folders: list[Path]) -> str:
    for f in sorted(folders, key=lambda f: -len(str(f))):
        text = text.replace(str(f), "<DIR>")
    for pat in VOLATILE:
        text = pat.sub("<X>", text)
    return text


def pairs(tmp: Path) -> list[tuple[Path, Path]]:
    import numpy as np
    from fakeruns import make_run

    rng = np.random.default_rng(0)
    a = (rng.random(300) < 0.4).astype(int).tolist()
    b = (rng.random(300) < 0.5).astype(int).tolist()
    ca, cb = rng.random(300).round(3).tolist(), rng.random(300).round(3).tolist()
    out = [
        (make_run(tmp / "bin_a", {"accuracy": a}), make_run(tmp / "bin_b", {"accuracy": b})),
        (
            make_run(tmp / "cont_a", {"accuracy": ca}, kind="continuous"),
            make_run(tmp / "cont_b", {"accuracy": cb}, kind="continuous"),
        ),
    ]
    return out


def main(argv: list[str]) -> int:
    other, extra = argv[0], [Path(p) for p in argv[1:]]
    mine = str(Path(sys.executable).parent / "mmgpt-eval")
    bad = 0
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "gate.toml").write_text(POLICY)
        todo = pairs(tmp) + list(zip(extra[::2], extra[1::2]))
        for base, cand in todo:
            folders = [base, cand, tmp]
            for name, args in (
                ("compare", ["compare", str(base), str(cand)]),
                ("compare --json", ["compare", str(base), str(cand), "--json", "OUT/c.json"]),
                (
                    "gate",
                    [
                        "gate",
                        "--baseline",
                        str(base),
                        "--candidate",
                        str(cand),
                        "--policy",
                        str(tmp / "gate.toml"),
                        "--json",
                        "OUT/g.json",
                        "--junit",
                        "OUT/g.xml",
                        "--markdown",
                        "OUT/g.md",
                    ],
                ),
                ("export", ["export", str(base), str(cand), "-o", "OUT/export", "--format", "csv"]),
                ("report", ["report", str(cand), "--baseline", str(base), "-o", "OUT/r.html"]),
            ):
                got = {}
                for who, exe in (("other", other), ("mine", mine)):
                    d = tmp / f"out-{who}"
                    d.mkdir(exist_ok=True)
                    rc, text = run(exe, [a.replace("OUT", str(d)) for a in args], tmp)
                    files = {
                        str(p.relative_to(d)): clean(p.read_text(errors="replace"), folders + [d])
                        for p in sorted(d.rglob("*"))
                        if p.is_file()
                    }
                    got[who] = (rc, clean(text, folders + [d]), files)
                    for p in sorted(d.rglob("*"), reverse=True):
                        p.unlink() if p.is_file() else p.rmdir()
                same = got["other"] == got["mine"]
                bad += not same
                print(
                    f"{'same' if same else 'DIFFERENT'}: {name} {base.name} vs {cand.name} "
                    f"(exit {got['other'][0]} / {got['mine'][0]})"
                )
                if not same:
                    for k in sorted(set(got["other"][2]) | set(got["mine"][2])):
                        if got["other"][2].get(k) != got["mine"][2].get(k):
                            print(f"   file differs: {k}")
                    if got["other"][1] != got["mine"][1]:
                        print(
                            "   output differs:\n",
                            json.dumps(got["other"][1][-600:]),
                            "\n",
                            json.dumps(got["mine"][1][-600:]),
                        )
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
