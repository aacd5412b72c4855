"""One settings object for a run: :class:`EvalConfig`.

Every run setting is one field of :class:`EvalConfig`, and its metadata (:class:`Setting`) says
everything else about it:

* how it appears on the command line (:class:`Flag`: name, type function, choices, help) and as a
  top-level key of a run config (``mmgpt-eval run --config run.toml``): ``run``'s flags and the
  config-file reader are generated from these declarations (:func:`add_flags`, :meth:`EvalConfig.from_cli`,
  :meth:`EvalConfig.from_toml`);
* whether it is part of a task's fingerprint (a resumed run with another value starts the task over)
  and under which condition (:data:`FINGERPRINT_RULES`);
* where results record it (``run`` info key; ``record`` names the place for the others);
* whether a baseline run must have used the same value (``baseline``).

A new option is one field plus its help text::

    my_option: str = setting("x", Flag("--my-option", "what it does"), run="my_option")

``evaluate(config)`` (mmgpt_eval.api) takes one; ``evaluate(**kwargs)`` builds one with
:meth:`EvalConfig.from_kwargs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .errors import UserError
from .generation_settings import GenerationSettings, check_value
from .io import check_output_dir, check_output_file

DEFAULT_OUTPUT_DIR = "mmgpt-eval-out"


# ------------------------------------------------------------------------------------ value parsers
# argparse types: each raises argparse.ArgumentTypeError with a message that names what is expected,
# which the command line and the run-config reader both show.
_DEVICE_RE = re.compile(r"^(cpu|auto|mps|cuda(:\d+)?)$")


def device_arg(value: str) -> str:
    """cpu, cuda, cuda:N, mps or auto (checked before anything loads)."""
    if not _DEVICE_RE.match(value):
        raise argparse.ArgumentTypeError(f"unknown device {value!r}: use cpu, cuda, cuda:N, mps or auto")
    return value


def int_arg(minimum: int, what: str = "") -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}") from None
        if n < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{what}, got {n}")
        return n

    parse.__name__ = f"int>={minimum}"
    return parse


ALL = "all"


def limit_arg(value: str) -> int | str:
    """``all`` (every sample: no limit) or an integer >= 1."""
    if value == ALL:
        return ALL
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected an integer >= 1 or 'all', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (or 'all' for every sample), got {n}")
    return n


limit_arg.__name__ = "int>=1 or all"


def generation_arg(name: str) -> Callable[[str], Any]:
    """An argparse type for a GenerationSettings field: its type and range as declared there."""

    def parse(value: str) -> Any:
        try:
            return check_value(name, value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = name
    return parse


def batch_size_arg(value: str) -> int:
    """``auto`` -> 0 (the generator starts large and backs off on out-of-memory), else a positive int."""
    if value == "auto":
        return 0
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("--batch-size must be at least 1 (or 'auto')")
    return n


def _checked_by(check: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse type from an io check (its UserError becomes the flag's error)."""

    def parse(value: str) -> str:
        try:
            check(value)
        except UserError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return value

    parse.__name__ = check.__name__
    return parse


# a results folder (not an existing file, nor below one) / an output file (not a directory): before anything loads
output_dir_arg = _checked_by(check_output_dir)
output_file_arg = _checked_by(check_output_file)


def _protocol_names() -> tuple[str, ...]:
    from .protocols import names

    return names()


# ------------------------------------------------------------------------------------ metadata
@dataclass(frozen=True)
class Flag:
    """How a setting appears on the command line and in a run config.

    ``kind``: ``value`` (takes a value), ``switch`` (``store_true``), ``negated`` (``--no-x``: sets the
    field to False), ``append`` (repeatable; a list in a run config). ``key`` is the argparse dest and
    the run-config key (default: the flag without dashes). ``path``: how a run config's relative value
    resolves against the config file's folder (``always``, or ``if-exists``). ``choices`` may be a
    function returning them (the protocol registry)."""

    name: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None
    kind: str = "value"
    metavar: str | None = None
    group: str = "run"  # run | model | generation: the argument group (model/generation are shared)
    key: str = ""
    path: str | None = None

    @property
    def dest(self) -> str:
        return self.key or self.name.lstrip("-").replace("-", "_")

    def choice_list(self) -> list[Any] | None:
        c = self.choices() if callable(self.choices) else self.choices
        return list(c) if c is not None else None

    def to_field(self, value: Any) -> Any:
        """The field's value for a flag value (not None)."""
        if self.kind == "negated":
            return not value
        if self.kind == "append":
            return tuple(value)
        return value


