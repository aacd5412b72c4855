"""Published OpenFlamingo numbers (``mmgpt_eval/baselines/openflamingo.toml``) beside measured ones.

A published row compares with a task result only when everything that moves the number matches:

* the task (mmgpt-eval's name) and its metric;
* the model preset: the run's model spec is that preset (by name, or a spec file with the preset's
  architecture and no other base weights named), with no checkpoint applied on top;
* the shots (``num_fewshot``), and at 0 shots the meaning of 0 shots (``--fewshot-zero-mode``);
* the protocol: the row says which mmgpt-eval protocol reproduces the code that produced it
  (``comparable_to_protocol``: ``"openflamingo"`` or ``"none"``), and the run used it; and the
  run kept that protocol's demo selection and decoding (no ``--fewshot-selection`` or decoding flags
  that change them).

Everything else that differs but does not make the comparison meaningless (an evaluated subset
instead of the whole split, another number of trials, an unverified value, sources that disagree) is
reported as a caveat beside a matching row. A row for the same task that does not compare comes with
the reasons.

    load(path=None) -> Published             (validated; a bad file is one UserError naming it)
    published_rows_for(run, task=None, published=None) -> list[Match]
    print_published(runs)                    (the CLI's table; nothing when no row concerns the runs)

Values are on the source's scale; a measured value is converted to it (``scale = "x100"``: CIDEr,
which mmgpt-eval reports on pycocoevalcap's raw scale and OpenFlamingo multiplies by 100).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from .errors import UserError
from .presets import ARCHITECTURE_KEYS, architecture, list_presets, preset_table
from .results import RunResults, TaskResult

PROTOCOLS = ("openflamingo", "mmgpt-eval")
COMPARABLE = ("openflamingo", "none")
SCALES = {"x100": 100.0, "same": 1.0}
ROW_TEXT = (
    "id",
    "model",
    "preset",
    "task",
    "metric",
    "scale",
    "split",
    "comparable_to_protocol",
    "comparability_note",
    "source",
    "source_commit",
    "verification",
)
PROTOCOL_TEXT = (
    "code",
    "commit",
    "eval_split",
    "demo_source",
    "prompt",
    "demo_separator",
    "answer_cleanup",
    "demo_selection",
    "demo_draws",
    "num_samples",
    "trials",
    "zero_shot",
    "zero_shot_mode",
)
PROTOCOL_NUMBERS = ("length_penalty", "num_beams", "max_new_tokens")  # a number, or text where none applies
SEPARATORS = ("none", "newline")
DEMO_SELECTIONS = ("random", "rices")
ZERO_SHOT_MODES = ("text-demos", "none")


def default_path() -> Path:
    """The published numbers that ship inside the package (``mmgpt_eval/baselines/openflamingo.toml``)."""
    from importlib import resources

    return Path(str(resources.files("mmgpt_eval") / "baselines" / "openflamingo.toml"))


# ------------------------------------------------------------------------------------------ the file
@dataclass(frozen=True)
class Row:
    id: str
    model: str
    preset: str
    task: str
    metric: str
    scale: str
    shots: tuple[int, ...]
    values: tuple[float, ...]
    split: str
    protocol: dict[str, Any]
    comparable_to_protocol: str
    comparability_note: str
    source: str
    source_commit: str
    verified: bool
    verification: str
    std: tuple[float, ...] | None = None

    @property
    def factor(self) -> float:
        """Multiply an mmgpt-eval value by this to get the source's scale."""
        return SCALES[self.scale]

    def value_at(self, shots: int) -> float | None:
        return self.values[self.shots.index(shots)] if shots in self.shots else None

    def std_at(self, shots: int) -> float | None:
        return self.std[self.shots.index(shots)] if self.std is not None and shots in self.shots else None

    def values_text(self) -> str:
        return ", ".join(f"{s}-shot {v:g}" for s, v in zip(self.shots, self.values))


@dataclass(frozen=True)
class Disagreement:
    preset: str
    task: str
    metric: str
    shots: int
    note: str
    entries: tuple[tuple[float, str], ...]

    def text(self) -> str:
        vals = "; ".join(f"{v:g} ({src})" for v, src in self.entries)
        return f"{self.task} {self.shots}-shot {self.metric} for {self.preset}: sources disagree: {vals}. {self.note}"


