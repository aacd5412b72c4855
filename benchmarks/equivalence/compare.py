"""Compare two output roots of run_configs.sh (0ef36bc vs a new tree): every sample and every metric.

    python benchmarks/equivalence/compare.py BASE NEW [--ignore-fingerprints] [--show N]

Configuration = first folder under the root (default, series-pt, of-4shot-rices, ...). In every one:

* samples/*.jsonl (every run folder, baseline/ and series checkpoints included): records matched by id
  (with an occurrence counter where an id repeats). A record is identical when every key is equal
  (exact JSON equality; prompt, prompt_sha256, raw, prediction, metrics, references, ranking / outputs,
  images, generated tokens, ...), ignoring only IGNORED_RECORD_KEYS. Missing / extra records count as
  differing. The file's header fingerprint is checked separately (see below).
* results.json: per task, the RESULT keys (metrics, breakdown, sample counts, subset, primary metric)
  exactly; the baseline block's paired comparisons exactly. The task fingerprint separately. Settings
  keys (template, generation, options, notes, metric_info, run settings) are compared too but only
  listed as "info" (a restructure may legitimately add a recorded setting); timing / provenance / created /
  argv / output paths / model paths are ignored.
* series.json: every checkpoint's metrics and step, exactly (paths ignored).
* summary.json (make reproduce): table, paired comparisons and targets exactly (meta ignored).

Fingerprints (task fingerprints in results.json and the samples files' headers) must stay byte-identical
too (old run folders resume); --ignore-fingerprints reports them without failing. Where the two sides' model
blocks differ only by their checkouts' paths (a preset's files inside each checkout; read from each root's
source.txt), the fingerprints cannot be equal whatever the code (the payload holds the resolved paths): they
are counted as "fp.n/a", not compared.

Exit 0: everything identical; 1: any difference (or a configuration / file missing on one side).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

IGNORED_RECORD_KEYS: set[str] = set()  # timings or paths inside records: none found so far
RESULT_TASK_KEYS = (
    "metrics",
    "breakdown",
    "n_samples",
    "n_available",
    "limit",
    "subset",
    "primary_metric",
    "task",
    "num_fewshot",
    "fewshot_mode",
)
IGNORED_TASK_KEYS = {"timing", "fingerprint", "samples_file"}
IGNORED_RUN_KEYS = {"argv", "output_dir", "model_load_s"}
IGNORED_TOP_KEYS = {"created", "provenance", "schema", "schema_version"}


def same(a: Any, b: Any) -> bool:
    """Exact equality, with NaN equal to NaN (a metric may be NaN on both sides)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if isinstance(a, (bool, int, float)) else a == b


def short(v: Any, n: int = 160) -> str:
    s = json.dumps(v, ensure_ascii=False, sort_keys=True) if not isinstance(v, str) else repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."


def show_diff(a: Any, b: Any) -> str:
    """BASE vs NEW; two strings: from shortly before their first differing character."""
    if isinstance(a, str) and isinstance(b, str):
        i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        lo = max(0, i - 40)
        return (
            f"first difference at char {i} (lengths {len(a)}, {len(b)}): BASE ...{a[lo : i + 80]!r} | "
            f"NEW ...{b[lo : i + 80]!r}"
        )
    return f"BASE {short(a)} | NEW {short(b)}"


class Tally:
    def __init__(self) -> None:
        self.records = self.identical = self.differing = 0
        self.metrics = self.metrics_differing = 0
        self.fingerprints = self.fingerprints_differing = 0
        self.fingerprints_located = 0  # not comparable: the model's files lie under each side's own checkout
        self.missing: list[str] = []
        self.diffs: list[str] = []  # failing differences, in order found
        self.fp_diffs: list[str] = []
        self.info: list[str] = []
        self.key_counts: Counter[str] = Counter()

    def fail(self, msg: str) -> None:
        self.diffs.append(msg)