@dataclass(frozen=True)
class Setting:
    """What one :class:`EvalConfig` field is. ``fingerprint``: a rule of :data:`FINGERPRINT_RULES`
    (None: not part of the fingerprint, or only through what it resolves to, e.g. the template and
    generation settings); ``run``: its key in results' ``run`` info, which :meth:`EvalConfig.run_info`
    writes (``generation_overrides`` groups the decoding fields); ``record``: where else results keep it
    (``run.<key>`` written by the runner or the protocol, ``model``, ``tasks.options``, ``baseline``,
    ``run.argv`` for what only shapes how a run is carried out); ``baseline``: where a baseline run's
    value is read to check it is the same (``task.<attr>`` or ``run.<key>``), with ``baseline_default``
    for runs that lack it; ``owner``: the protocol whose option this is (refused with any other)."""

    flag: Flag | None
    fingerprint: str | None = None
    run: str | None = None
    record: str | None = None
    baseline: str | None = None
    baseline_default: Any = None
    owner: str | None = None

    @property
    def recorded_at(self) -> str:
        return f"run.{self.run}" if self.run else (self.record or "")


def setting(default: Any, flag: Flag | None, *, factory: Callable[[], Any] | None = None, **meta: Any) -> Any:
    """A field of :class:`EvalConfig` with its :class:`Setting` metadata."""
    if factory is not None:
        return field(default_factory=factory, metadata={"setting": Setting(flag, **meta)})
    return field(default=default, metadata={"setting": Setting(flag, **meta)})


_GEN_DEFAULTS = GenerationSettings()


def _gen(name: str, help: str, kind: str = "value") -> Any:
    """A decoding override (None: the task's / template's own)."""
    return setting(
        None,
        Flag(
            "--" + name.replace("_", "-"),
            help,
            generation_arg(name) if kind == "value" else None,
            kind=kind,
            group="generation",
        ),
        run="generation_overrides",
    )