@dataclass(frozen=True)
class Unread:
    preset: str
    model: str
    tasks: tuple[str, ...]
    source: str
    reason: str

    def text(self, task: str) -> str:
        return f"{task}: values of {self.model} on {self.source} are not recorded: {self.reason}"


@dataclass(frozen=True)
class Published:
    rows: tuple[Row, ...]
    disagreements: tuple[Disagreement, ...] = ()
    unread: tuple[Unread, ...] = ()
    path: Path | None = None


def _fail(msg: str, path: Path, where: str) -> UserError:
    return UserError(f"{where}: {msg}", path)


def _text(d: dict[str, Any], key: str, path: Path, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v.strip():
        raise _fail(f"{key!r} must be a non-empty string", path, where)
    return v


def _number(v: Any) -> TypeGuard[float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _numbers(d: dict[str, Any], key: str, path: Path, where: str) -> tuple[float, ...]:
    v = d.get(key)
    if not isinstance(v, list) or not v or not all(_number(x) for x in v):
        raise _fail(f"{key!r} must be a non-empty list of finite numbers", path, where)
    return tuple(float(x) for x in v)


def _choice(value: str, choices: tuple[str, ...], key: str, path: Path, where: str) -> str:
    if value not in choices:
        raise _fail(f"{key} = {value!r}: choose from {', '.join(choices)}", path, where)
    return value


def _row(d: Any, i: int, path: Path) -> Row:
    where = f"row {i + 1}"
    if not isinstance(d, dict):
        raise _fail("must be a table", path, where)
    if isinstance(d.get("id"), str) and d["id"]:
        where = f"row {i + 1} ({d['id']})"
    t = {k: _text(d, k, path, where) for k in ROW_TEXT}
    _choice(t["scale"], tuple(SCALES), "scale", path, where)
    _choice(t["comparable_to_protocol"], COMPARABLE, "comparable_to_protocol", path, where)
    shots = d.get("shots")
    if (
        not isinstance(shots, list)
        or not shots
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shots)
        or len(set(shots)) != len(shots)
    ):
        raise _fail("'shots' must be a non-empty list of distinct non-negative integers", path, where)
    values = _numbers(d, "values", path, where)
    if len(values) != len(shots):
        raise _fail(f"{len(shots)} shots but {len(values)} values", path, where)
    std = None
    if "std" in d:
        std = _numbers(d, "std", path, where)
        if len(std) != len(shots):
            raise _fail(f"{len(shots)} shots but {len(std)} std values", path, where)
    if not isinstance(d.get("verified"), bool):
        raise _fail("'verified' must be true or false", path, where)
    proto = d.get("protocol")
    if not isinstance(proto, dict):
        raise _fail("needs a [row.protocol] table", path, where)
    pw = f"{where} protocol"
    for k in PROTOCOL_TEXT:
        _text(proto, k, path, pw)
    for k in PROTOCOL_NUMBERS:
        v = proto.get(k)
        if not (_number(v) or (isinstance(v, str) and v.strip())):
            raise _fail(f"{k!r} must be a number (or text saying why none applies)", path, pw)
    _choice(proto["demo_separator"], SEPARATORS, "demo_separator", path, pw)
    _choice(proto["demo_selection"], DEMO_SELECTIONS, "demo_selection", path, pw)
    _choice(proto["zero_shot_mode"], ZERO_SHOT_MODES, "zero_shot_mode", path, pw)
    unknown = sorted(set(d) - set(ROW_TEXT) - {"shots", "values", "std", "verified", "protocol"})
    if unknown:
        raise _fail(f"unknown key(s) {', '.join(unknown)}", path, where)
    return Row(**t, shots=tuple(shots), values=values, protocol=dict(proto), verified=d["verified"], std=std)


def _disagreement(d: Any, i: int, path: Path) -> Disagreement:
    where = f"disagreement {i + 1}"
    if not isinstance(d, dict):
        raise _fail("must be a table", path, where)
    t = {k: _text(d, k, path, where) for k in ("preset", "task", "metric", "note")}
    if not isinstance(d.get("shots"), int) or isinstance(d.get("shots"), bool):
        raise _fail("'shots' must be an integer", path, where)
    entries = d.get("entries")
    if (
        not isinstance(entries, list)
        or len(entries) < 2
        or not all(
            isinstance(e, dict) and _number(e.get("value")) and isinstance(e.get("source"), str) and e["source"].strip()
            for e in entries
        )
    ):
        raise _fail("'entries' must list at least two {value = number, source = text}", path, where)
    return Disagreement(**t, shots=d["shots"], entries=tuple((float(e["value"]), e["source"]) for e in entries))


def _unread(d: Any, i: int, path: Path) -> Unread:
    where = f"unread {i + 1}"
    if not isinstance(d, dict):
        raise _fail("must be a table", path, where)
    t = {k: _text(d, k, path, where) for k in ("preset", "model", "source", "reason")}
    tasks = d.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(x, str) and x for x in tasks):
        raise _fail("'tasks' must be a non-empty list of task names", path, where)
    return Unread(**t, tasks=tuple(tasks))


