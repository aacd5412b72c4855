"""One evaluated sample as the per-sample log stores it (``OUTDIR/samples/<task>.jsonl``).

The log's first line is a header ``{"mmgpt-eval/samples": {"version", "task", "fingerprint"}}``; every
other line is a :class:`SampleRecord`. Runner, compare, report and gate read records through this
class. Version 1 is the layout every mmgpt-eval so far has written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import UserError
from .io import iter_jsonl

SAMPLES_SCHEMA = "mmgpt-eval/samples"
SAMPLES_VERSION = 1


@dataclass
class SampleRecord:
    id: str
    prompt_sha256: str
    template: str
    template_sha256: str
    prompt: str
    images: list[str]  # image keys (paths or procedural keys), in prompt order
    raw: str  # the generated text as decoded
    prediction: str  # after the task's post-processing
    references: Any
    metrics: dict[str, Any]  # per-sample metric values (keys: MetricInfo.per_sample)
    generated_tokens: int
    stopped_on_eos: bool | None  # None: a ranking (nothing generated)
    meta: dict[str, Any] = field(default_factory=dict)
    # every request of a multi-request sample (dialogue turns, grounding probes) by key
    outputs: dict[str, dict[str, Any]] | None = None
    # a ranking sample: the best candidates, best first, each {"candidate", "score", "sum_logprob", "n_tokens"}
    ranking: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for optional in ("outputs", "ranking"):
            if d[optional] is None:
                del d[optional]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: Any = "samples") -> "SampleRecord":
        if not isinstance(d, dict) or "id" not in d:
            raise UserError("a per-sample record must be a JSON object with an id", where)
        defaults: dict[str, Any] = {
            "prompt_sha256": "",
            "template": "",
            "template_sha256": "",
            "prompt": "",
            "images": [],
            "raw": "",
            "prediction": "",
            "references": None,
            "metrics": {},
            "generated_tokens": 0,
            "stopped_on_eos": False,
        }
        known = {f.name for f in fields(cls)}
        kw = {**defaults, **{k: v for k, v in d.items() if k in known}}
        kw["id"] = str(kw["id"])
        if not isinstance(kw["metrics"], dict):
            raise UserError(f"record {kw['id']}: metrics must be an object", where)
        return cls(**kw)

    def output(self, key: str) -> dict[str, Any] | None:
        """The stored output of request ``key`` ("main" for single-request samples)."""
        if self.outputs and key in self.outputs:
            return self.outputs[key]
        if key == "main" and not self.outputs:
            return {
                "prompt": self.prompt,
                "raw": self.raw,
                "prediction": self.prediction,
                "image_keys": self.images,
                "prompt_sha256": self.prompt_sha256,
            }
        return None


def samples_header(task: str, fingerprint: str) -> dict[str, Any]:
    return {SAMPLES_SCHEMA: {"version": SAMPLES_VERSION, "task": task, "fingerprint": fingerprint}}


def is_header(obj: Any) -> bool:
    return isinstance(obj, dict) and SAMPLES_SCHEMA in obj


def read_samples(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a per-sample log as dicts (header skipped)."""
    return [obj for _, obj in iter_jsonl(path) if not is_header(obj)]


def read_records(path: str | os.PathLike) -> list[SampleRecord]:
    """The records of a per-sample log, typed."""
    return [SampleRecord.from_dict(obj, (path, line)) for line, obj in iter_jsonl(path) if not is_header(obj)]


@dataclass
class PredictionRecord:
    """One line of ``mmgpt-eval predict``'s output: the answer to one input case."""

    id: Any
    text: str  # after the template's answer extraction
    token_ids: list[int]
    prompt_hash: str  # sha256 of the prompt and the images' file hashes

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