def read_jsonl(path: Path) -> tuple[dict | None, list[dict]]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    header = None
    if lines and len(lines[0]) == 1 and isinstance(next(iter(lines[0].values())), dict) and "id" not in lines[0]:
        header = lines.pop(0)
    return header, lines


def keyed(records: list[dict]) -> dict[tuple[str, int], dict]:
    seen: Counter[str] = Counter()
    out = {}
    for r in records:
        rid = str(r.get("id"))
        out[(rid, seen[rid])] = r
        seen[rid] += 1
    return out


def checkout_root(root: Path) -> str | None:
    """The checkout whose mmgpt_eval made this output root (run_configs.sh's source.txt)."""
    f = root / "source.txt"
    if f.is_file():
        for line in f.read_text().splitlines():
            if line.startswith("mmgpt_eval from: "):
                return line[len("mmgpt_eval from: ") :].rsplit(" (", 1)[0]
    return None


def location_bound(res_a: dict, res_b: dict, root_a: str | None, root_b: str | None) -> bool:
    """True when the two runs' model blocks differ only by the checkout's path. The fingerprint payload holds
    the model spec's resolved paths, so a preset's files under two different checkouts give two different
    fingerprints even for identical code: such fingerprints cannot be compared."""
    if not root_a or not root_b or root_a == root_b:
        return False
    ma, mb = json.dumps(res_a.get("model"), sort_keys=True), json.dumps(res_b.get("model"), sort_keys=True)
    return ma != mb and ma.replace(root_a, "<CHECKOUT>") == mb.replace(root_b, "<CHECKOUT>")


def compare_samples(rel: str, a: Path, b: Path, t: Tally, bound: bool = False) -> None:
    ha, ra = read_jsonl(a)
    hb, rb = read_jsonl(b)
    fa = (ha or {}).get("mmgpt-eval/samples", {}).get("fingerprint")
    fb = (hb or {}).get("mmgpt-eval/samples", {}).get("fingerprint")
    if bound and fa != fb:
        t.fingerprints_located += 1
        ha = {**ha, "mmgpt-eval/samples": {**ha["mmgpt-eval/samples"], "fingerprint": None}}
        hb = {**hb, "mmgpt-eval/samples": {**hb["mmgpt-eval/samples"], "fingerprint": None}}
        if not same(ha, hb):  # the rest of the header still has to match
            t.fingerprints_differing += 1
            t.fp_diffs.append(f"{rel}: samples header {short(ha)} != {short(hb)}")
    else:
        t.fingerprints += 1
        if not same(ha, hb):
            t.fingerprints_differing += 1
            t.fp_diffs.append(
                f"{rel}: samples header {short(ha)} != {short(hb)}"
                if fa == fb
                else f"{rel}: samples fingerprint {fa} != {fb}"
            )
    ka, kb = keyed(ra), keyed(rb)
    for k in ka.keys() | kb.keys():
        t.records += 1
        x, y = ka.get(k), kb.get(k)
        if x is None or y is None:
            t.differing += 1
            t.fail(f"{rel}: record id {k[0]!r} only in {'NEW' if x is None else 'BASE'}")
            continue
        bad = [
            key
            for key in sorted(x.keys() | y.keys())
            if key not in IGNORED_RECORD_KEYS and (key not in x or key not in y or not same(x[key], y[key]))
        ]
        if bad:
            t.differing += 1
            t.key_counts.update(bad)
            for key in bad[:3]:
                t.fail(f"{rel} id {k[0]!r} [{key}]: {show_diff(x.get(key, '<absent>'), y.get(key, '<absent>'))}")
        else:
            t.identical += 1
    order_a = [str(r.get("id")) for r in ra]
    order_b = [str(r.get("id")) for r in rb]
    if order_a != order_b and sorted(order_a) == sorted(order_b):
        t.info.append(f"{rel}: same records in a different order")