def parse(data: dict[str, Any], path: Path) -> Published:
    """Validate the parsed TOML of a published-numbers file."""
    unknown = sorted(set(data) - {"row", "disagreement", "unread"})
    if unknown:
        raise UserError(
            f"unknown top-level key(s) {', '.join(unknown)} (expected [[row]], [[disagreement]], [[unread]])", path
        )
    for key in ("row", "disagreement", "unread"):
        if key in data and not isinstance(data[key], list):
            raise UserError(f"{key!r} must be an array of tables ([[{key}]])", path)
    rows = tuple(_row(d, i, path) for i, d in enumerate(data.get("row", [])))
    if not rows:
        raise UserError("no [[row]] tables", path)
    ids = [r.id for r in rows]
    dup = next((x for x in ids if ids.count(x) > 1), None)
    if dup is not None:
        raise UserError(f"row id {dup!r} is used twice", path)
    return Published(
        rows=rows,
        disagreements=tuple(_disagreement(d, i, path) for i, d in enumerate(data.get("disagreement", []))),
        unread=tuple(_unread(d, i, path) for i, d in enumerate(data.get("unread", []))),
        path=path,
    )


def load(path: str | os.PathLike | None = None) -> Published:
    """The published numbers, validated (a one-line UserError naming the file otherwise)."""
    from .io import read_toml

    p = Path(path) if path is not None else default_path()
    if not p.is_file():
        raise UserError("published-numbers file not found", p)
    return parse(read_toml(p), p)


def load_default() -> Published | None:
    """The shipped file, or None when an installation lacks it."""
    return load() if default_path().is_file() else None


# ------------------------------------------------------------------------------------------ matching
def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


def run_preset(run: RunResults) -> tuple[str | None, str]:
    """The model preset a run evaluated, and how that was decided ("" when by name).

    A preset by name is that preset. A spec file counts as a preset when its architecture keys
    (:data:`ARCHITECTURE_KEYS`) equal exactly one preset's and its OpenFlamingo weights are either that
    preset's or a local file (the offline case: the preset with local paths)."""
    spec = _get(run.model, "model_spec")
    if not isinstance(spec, dict):
        return None, "the run records no model spec"
    name = spec.get("name")
    presets = list_presets()
    if isinstance(name, str) and name in presets:
        return name, ""
    found = []
    for p in presets:
        table = preset_table(p)
        ref = {**architecture(table), "openflamingo_checkpoint": table.get("openflamingo_checkpoint")}
        if ref["init"] != "pretrained" or not ref["openflamingo_checkpoint"]:
            continue
        if any(spec.get(k) != ref[k] for k in ARCHITECTURE_KEYS):
            continue
        ck = spec.get("openflamingo_checkpoint")
        if not isinstance(ck, str) or not ck:
            continue
        if ck != ref["openflamingo_checkpoint"] and ck.startswith(("hf://", "hf-hub:")):
            continue  # other published weights
        found.append(p)
    if len(found) == 1:
        return found[0], (
            f"spec {name or '(unnamed)'} has preset {found[0]}'s architecture; its weights "
            f"({spec.get('openflamingo_checkpoint')}) are taken to be that preset's"
        )
    return None, f"model spec {name or '(unnamed)'} is not one of the presets ({', '.join(presets)})"