# ------------------------------------------------------------------------------------ the settings
@dataclass(frozen=True)
class EvalConfig:
    """Every setting of one evaluation run (``mmgpt-eval run``'s flags, a run config's keys,
    :func:`mmgpt_eval.evaluate`'s arguments). Fields recorded in results' ``run`` info come first, in
    the order results list them."""

    argv: tuple[str, ...] = setting((), None, run="argv")
    output_dir: str | Path | None = setting(
        None,
        Flag(
            "--output-dir",
            f"results folder (default {DEFAULT_OUTPUT_DIR}); re-running the same command there resumes",
            output_dir_arg,
            path="always",
        ),
        run="output_dir",
    )
    seed: int | None = setting(
        None, Flag("--seed", "random seed (sampling, few-shot demos)", int, group="generation"), run="seed"
    )
    batch_size: int = setting(
        8,
        Flag(
            "--batch-size",
            "rows per batch, or 'auto': start large and halve on out-of-memory (default 8)",
            batch_size_arg,
            group="generation",
        ),
        run="batch_size",
    )
    limit: int | str | None = setting(
        None,
        Flag("--limit", "evaluate a fixed subset of N samples per task ('all': every sample)", limit_arg),
        run="limit",
    )
    num_fewshot: int = setting(
        0,
        Flag("--num-fewshot", "few-shot demos (OpenFlamingo templates)", int_arg(0)),
        fingerprint="always",
        run="num_fewshot",
        baseline="task.num_fewshot",
        baseline_default=0,
    )
    fewshot_zero_mode: str = setting(
        "text-demos",
        Flag(
            "--fewshot-zero-mode",
            "what 0-shot means for few-shot templates: OpenFlamingo's 2 text-only demos (default) or no demos",
            choices=("text-demos", "none"),
        ),
        fingerprint="demo-template",
        run="fewshot_zero_mode",
    )
    fewshot_selection: str = setting(
        "random",
        Flag(
            "--fewshot-selection",
            "few-shot demos: random per item (seeded by seed + item id; default) or RICES (the "
            "most similar train images by the model's vision encoder, most similar last)",
            choices=("random", "rices"),
        ),
        fingerprint="demos-drawn",
        run="fewshot_selection",
    )
    rices_encoder: str = setting(
        "model",
        Flag(
            "--rices-encoder",
            "RICES image features: model (default: the model's own vision encoder) or "
            "openclip:ARCH:PRETRAINED, e.g. OpenFlamingo's openclip:ViT-L-14:openai (a tag needs its weights "
            "downloadable or cached; offline, give a local weights file)",
            metavar="ENCODER",
        ),
        fingerprint="unless-default",
        run="rices_encoder",
    )
    template: str | None = setting(None, Flag("--template", "prompt template (default: each task's)"), run="template")
    history_mode: str = setting(
        "self",
        Flag(
            "--history-mode",
            "dialogue history: the model's own answers (self, default) or the references (teacher)",
            choices=("self", "teacher"),
        ),
        fingerprint="multi-round",
        run="history_mode",
    )
    max_new_tokens: int | None = _gen("max_new_tokens", f"(default {_GEN_DEFAULTS.max_new_tokens})")
    num_beams: int | None = _gen("num_beams", f"(default {_GEN_DEFAULTS.num_beams})")
    do_sample: bool | None = _gen("do_sample", "sample instead of greedy/beam search", kind="switch")
    temperature: float | None = _gen("temperature", "sampling temperature (> 0 with --do-sample)")
    top_k: int | None = _gen("top_k", "top-k filter (0: none)")
    top_p: float | None = _gen("top_p", "nucleus sampling, 0 < p <= 1")
    use_cache: bool | None = setting(
        None,
        Flag("--no-cache", "disable the KV cache (slower; for checks)", kind="negated", group="generation"),
        run="generation_overrides",
    )
    share_prefix: bool = setting(
        True,
        Flag(
            "--no-share-prefix",
            "recompute the prompt prefix a batch shares in every row (slower; for checks)",
            kind="negated",
            group="generation",
        ),
        run="share_prefix",
    )
    truncate: str = setting(
        "none",
        Flag(
            "--truncate",
            "a prompt longer than the model's context: none (default) refuses the run before generating, naming "
            "the sample; left keeps the prompt's last tokens (never cutting an <image> token; counted per task in "
            "results and the report)",
            choices=("none", "left"),
        ),
        fingerprint="unless-default",
        record="tasks",
    )
    protocol: str = setting(
        "mmgpt-eval",
        Flag(
            "--protocol",
            "mmgpt-eval (default): this harness's protocol; openflamingo: OpenFlamingo's evaluate.py "
            "exactly -- its templates, decoding, answer cleanup, VQA normalisation, OK-VQA stemming, seeded subset "
            "and demo draws (seed 42 unless --seed), RICES over the whole train split (README: Comparing with "
            "OpenFlamingo)",
            choices=_protocol_names,
        ),
        record="run.protocol",
        baseline="run.protocol",
        baseline_default="mmgpt-eval",
    )
    of_num_samples: int | None = setting(
        None,
        Flag(
            "--of-num-samples",
            "--protocol openflamingo: evaluate N samples drawn as OpenFlamingo's --num_samples draws them",
            int_arg(1),
        ),
        record="run.of_num_samples",
        owner="openflamingo",
    )
    of_query_set_size: int | None = setting(
        None,
        Flag(
            "--of-query-set-size",
            "--protocol openflamingo: size of the random demo query set (OpenFlamingo's "
            "--query_set_size, default 2048)",
            int_arg(1),
        ),
        record="run.of_query_set_size",
        owner="openflamingo",
    )
    label: str | None = setting(
        None,
        Flag(
            "--label",
            "what to call this run in reports and comparisons (default: the checkpoint's or the model's name)",
        ),
        record="run.label",
    )
    # --- what to evaluate
    model: Any = setting(
        None,
        Flag(
            "--model",
            "preset name (tiny, mmgpt-9b-v0, openflamingo-9b-mpt7b) or a model-spec TOML file",
            metavar="SPEC",
            group="model",
            path="if-exists",
        ),
        record="model",
    )
    ckpt: str | Path | None = setting(
        None,
        Flag(
            "--ckpt",
            "checkpoint to load onto the base model: MultiModal-GPT .pt, PEFT adapter folder, or OpenFlamingo "
            "checkpoint.pt",
            metavar="PATH",
            group="model",
            path="if-exists",
        ),
        record="model",
    )
    tasks: str | tuple[str, ...] | None = setting(
        None, Flag("--tasks", "comma-separated task names or aliases (see `mmgpt-eval tasks`)"), record="tasks"
    )
    trials: int = setting(
        1,
        Flag(
            "--trials",
            "evaluate N times with seeds SEED, SEED+1, ... (OUTDIR/trials/seed-<s>/) and report each "
            "metric's mean and standard deviation (OpenFlamingo's --num_trials)",
            int_arg(1),
        ),
        record="run.trials",
    )
    include_paths: tuple[str, ...] = setting(
        (), Flag("--include-path", "extra task plugin folder", kind="append", metavar="DIR"), record="run.argv"
    )
    # task options: the tasks' own flags (OPTIONS), --task-config and a run config's [task] tables
    task_options: Mapping[str, Any] = setting(None, None, factory=dict, record="tasks.options")
    baseline: str | Path | None = setting(
        None,
        Flag(
            "--baseline",
            "also evaluate this baseline (a model spec, no checkpoint) on exactly the same samples and "
            "settings, or reuse an earlier run folder; results are stored side by side",
            metavar="SPEC_OR_RUN",
            path="if-exists",
        ),
        record="baseline",
    )
    intersect: bool = setting(
        False,
        Flag("--intersect", "with a baseline run on other samples: compare the common ones", kind="switch"),
        record="baseline",
    )
    report: bool = setting(
        True, Flag("--no-report", "do not write OUTDIR/report.html", kind="negated"), record="run.argv"
    )
    overwrite: bool = setting(
        False,
        Flag(
            "--overwrite",
            "replace the run already in the output folder instead of adding this run's tasks to it (needed when "
            "its model, checkpoint or settings differ): results.json keeps only this run's tasks, the other "
            "tasks' per-sample logs are moved aside (<task>.jsonl.stale-<time>)",
            kind="switch",
        ),
        record="run.argv",
    )
    data_root: str | Path | None = setting(
        None,
        Flag(
            "--data-root",
            "where tasks find their data (default $MMGPT_EVAL_DATA or ~/.cache/mmgpt-eval/data); see "
            "`mmgpt-eval data check`",
            metavar="DIR",
            path="always",
        ),
        record="tasks.options",
    )
    progress: bool = setting(True, Flag("--no-progress", "no progress bars", kind="negated"), record="run.argv")
    log_to: tuple[str, ...] = setting(
        (),
        Flag(
            "--log-to",
            "also send metrics, per-task tables, the report and the run's settings to an experiment tracker "
            "once the run is written: mlflow[:URI] (e.g. mlflow:file:./mlruns, mlflow:http://host:5000) or "
            "wandb[:PROJECT]; repeatable or comma-separated; needs pip install 'mmgpt-eval[mlflow]' / '[wandb]'",
            kind="append",
            metavar="TRACKER",
        ),
        record="run.argv",
    )
    # --- how to load the model
    device: str | None = setting(
        None,
        Flag("--device", "cpu, cuda, cuda:N, mps or auto (default: the spec's)", device_arg, group="model"),
        record="model",
    )
    precision: str | None = setting(
        None,
        Flag("--precision", "override the spec's precision", choices=("fp32", "bf16", "fp16"), group="model"),
        record="model",
    )
    allow_partial: bool = setting(
        False,
        Flag(
            "--allow-partial",
            "evaluate even if some adapter / cross-attention tensors did not load (loud warning)",
            kind="switch",
            group="model",
        ),
        record="model",
    )
    trust_checkpoint: bool = setting(
        False,
        Flag(
            "--trust-checkpoint",
            "allow arbitrary unpickling of checkpoints (runs code from the file!)",
            kind="switch",
            group="model",
        ),
        record="run.argv",
    )
    lora_alpha: float | None = setting(
        None,
        Flag("--lora-alpha", "LoRA alpha for checkpoints that do not store it", float, group="model"),
        record="model",
    )
    allow_nonfinite: bool = setting(
        False,
        Flag(
            "--allow-nonfinite",
            "load checkpoints that hold NaN/inf values (loud warning; outputs are likely garbage)",
            kind="switch",
            group="model",
        ),
        record="model",
    )
    allow_suspicious_adapter: bool = setting(
        False,
        Flag(
            "--allow-suspicious-adapter",
            "evaluate an adapter the checkpoint validator calls suspicious (no LoRA tensors, non-floating "
            "LoRA tensors, LoRA alpha <= 0 or scaling outside [1e-3, 1e3]); loud warning, recorded in results",
            kind="switch",
            group="model",
        ),
        record="model",
    )

    # ------------------------------------------------------------------------------ derived views
    @property
    def generation_overrides(self) -> dict[str, Any]:
        """The decoding settings this run sets (over each task's own), as results record them."""
        return {
            f.name: getattr(self, f.name)
            for f in settings()
            if f.metadata["setting"].run == "generation_overrides" and getattr(self, f.name) is not None
        }

    @property
    def load_options(self) -> "LoadOptions":
        return LoadOptions(
            device=self.device,
            precision=self.precision,
            allow_partial=self.allow_partial,
            trust_checkpoint=self.trust_checkpoint,
            lora_alpha=self.lora_alpha,
            allow_nonfinite=self.allow_nonfinite,
            allow_suspicious_adapter=self.allow_suspicious_adapter,
        )

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir or DEFAULT_OUTPUT_DIR)

    def replace(self, **changes: Any) -> "EvalConfig":
        return dataclasses.replace(self, **changes)

    def run_info(self) -> dict[str, Any]:
        """The settings results' ``run`` info records (the protocol's own are added by the protocol)."""
        out: dict[str, Any] = {}
        for f in settings():
            key = f.metadata["setting"].run
            if key is None:
                continue
            if key == "generation_overrides":
                out.setdefault(key, self.generation_overrides)
            elif key == "output_dir":
                out[key] = str(self.out_dir)
            elif key == "argv":
                out[key] = list(self.argv)
            else:
                out[key] = getattr(self, f.name)
        return out

    # ------------------------------------------------------------------------------ builders
    @classmethod
    def from_kwargs(
        cls, generation: Mapping[str, Any] | None = None, load_options: "LoadOptions | None" = None, **kwargs: Any
    ) -> "EvalConfig":
        """From :func:`mmgpt_eval.evaluate`'s keyword arguments: ``generation`` (decoding overrides) and
        ``load_options`` (:class:`LoadOptions`) spread into their fields; None means the field's default."""
        values = {k: v for k, v in kwargs.items() if v is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown evaluation settings: {', '.join(unknown)}")
        gen_fields = {f.name for f in settings() if f.metadata["setting"].run == "generation_overrides"}
        for k, v in (generation or {}).items():
            if k not in gen_fields:
                raise UserError(f"unknown generation override {k!r}; known: {', '.join(sorted(gen_fields))}")
            values[k] = v
        if load_options is not None:
            values.update(dataclasses.asdict(load_options))
        for k in ("argv", "include_paths", "log_to"):
            if k in values:
                v = values[k]
                values[k] = (v,) if isinstance(v, str) else tuple(v)
        if isinstance(values.get("tasks"), list):
            values["tasks"] = tuple(values["tasks"])
        if "task_options" in values:
            values["task_options"] = dict(values["task_options"])
        return cls(**values)

    @classmethod
    def from_cli(cls, args: argparse.Namespace | Sequence[str], argv: Sequence[str] | None = None) -> "EvalConfig":
        """From ``mmgpt-eval run``'s parsed flags (or its argument list), merged with ``--config``'s file:
        flags win, then the run config, then the defaults."""
        if not isinstance(args, argparse.Namespace):
            argv = list(args)
            parser = _RunParser(prog="mmgpt-eval run")
            add_run_arguments(parser, argv)
            args = parser.parse_args(argv)
            args._actions = {a.dest: a for a in parser._actions}
        given = {
            fl.dest: getattr(args, fl.dest)
            for fl in flags()
            if getattr(args, fl.dest, None) is not None and getattr(args, fl.dest) != []
        }
        tables: dict[str, Any] = {}
        config = getattr(args, "config", None)
        if config:
            from_file, tables, task_keys = read_run_config(config, getattr(args, "_actions", {}))
            for k, v in from_file.items():
                given.setdefault(k, v)
            for k, v in task_keys.items():  # top-level task option keys: flags win
                if getattr(args, k, None) is None:
                    setattr(args, k, v)
        values: dict[str, Any] = {}
        for f in settings():
            fl = f.metadata["setting"].flag
            if fl is not None and fl.dest in given:
                values[f.name] = fl.to_field(given[fl.dest])
        include = list(values.get("include_paths", ()))
        values["task_options"] = cli_task_options(args, tables, include, given.get("task_config"))
        values["argv"] = tuple(argv if argv is not None else ())
        cfg = cls(**values)
        try:  # combinations of flags (and config values) that no single flag's type can see
            cfg.check_sampling()
        except UserError as e:
            if not config:
                raise
            raise UserError(f"{e} (flags and config combined)", config) from None
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> "EvalConfig":
        """A run config alone (``mmgpt-eval run --config PATH`` with no other flag)."""
        ns = argparse.Namespace(config=str(path), include_path=[])
        return cls.from_cli(ns, argv=["--config", str(path)])

    def check_sampling(self) -> None:
        if self.do_sample and self.temperature is not None and self.temperature <= 0:
            raise UserError(f"--temperature must be > 0 with --do-sample, got {self.temperature!r}")


@dataclass
class LoadOptions:
    """How to load: device/precision overrides and the checkpoint safety switches."""

    device: str | None = None
    precision: str | None = None
    allow_partial: bool = False
    trust_checkpoint: bool = False
    lora_alpha: float | None = None
    allow_nonfinite: bool = False  # load checkpoints holding NaN/inf values (loud warning) instead of refusing
    allow_suspicious_adapter: bool = False  # load adapters model/validate.py calls suspicious (loud warning)

    def spec_overrides(self) -> dict[str, Any]:
        return {k: v for k, v in (("precision", self.precision), ("device", self.device)) if v}


def settings() -> tuple[dataclasses.Field, ...]:
    """EvalConfig's fields, in declaration order."""
    return dataclasses.fields(EvalConfig)


def meta(name: str) -> Setting:
    return next(f.metadata["setting"] for f in settings() if f.name == name)


def flags(group: str | None = None) -> list[Flag]:
    return [
        f.metadata["setting"].flag
        for f in settings()
        if f.metadata["setting"].flag is not None and (group is None or f.metadata["setting"].flag.group == group)
    ]


# ------------------------------------------------------------------------------------ fingerprint
# A fingerprint rule: when the field's value counts for a prepared task (else the fingerprint holds
# None). "unless-default": the key is absent while the field has its default (a setting added after
# the fingerprint was introduced: older logs keep theirs).
FINGERPRINT_RULES: dict[str, Callable[[Any, "EvalConfig", Any], bool]] = {
    "always": lambda pt, cfg, proto: True,
    "demo-template": lambda pt, cfg, proto: pt.template.demo is not None,
    # demos are drawn: few-shot prompts, or a protocol that picks its 0-shot text demos the same way
    "demos-drawn": lambda pt, cfg, proto: (
        pt.template.demo is not None and bool(cfg.num_fewshot or proto.selects_zero_shot_demos)
    ),
    "multi-round": lambda pt, cfg, proto: bool(pt.task.multi_round),
}


def fingerprint_settings(pt: Any, cfg: EvalConfig, protocol: Any) -> dict[str, Any]:
    """The fingerprinted settings of one prepared task (field name -> value, or None where it does not
    apply)."""
    out: dict[str, Any] = {}
    for f in settings():
        rule = f.metadata["setting"].fingerprint
        if rule is None:
            continue
        value = getattr(cfg, f.name)
        if rule == "unless-default":
            if value != f.default:
                out[f.name] = value
        else:
            out[f.name] = value if FINGERPRINT_RULES[rule](pt, cfg, protocol) else None
    return out


# ------------------------------------------------------------------------------------ the command line
def add_flags(
    p: argparse.ArgumentParser | Any,
    group: str,
    *,
    defaults: bool = False,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Add the flags of one group. ``defaults=False`` (``run``): every flag defaults to None, so a run
    config can fill what was not given; True: argparse defaults are the fields' defaults (``predict``)."""
    by_dest = {f.metadata["setting"].flag.dest: f for f in settings() if f.metadata["setting"].flag is not None}
    for fl in flags(group):
        default = None
        if defaults:
            d = by_dest[fl.dest].default
            default = False if fl.kind == "negated" else (list(d) if fl.kind == "append" else d)  # type: ignore[arg-type]
        add_flag(p, fl, **{"default": default, **(overrides or {}).get(fl.dest, {})})


def add_flag(p: argparse.ArgumentParser | Any, fl: Flag, default: Any = None, **override: Any) -> None:
    """One flag as an argparse argument."""
    kw: dict[str, Any] = {"dest": fl.dest, "help": fl.help, "default": default}
    if fl.kind in ("switch", "negated"):
        kw["action"] = "store_true"
    else:
        if fl.kind == "append":
            kw["action"] = "append"
        if fl.type is not None:
            kw["type"] = fl.type
        if fl.choices is not None:
            kw["choices"] = fl.choice_list()
        if fl.metavar:
            kw["metavar"] = fl.metavar
    kw.update(override)
    p.add_argument(fl.name, **kw)


# ------------------------------------------------------------------------------------ run configs
UNKNOWN_KEY_HINT = "use the flag names of `mmgpt-eval run`, e.g. tasks, output_dir, limit"


def check_config_value(key: str, value: Any, fl: Flag, path: str) -> Any:
    """A run-config value checked exactly as the flag would be: its type function and choices (a TOML
    value of the right native type is passed as text through the same function)."""
    flag = fl.name
    if fl.kind in ("switch", "negated"):
        if not isinstance(value, bool):
            raise UserError(f"{key} = {value!r}: expected true or false (flag {flag})", path)
        return value
    if fl.kind == "append":
        values = value if isinstance(value, list) else [value]
        one = dataclasses.replace(fl, kind="value")
        return [check_config_value(key, v, one, path) for v in values]
    if isinstance(value, (dict, list, bool)) or (fl.type is None and not isinstance(value, str)):
        raise UserError(
            f"{key} = {value!r}: expected {'a string' if fl.type is None else 'a single value'} (flag {flag})", path
        )
    if fl.type is not None:
        text = value if isinstance(value, str) else str(value)
        try:
            value = fl.type(text)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as e:
            why = (
                str(e)
                if isinstance(e, argparse.ArgumentTypeError)
                else f"expected {getattr(fl.type, '__name__', 'a valid value')}"
            )
            raise UserError(f"{key} = {text!r}: {why} (flag {flag})", path) from None
    choices = fl.choice_list()
    if choices is not None and value not in choices:
        raise UserError(f"{key} = {value!r}: choose from {', '.join(map(str, choices))} (flag {flag})", path)
    return value


def _action_flag(action: argparse.Action, key: str) -> Flag:
    """A task option's argparse action as a Flag (its type and choices check run-config values)."""
    kind = "switch" if action.nargs == 0 else "value"
    return Flag(
        action.option_strings[-1] if action.option_strings else key,
        action.help or "",
        action.type if callable(action.type) else None,
        tuple(action.choices) if action.choices is not None else None,
        kind=kind,
        key=key,
    )


def _task_option_actions() -> dict[str, argparse.Action]:
    """The built-in and installed tasks' option flags (a run config read without ``run``'s parser)."""
    from .taskregistry import discover

    parser = argparse.ArgumentParser(add_help=False)
    for name, cls in sorted(discover().items()):
        for o in cls.OPTIONS:
            if o.key(name) not in {a.dest for a in parser._actions}:
                o.add_to(parser, name)
    return {a.dest: a for a in parser._actions}


def read_run_config(
    path: str, task_actions: Mapping[str, argparse.Action] | None = None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``--config run.toml``: top-level keys are ``run``'s flags (``tasks = ["coco", "vqa"]``,
    ``output_dir = "out"``; relative paths resolve against the file's folder), ``[task]`` tables are
    task options. Every value is checked with its flag's type and choices, so a bad value is one line
    naming the file and the key. Returns (flag values by key, [task] tables, top-level task option keys)."""
    from .io import read_toml

    raw = read_toml(path)
    base = Path(path).resolve().parent
    by_key = {fl.dest: fl for fl in [*flags(), TASK_CONFIG_FLAG]}
    actions = dict(task_actions or {}) or _task_option_actions()
    values: dict[str, Any] = {}
    task_keys: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            continue
        dest = key.replace("-", "_")
        fl = by_key.get(dest)
        if fl is None:
            act = actions.get(dest)
            if act is None or dest in ("config", "func", "help") or not act.option_strings:
                raise UserError(f"unknown run option {key!r} ({UNKNOWN_KEY_HINT})", path)
            task_keys[dest] = check_config_value(key, value, _action_flag(act, dest), path)
            continue
        if dest == "tasks" and isinstance(value, list):
            value = ",".join(map(str, value))
        if fl.path and isinstance(value, str):
            p = Path(value).expanduser()
            if not p.is_absolute() and (fl.path == "always" or (base / p).exists()):
                value = str(base / p)
        values[dest] = check_config_value(key, value, fl, path)
    tables = {k: v for k, v in raw.items() if isinstance(v, dict) and k != JUDGE_TABLE}
    return values, tables, task_keys


#: the run config's table of judge settings (``run --judge``'s flags without the ``judge-`` prefix)
JUDGE_TABLE = "judge"
JUDGE_KEYS: dict[str, type | tuple[type, ...]] = {
    "spec": str,
    "api_key_env": str,
    "repeats": int,
    "concurrency": int,
    "timeout": (int, float),
    "retries": int,
}


def read_judge_table(path: str) -> dict[str, Any]:
    """A run config's ``[judge]`` table (``spec = "openai:MODEL@URL"``, ``repeats = 2``, ...), checked:
    an unknown key or a value of the wrong type is one line naming the file and the key. The API key
    itself has no place in it: ``api_key_env`` names the environment variable that holds it."""
    from .io import read_toml

    table = read_toml(path).get(JUDGE_TABLE, {})
    if not isinstance(table, dict):
        raise UserError(f"{JUDGE_TABLE} must be a table of judge settings", path)
    out: dict[str, Any] = {}
    for key, value in table.items():
        dest = key.replace("-", "_")
        kind = JUDGE_KEYS.get(dest)
        if kind is None:
            raise UserError(f"[judge] {key}: unknown key (known: {', '.join(JUDGE_KEYS)})", path)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"[judge] {key}: expected {getattr(kind, '__name__', 'a number')}, got {value!r}", path)
        out[dest] = value
    return out


# ------------------------------------------------------------------------------------ task options
TASK_CONFIG_FLAG = Flag(
    "--task-config", 'task options as [task] tables, e.g. [vqav2] questions = "..."', metavar="TOML", path="if-exists"
)


def _resolve_table_paths(tables: dict[str, Any], base: Path) -> dict[str, Any]:
    """``[task]`` table values that name an existing path relative to the config file's folder."""
    out: dict[str, Any] = {}
    for section, values in tables.items():
        if not isinstance(values, dict):
            raise UserError(f"top-level key {section!r} must be a [task] table", base)
        out[section] = {
            k: str((base / v).resolve())
            if isinstance(v, str) and not Path(v).is_absolute() and (base / v).exists()
            else v
            for k, v in values.items()
        }
    return out


def cli_task_options(
    args: argparse.Namespace,
    config_tables: dict[str, Any],
    include_paths: Sequence[str] = (),
    task_config: str | None = None,
) -> dict[str, Any]:
    """--task-config tables, then --config tables, then task option flags (flags win), as the API takes them."""
    from .io import read_toml
    from .taskregistry import discover

    opts: dict[str, Any] = {}
    task_config = getattr(args, "task_config", None) or task_config
    if task_config:
        opts.update(_resolve_table_paths(read_toml(task_config), Path(task_config).resolve().parent))
    if config_tables:
        config = getattr(args, "config", None)
        base = Path(config).resolve().parent if config else Path.cwd()
        for section, values in _resolve_table_paths(config_tables, base).items():
            opts.setdefault(section, {}).update(values)
    given = {}
    for cls in discover(list(include_paths)).values():
        for key in cls.option_keys():
            if getattr(args, key, None) is not None:
                given[key] = getattr(args, key)
    return {**opts, **given}


# ------------------------------------------------------------------------------------ run's parser
class _RunParser(argparse.ArgumentParser):
    """``run``'s flags parsed outside the command line (:meth:`EvalConfig.from_cli` given a list): a bad
    flag is a :class:`UserError`, as on the command line."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(f"run: {message} (see `mmgpt-eval run --help`)")


def include_paths_from_argv(argv: Sequence[str]) -> list[str]:
    """The ``--include-path`` values in ``argv`` (task plugins whose options become flags)."""
    out = []
    for i, a in enumerate(argv):
        if a == "--include-path" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--include-path="):
            out.append(a.split("=", 1)[1])
    return out


def add_task_option_args(p: argparse.ArgumentParser, include_paths: list[str]) -> None:
    """Every task's declared options as flags (shared keys once)."""
    from .taskregistry import discover

    try:
        tasks = discover(include_paths)
    except UserError:
        tasks = discover([])  # reported properly when the command runs
    group = p.add_argument_group("task options (data paths etc.; also settable as [task] tables in --config)")
    seen: set[str] = set()
    for name in sorted(tasks):
        for o in tasks[name].OPTIONS:
            key = o.key(name)
            if key not in seen:
                seen.add(key)
                o.add_to(group, name)


def add_run_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """Every flag of ``mmgpt-eval run``: the model group, the run group, ``--task-config``, ``--config``,
    the generation group (no defaults: a run config fills what was not given) and the tasks' options."""
    add_flags(
        p.add_argument_group("model"),
        "model",
        defaults=False,
        overrides={"model": {"required": False, "default": None}},
    )
    add_flags(p, "run")
    add_flag(p, TASK_CONFIG_FLAG)
    p.add_argument(
        "--config",
        default=None,
        metavar="TOML",
        help="a run config: top-level keys are these flags, [task] tables task options; flags win",
    )
    add_flags(p.add_argument_group("generation"), "generation", defaults=False)
    add_task_option_args(p, include_paths_from_argv(argv))