def compare_metrics(where: str, a: dict, b: dict, t: Tally) -> None:
    for m in sorted(a.keys() | b.keys()):
        t.metrics += 1
        if m not in a or m not in b or not same(a[m], b[m]):
            t.metrics_differing += 1
            t.fail(f"{where} metric {m}: BASE {short(a.get(m, '<absent>'))} | NEW {short(b.get(m, '<absent>'))}")


def compare_results(rel: str, a: dict, b: dict, t: Tally, bound: bool = False) -> None:
    ta, tb = a.get("tasks", {}), b.get("tasks", {})
    for task in sorted(ta.keys() | tb.keys()):
        if task not in ta or task not in tb:
            t.fail(f"{rel}: task {task} only in {'BASE' if task in ta else 'NEW'}")
            continue
        x, y = ta[task], tb[task]
        compare_metrics(f"{rel} {task}", x.get("metrics", {}), y.get("metrics", {}), t)
        for key in RESULT_TASK_KEYS:
            if key == "metrics":
                continue
            if not same(x.get(key), y.get(key)):
                t.fail(f"{rel} {task} [{key}]: BASE {short(x.get(key))} | NEW {short(y.get(key))}")
        if bound and x.get("fingerprint") != y.get("fingerprint"):
            t.fingerprints_located += 1
        elif x.get("fingerprint") != y.get("fingerprint"):
            t.fingerprints += 1
            t.fingerprints_differing += 1
            t.fp_diffs.append(f"{rel} {task}: fingerprint {x.get('fingerprint')} != {y.get('fingerprint')}")
        else:
            t.fingerprints += 1
        for key in sorted((x.keys() | y.keys()) - set(RESULT_TASK_KEYS) - IGNORED_TASK_KEYS):
            if not same(x.get(key), y.get(key)):
                t.info.append(
                    f"{rel} {task} [{key}]: BASE {short(x.get(key, '<absent>'))} | NEW {short(y.get(key, '<absent>'))}"
                )
    ra = {k: v for k, v in a.get("run", {}).items() if k not in IGNORED_RUN_KEYS}
    rb = {k: v for k, v in b.get("run", {}).items() if k not in IGNORED_RUN_KEYS}
    for key in sorted(ra.keys() | rb.keys()):
        if not same(ra.get(key), rb.get(key)):
            t.info.append(
                f"{rel} run[{key}]: BASE {short(ra.get(key, '<absent>'))} | NEW {short(rb.get(key, '<absent>'))}"
            )
    ba, bb = a.get("baseline") or {}, b.get("baseline") or {}
    if bool(ba) != bool(bb):
        t.fail(f"{rel}: baseline block only in {'BASE' if ba else 'NEW'}")
    elif ba:
        ca, cb = ba.get("comparisons", []), bb.get("comparisons", [])
        if len(ca) != len(cb):
            t.fail(f"{rel}: {len(ca)} baseline comparisons in BASE, {len(cb)} in NEW")
        for x, y in zip(ca, cb):
            compare_metrics(f"{rel} baseline comparison {x.get('task')}/{x.get('metric')}", x, y, t)
        for key in ("source", "kind"):
            if not same(ba.get(key), bb.get(key)):
                t.info.append(f"{rel} baseline[{key}]: BASE {short(ba.get(key))} | NEW {short(bb.get(key))}")
    for key in sorted((a.keys() | b.keys()) - {"tasks", "run", "baseline", "model"} - IGNORED_TOP_KEYS):
        if not same(a.get(key), b.get(key)):
            t.info.append(f"{rel} [{key}]: BASE {short(a.get(key, '<absent>'))} | NEW {short(b.get(key, '<absent>'))}")


def strip_paths(v: Any) -> Any:
    """series.json without absolute paths (checkpoint paths, output folders)."""
    if isinstance(v, dict):
        return {k: strip_paths(x) for k, x in v.items() if not (isinstance(x, str) and x.startswith("/"))}
    if isinstance(v, list):
        return [strip_paths(x) for x in v]
    return v