@dataclass
class Match:
    """One published row considered for one task result of one run."""

    row: Row
    task: str
    shots: int
    compares: bool
    reasons: list[str] = field(default_factory=list)  # why it does not compare
    caveats: list[str] = field(default_factory=list)  # what to keep in mind when it does
    measured_raw: float | None = None  # the run's value, mmgpt-eval's scale
    measured: float | None = None  # converted to the source's scale
    published: float | None = None  # the row's value at these shots
    published_std: float | None = None

    @property
    def delta(self) -> float | None:
        if self.measured is None or self.published is None:
            return None
        return self.measured - self.published

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row.id,
            "task": self.task,
            "shots": self.shots,
            "compares": self.compares,
            "reasons": self.reasons,
            "caveats": self.caveats,
            "measured": self.measured,
            "measured_raw": self.measured_raw,
            "published": self.published,
            "published_std": self.published_std,
            "scale": self.row.scale,
            "source": self.row.source,
            "source_commit": self.row.source_commit,
        }


def _number_of_trials(run: RunResults) -> int:
    seeds = _get(run.run, "trials", "seeds")
    return len(seeds) if isinstance(seeds, list) and seeds else 1


def _match(row: Row, run: RunResults, tr: TaskResult, preset: str | None, how: str) -> Match:
    r = run.run if isinstance(run.run, dict) else {}
    shots = int(tr.num_fewshot or 0)
    m = Match(
        row=row,
        task=tr.task,
        shots=shots,
        compares=False,
        published=row.value_at(shots),
        published_std=row.std_at(shots),
    )
    why = m.reasons
    if preset != row.preset:
        why.append(f"published for preset {row.preset}; " + (f"this run evaluated preset {preset}" if preset else how))
    elif how:
        m.caveats.append(how)
    ck = _get(run.model, "checkpoint")
    if isinstance(ck, dict) and ck.get("path"):
        why.append(
            f"this run applied checkpoint {Path(str(ck['path'])).name} on the base model; the published "
            "numbers are for the base weights alone"
        )
    if shots not in row.shots:
        why.append(f"published at {', '.join(map(str, row.shots))} shots; this run used {shots}")
    protocol = r.get("protocol") or "mmgpt-eval"
    if row.comparable_to_protocol == "none":
        why.append(f"the source's protocol is not one mmgpt-eval runs: {row.comparability_note}")
    elif protocol != row.comparable_to_protocol:
        why.append(
            f"this run used --protocol {protocol}; the row compares only with --protocol {row.comparable_to_protocol}"
        )
    selection = r.get("fewshot_selection") or "random"
    if selection != row.protocol["demo_selection"]:
        why.append(f"demos by {selection}; the source drew them by {row.protocol['demo_selection']}")
    zero_mode = r.get("fewshot_zero_mode") or "text-demos"
    if shots == 0 and zero_mode != row.protocol["zero_shot_mode"]:
        why.append(f"0 shots meant --fewshot-zero-mode {zero_mode}; for the source: {row.protocol['zero_shot']}")
    overrides = r.get("generation_overrides")
    overrides = {k: v for k, v in overrides.items() if k != "use_cache"} if isinstance(overrides, dict) else {}
    if overrides:
        why.append(
            "decoding changed by flags ("
            + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
            + "); the source decoded with its own settings"
        )
    raw = tr.metrics.get(row.metric) if isinstance(tr.metrics, dict) else None
    if _number(raw):
        m.measured_raw = float(raw)
        m.measured = float(raw) * row.factor
    else:
        why.append(f"this run has no finite {row.metric}")
    m.compares = not why
    if m.compares:
        if row.factor != 1.0:
            m.caveats.append(
                f"measured {row.metric} {m.measured_raw:.4g} (mmgpt-eval's scale) shown x{row.factor:g} "
                "as the source reports it"
            )
        if tr.n_samples < tr.n_available:
            m.caveats.append(
                f"this run evaluated {tr.n_samples} of {tr.n_available} samples ({tr.subset}); the "
                f"source: {row.protocol['num_samples']}"
            )
        n = _number_of_trials(run)
        m.caveats.append(f"this run: {n} trial{'s' if n != 1 else ''}; the source: {row.protocol['trials']}")
        if not row.verified:
            m.caveats.append("the published value was not verified at its source")
    return m


def published_rows_for(run: RunResults, task: str | None = None, published: Published | None = None) -> list[Match]:
    """Every published row for the run's tasks (or ``task``), each marked as comparing or not, with the
    reasons. ``published`` defaults to the checkout's file (none: an empty list)."""
    pub = published if published is not None else load_default()
    if pub is None:
        return []
    tasks = [task] if task is not None else list(run.tasks)
    rows = [r for r in pub.rows if r.task in tasks]
    if not rows:
        return []
    preset, how = run_preset(run)
    out = []
    for name in tasks:
        tr = run.tasks.get(name)
        if tr is None:
            continue
        out += [_match(row, run, tr, preset, how) for row in rows if row.task == name]
    return out


def notes_for(run: RunResults, published: Published | None = None, tasks: list[str] | None = None) -> list[str]:
    """Disagreements between sources and values not recorded, for the run's tasks (or ``tasks``) and preset."""
    pub = published if published is not None else load_default()
    if pub is None:
        return []
    wanted = [t for t in run.tasks if tasks is None or t in tasks]
    preset, _ = run_preset(run)
    out = [d.text() for d in pub.disagreements if d.task in wanted and d.preset == preset]
    out += [u.text(t) for u in pub.unread if u.preset == preset for t in u.tasks if t in wanted]
    return out


def published_json(run: RunResults, tasks: list[str] | None = None) -> list[dict[str, Any]]:
    """The published rows for ``run`` (or only ``tasks``) as JSON records, compared or not (with the
    reasons); empty when there is no published file or it cannot be read (the CLI warns about that)."""
    try:
        return [m.to_dict() for m in published_rows_for(run) if tasks is None or m.task in tasks]
    except UserError:
        return []


# ------------------------------------------------------------------------------------------ the CLI
def _fmt(v: float | None, std: float | None = None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" + (f" ±{std:g}" if std is not None else "")


def print_published(
    runs: list[RunResults],
    labels: list[str] | None = None,
    published: Published | None = None,
    tasks: list[str] | None = None,
    console=None,
) -> None:
    """Published OpenFlamingo rows beside the runs' numbers where they compare, and why the others do
    not (``tasks``: only these). Prints nothing when no published row concerns the runs' tasks; a bad
    file is one warning line. ``console``: the rich Console to print on (the CLI passes its stdout
    console, which keeps cells whole off a terminal); by default one that keeps long reasons on one line
    each."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from .compare import run_label

    con = console if console is not None else Console(soft_wrap=True)
    try:
        pub = published if published is not None else load_default()
    except UserError as e:
        con.print(f"[yellow]published OpenFlamingo numbers not shown:[/] {escape(str(e))}")
        return
    if pub is None:
        return
    if labels is None:
        labels = [run_label(r) for r in runs]
        labels = [
            f"{lbl} ({r.run_dir.name})" if labels.count(lbl) > 1 and r.run_dir is not None else lbl
            for lbl, r in zip(labels, runs)
        ]
    per_run = [
        (
            lbl,
            [m for m in published_rows_for(r, published=pub) if tasks is None or m.task in tasks],
            notes_for(r, pub, tasks),
        )
        for lbl, r in zip(labels, runs)
    ]
    if not any(ms for _, ms, _ in per_run):
        return
    several = len(runs) > 1
    t = Table(
        title="published OpenFlamingo numbers that compare (same task, preset, shots, protocol)", title_justify="left"
    )
    for col in (["run"] if several else []) + ["row", "task", "shots", "measured", "published", "delta"]:
        t.add_column(col, justify="right" if col in ("shots", "measured", "published", "delta") else "left")
    n = 0
    for lbl, ms, _ in per_run:
        for m in ms:
            if m.compares:
                n += 1
                t.add_row(
                    *([escape(lbl)] if several else []),
                    escape(m.row.id),
                    f"{m.task} {m.row.metric}" + (" x100" if m.row.factor != 1 else ""),
                    str(m.shots),
                    _fmt(m.measured),
                    _fmt(m.published, m.published_std),
                    _fmt(m.delta),
                )
    if n:
        con.print(t)
        for _, ms, _ in per_run:
            for m in ms:
                if m.compares:
                    con.print(
                        f"  {escape(m.row.id)}: {escape(m.row.source)} @ {m.row.source_commit[:12]}; "
                        + escape("; ".join(m.caveats))
                    )
    else:
        con.print(
            "published OpenFlamingo numbers: none compares with " + ("this run" if len(runs) == 1 else "these runs")
        )
    for lbl, ms, notes in per_run:
        for m in ms:
            if not m.compares:
                con.print(
                    f"  not compared: {escape(m.row.id)} ({m.task}, {escape(m.row.values_text())}) vs "
                    f"{escape(lbl)}: " + escape("; ".join(_short(x) for x in m.reasons))
                )
        for note in notes:
            con.print(f"  note: {escape(_short(note, 300))}")
    con.print(f"  (rows and their protocols: {pub.path})")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