def compare_series(rel: str, a: dict, b: dict, t: Tally) -> None:
    ca, cb = a.get("checkpoints", []), b.get("checkpoints", [])
    if len(ca) != len(cb):
        t.fail(f"{rel}: {len(ca)} checkpoints in BASE, {len(cb)} in NEW")
    for i, (x, y) in enumerate(zip(ca, cb)):
        x, y = strip_paths(x), strip_paths(y)
        for key in sorted(x.keys() | y.keys()):
            if isinstance(x.get(key), dict) or isinstance(y.get(key), dict):
                compare_metrics(f"{rel} checkpoint {i} [{key}]", x.get(key) or {}, y.get(key) or {}, t)
            elif not same(x.get(key), y.get(key)):
                t.fail(f"{rel} checkpoint {i} [{key}]: BASE {short(x.get(key))} | NEW {short(y.get(key))}")
    ra = strip_paths({k: v for k, v in a.items() if k != "checkpoints"})
    rb = strip_paths({k: v for k, v in b.items() if k != "checkpoints"})
    if not same(ra, rb):
        t.info.append(f"{rel} (besides checkpoints): BASE {short(ra)} | NEW {short(rb)}")


def flatten(v: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(v, dict):
        out: dict[str, Any] = {}
        for k, x in v.items():
            out.update(flatten(x, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(v, list):
        out = {}
        for i, x in enumerate(v):
            out.update(flatten(x, f"{prefix}[{i}]"))
        return out
    return {prefix: v}


def compare_summary(rel: str, a: dict, b: dict, t: Tally) -> None:
    a = {k: v for k, v in a.items() if k != "meta"}
    b = {k: v for k, v in b.items() if k != "meta"}
    compare_metrics(rel, flatten(a), flatten(b), t)


def files(root: Path) -> dict[str, Path]:
    out = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.parts[len(root.parts)] == "logs":
            continue
        rel = p.relative_to(root).as_posix()
        if (p.suffix == ".jsonl" and p.parent.name == "samples") or p.name in (
            "results.json",
            "series.json",
            "summary.json",
        ):
            out[rel] = p
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--ignore-fingerprints", action="store_true", help="report fingerprint changes without failing")
    ap.add_argument("--show", type=int, default=8, help="differences shown per configuration (default 8)")
    args = ap.parse_args(argv)
    fa, fb = files(args.base), files(args.new)
    configs_a = {p.name for p in args.base.iterdir() if p.is_dir() and p.name != "logs"}
    configs_b = {p.name for p in args.new.iterdir() if p.is_dir() and p.name != "logs"}
    root_a, root_b = checkout_root(args.base), checkout_root(args.new)
    bound_dirs: set[str] = set()  # run folders (relative) whose fingerprints are location-bound
    for rel in fa.keys() & fb.keys():
        if rel.endswith("results.json") and not rel.endswith("series.json"):
            if location_bound(json.loads(fa[rel].read_text()), json.loads(fb[rel].read_text()), root_a, root_b):
                bound_dirs.add(rel.rsplit("/", 1)[0])
    tallies: dict[str, Tally] = defaultdict(Tally)
    for c in configs_a | configs_b:
        tallies[c]
    for rel in sorted(fa.keys() | fb.keys()):
        cfg = rel.split("/", 1)[0]
        t = tallies[cfg]
        if rel not in fa or rel not in fb:
            t.missing.append(f"{rel} only in {'BASE' if rel in fa else 'NEW'}")
            continue
        a, b = fa[rel], fb[rel]
        run_dir = rel.rsplit("/samples/", 1)[0] if a.suffix == ".jsonl" else rel.rsplit("/", 1)[0]
        bound = run_dir in bound_dirs
        if a.suffix == ".jsonl":
            compare_samples(rel, a, b, t, bound)
        elif a.name == "results.json":
            compare_results(rel, json.loads(a.read_text()), json.loads(b.read_text()), t, bound)
        elif a.name == "series.json":
            compare_series(rel, json.loads(a.read_text()), json.loads(b.read_text()), t)
        else:
            compare_summary(rel, json.loads(a.read_text()), json.loads(b.read_text()), t)

    head = (
        f"{'configuration':<26} {'records':>8} {'identical':>9} {'differing':>9} {'metrics':>8} {'m.diff':>6} "
        f"{'fingerpr.':>9} {'fp.diff':>7} {'fp.n/a':>6} {'files missing':>13}  verdict"
    )
    print(head)
    print("-" * len(head))
    bad_total = 0
    totals = Counter()
    for cfg in sorted(tallies):
        t = tallies[cfg]
        failing = bool(
            t.diffs
            or t.missing
            or (t.fingerprints_differing and not args.ignore_fingerprints)
            or (t.records == 0 and t.metrics == 0)
        )
        bad_total += failing
        verdict = "DIFFERENT" if failing else ("same (fingerprints differ)" if t.fingerprints_differing else "same")
        if t.records == 0 and t.metrics == 0 and not t.missing:
            verdict = "EMPTY"
        print(
            f"{cfg:<26} {t.records:>8} {t.identical:>9} {t.differing:>9} {t.metrics:>8} {t.metrics_differing:>6} "
            f"{t.fingerprints:>9} {t.fingerprints_differing:>7} {t.fingerprints_located:>6} {len(t.missing):>13}  "
            f"{verdict}"
        )
        totals.update(
            records=t.records,
            identical=t.identical,
            differing=t.differing,
            metrics=t.metrics,
            mdiff=t.metrics_differing,
            fp=t.fingerprints,
            fpdiff=t.fingerprints_differing,
            fpna=t.fingerprints_located,
            missing=len(t.missing),
        )
    print("-" * len(head))
    print(
        f"{'TOTAL':<26} {totals['records']:>8} {totals['identical']:>9} {totals['differing']:>9} "
        f"{totals['metrics']:>8} {totals['mdiff']:>6} {totals['fp']:>9} {totals['fpdiff']:>7} {totals['fpna']:>6} "
        f"{totals['missing']:>13}"
    )
    if totals["fpna"]:
        print(
            f"fp.n/a: {totals['fpna']} fingerprints differ where the model's files lie under each side's own checkout "
            f"({root_a} vs {root_b}); the fingerprint payload holds those absolute paths, so these two checkouts "
            "cannot have equal fingerprints there whatever the code. Compared strictly: the fingerprints of runs "
            "whose model files lie outside both checkouts (fp. column)."
        )
    for cfg in sorted(tallies):
        t = tallies[cfg]
        if t.missing or t.diffs or t.fp_diffs:
            print(f"\n## {cfg}")
            if t.key_counts:
                print("   differing record keys: " + ", ".join(f"{k} x{n}" for k, n in t.key_counts.most_common()))
            for m in t.missing[: args.show]:
                print("   MISSING " + m)
            for m in t.diffs[: args.show]:
                print("   DIFF " + m)
            if len(t.diffs) > args.show:
                print(f"   ... {len(t.diffs) - args.show} more differences")
            for m in t.fp_diffs[: args.show]:
                print("   FINGERPRINT " + m)
            if len(t.fp_diffs) > args.show:
                print(f"   ... {len(t.fp_diffs) - args.show} more fingerprint differences")
    infos = [(cfg, m) for cfg in sorted(tallies) for m in tallies[cfg].info]
    if infos:
        print(f"\ninfo (settings/recorded keys that differ; not counted as result changes): {len(infos)}")
        for _, m in infos[: 3 * args.show]:
            print(f"   {m}")
        if len(infos) > 3 * args.show:
            print(f"   ... {len(infos) - 3 * args.show} more")
    print(
        f"\n{'IDENTICAL' if not bad_total else 'DIFFERENT'}: {len(tallies) - bad_total} of {len(tallies)} "
        f"configurations identical; {totals['identical']} of {totals['records']} sample records identical, "
        f"{totals['metrics'] - totals['mdiff']} of {totals['metrics']} metric values identical"
    )
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main())
