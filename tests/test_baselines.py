"""mmgpt_eval/baselines/openflamingo.toml (shipped in the package): every published row has its numbers,
its protocol as the cited code ran it and its comparability; mmgpt_eval.published shows a row beside a
measured number only when task, model preset, shots and protocol match (run summary, compare, report),
and says why otherwise."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest

from mmgpt_eval import published as pubmod
from mmgpt_eval.errors import UserError
from mmgpt_eval.model.spec import list_presets, load_spec
from mmgpt_eval.published import Match, load, notes_for, parse, published_rows_for, run_preset
from mmgpt_eval.results import RunResults, TaskResult

from fakeruns import make_run

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "mmgpt_eval" / "baselines" / "openflamingo.toml"
SHA = re.compile(r"^[0-9a-f]{40}$")


# ------------------------------------------------------------------------------------------ the file
def test_every_row_has_numbers_protocol_and_comparability():
    from mmgpt_eval.taskregistry import discover

    pub = load(FILE)  # validates every field (types, lengths, choices)
    raw = tomllib.loads(FILE.read_text())["row"]
    assert len(pub.rows) == len(raw) >= 7
    presets, tasks = set(list_presets()), discover()
    for r, d in zip(pub.rows, raw):
        assert r.preset in presets and r.task in tasks, r.id
        assert r.metric in tasks[r.task]({}).metric_info(), r.id  # an mmgpt-eval metric name
        assert len(r.shots) == len(r.values) >= 1 and all(v > 0 for v in r.values), r.id
        assert r.std is None or len(r.std) == len(r.shots)
        assert set(pubmod.PROTOCOL_TEXT) | set(pubmod.PROTOCOL_NUMBERS) <= set(d["protocol"]), r.id
        assert all(str(d["protocol"][k]).strip() for k in pubmod.PROTOCOL_TEXT + pubmod.PROTOCOL_NUMBERS)
        assert SHA.match(r.source_commit) and SHA.match(r.protocol["commit"]), r.id
        assert r.comparable_to_protocol in ("openflamingo", "none") and len(r.comparability_note) > 40, r.id
        assert r.verified and r.verification, r.id  # every value in the file was read at its source
        if r.comparable_to_protocol == "openflamingo":  # the row's protocol is what --protocol openflamingo runs
            from mmgpt_eval.templates import get_template

            t = get_template(tasks[r.task].openflamingo_template)
            assert t.demo_separator == {"newline": "\n", "none": ""}[r.protocol["demo_separator"]], r.id
            s = t.settings
            assert (s.length_penalty, s.num_beams, s.max_new_tokens) == (
                r.protocol["length_penalty"],
                r.protocol["num_beams"],
                r.protocol["max_new_tokens"],
            ), r.id
            assert r.protocol["demo_selection"] == "random" and r.protocol["zero_shot_mode"] == "text-demos"
    by_id = {r.id: r for r in pub.rows}
    assert by_id["v1-card-coco"].values == (65.52, 74.28, 79.26, 81.84, 84.52)
    assert by_id["v1-card-vqav2"].values == (43.55, 44.05, 47.5, 48.87, 50.34)
    for rid in ("v1-card-coco", "v1-card-vqav2"):  # the March 2023 script: not what mmgpt-eval runs
        p = by_id[rid].protocol
        assert by_id[rid].comparable_to_protocol == "none" and p["demo_separator"] == "none"
        assert p["length_penalty"] == -2.0 and "train" in by_id[rid].split
    assert "Short Answer:" in by_id["v1-card-vqav2"].protocol["prompt"]
    for rid in ("v2-card-coco", "v2-card-vqav2"):  # the v2 card: every shot count
        assert by_id[rid].shots == (0, 4, 8, 16, 32) and by_id[rid].std is not None
    assert by_id["v2-card-coco"].values[1] == 89.0 and by_id["v2-readme-coco"].values == (89.0,)
    # the README / model card disagreement is data: both rows, and the disagreement with its history
    assert by_id["v2-card-vqav2"].value_at(4) == 49.4 and by_id["v2-readme-vqav2"].value_at(4) == 54.8
    (d,) = [d for d in pub.disagreements if d.task == "vqav2" and d.shots == 4]
    assert {49.4, 54.8} <= {v for v, _ in d.entries} and d.preset == "openflamingo-9b-mpt7b"
    assert any(u.preset == "openflamingo-9b-mpt7b" and "okvqa" in u.tasks for u in pub.unread)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["row"][0].pop("values"), "row 1 (v1-card-coco): 'values' must be"),
        (lambda d: d["row"][0].update(values=[1.0]), "5 shots but 1 values"),
        (lambda d: d["row"][1]["protocol"].pop("length_penalty"), "row 2 (v1-card-vqav2) protocol: 'length_penalty'"),
        (lambda d: d["row"][2].update(comparable_to_protocol="maybe"), "comparable_to_protocol = 'maybe': choose from"),
        (lambda d: d["row"][2]["protocol"].update(demo_separator="space"), "demo_separator = 'space'"),
        (lambda d: d["row"][0].update(verified="yes"), "'verified' must be true or false"),
        (lambda d: d["row"][0].update(shots=[0, 0, 8, 16, 32]), "distinct non-negative integers"),
        (lambda d: d["row"][3].update(id="v1-card-coco"), "row id 'v1-card-coco' is used twice"),
        (lambda d: d["row"][0].update(colour="red"), "unknown key(s) colour"),
        (lambda d: d["disagreement"][0].update(entries=[{"value": 1.0, "source": "x"}]), "disagreement 1:"),
    ],
)
def test_a_bad_file_is_one_line_naming_it(tmp_path, edit, message):
    data = tomllib.loads(FILE.read_text())
    edit(data)
    with pytest.raises(UserError) as e:
        parse(data, tmp_path / "published.toml")
    text = str(e.value)
    assert "\n" not in text and text.startswith(str(tmp_path / "published.toml")) and message in text, text
    bad = tmp_path / "bad.toml"
    bad.write_text("[[row]]\nid = \n")
    with pytest.raises(UserError, match="bad.toml: malformed TOML"):
        load(bad)


# ------------------------------------------------------------------------------------------ matching
def _result(task: str, metric: str, value: float, shots: int, n: int = 50, available: int = 50) -> TaskResult:
    return TaskResult(
        task=task,
        version="1",
        metrics={metric: value},
        metric_info={metric: {"kind": "corpus"}},
        primary_metric=metric,
        n_samples=n,
        n_available=available,
        limit=None,
        subset="all samples",
        template={"name": "of-caption", "sha256": "0" * 64},
        generation={},
        num_fewshot=shots,
    )


def _run(
    task: str = "coco",
    metric: str = "CIDEr",
    value: float = 0.9,
    *,
    preset: str = "openflamingo-9b-mpt7b",
    shots: int = 4,
    protocol: str = "openflamingo",
    checkpoint=None,
    **run_extra,
) -> RunResults:
    spec = load_spec(preset).to_dict() if preset in list_presets() else {"name": preset}
    run = {
        "argv": [],
        "protocol": protocol,
        "num_fewshot": shots,
        "fewshot_selection": "random",
        "fewshot_zero_mode": "text-demos",
        "generation_overrides": {},
        **run_extra,
    }
    return RunResults(
        run=run,
        model={"model_spec": spec, "checkpoint": checkpoint},
        tasks={task: _result(task, metric, value, shots)},
        provenance={},
    )


def _synthetic(tmp_path: Path, comparable: str = "openflamingo") -> pubmod.Published:
    """The real file plus one COCO 4-shot row that compares with --protocol openflamingo."""
    data = tomllib.loads(FILE.read_text())
    row = copy.deepcopy(next(r for r in data["row"] if r["id"] == "v2-readme-vqav2"))
    row.update(
        id="test-coco", task="coco", metric="CIDEr", scale="x100", values=[90.0], comparable_to_protocol=comparable
    )
    data["row"].append(row)
    return parse(data, tmp_path / "published.toml")


def _one(matches: list[Match], rid: str) -> Match:
    (m,) = [m for m in matches if m.row.id == rid]
    return m


def test_a_row_compares_only_when_task_preset_shots_and_protocol_match(tmp_path):
    pub = _synthetic(tmp_path)
    m = _one(published_rows_for(_run(value=0.912), published=pub), "test-coco")
    assert m.compares and m.reasons == [] and m.published == 90.0
    assert m.measured == pytest.approx(91.2) and m.measured_raw == 0.912 and m.delta == pytest.approx(1.2)
    assert any("x100" in c for c in m.caveats) and any("1 trial" in c for c in m.caveats)
    cases = {
        "protocol": (_run(protocol="mmgpt-eval"), "--protocol mmgpt-eval"),
        "shots": (_run(shots=3), "published at 4 shots; this run used 3"),
        "preset": (
            _run(preset="mmgpt-9b-v0"),
            "published for preset openflamingo-9b-mpt7b; this run evaluated preset mmgpt-9b-v0",
        ),
        "checkpoint": (_run(checkpoint={"path": "/x/lora.pt"}), "checkpoint lora.pt"),
        "selection": (_run(fewshot_selection="rices"), "demos by rices"),
        "decoding": (_run(generation_overrides={"num_beams": 1}), "num_beams=1"),
        "unknown model": (_run(preset="my-model.toml"), "not one of the presets"),
    }
    for name, (run, why) in cases.items():
        m = _one(published_rows_for(run, published=pub), "test-coco")
        assert not m.compares and any(why in r for r in m.reasons), (name, m.reasons)
    # a task with no row gets nothing; a row of another task is not considered
    assert published_rows_for(_run(task="easyvqa", metric="accuracy"), published=pub) == []
    assert {m.row.task for m in published_rows_for(_run(), published=pub)} == {"coco"}
    # rows the file marks "none" never compare, and say why
    m = _one(published_rows_for(_run(), published=pub), "v2-readme-coco")
    assert not m.compares and any("not one mmgpt-eval runs" in r for r in m.reasons)
    # the real file: VQAv2 4-shot of OpenFlamingo-9B v2 under --protocol openflamingo compares with the README row
    real = load(FILE)
    ms = published_rows_for(_run("vqav2", "accuracy", 53.1), published=real)
    assert [m.row.id for m in ms if m.compares] == ["v2-readme-vqav2"]
    assert _one(ms, "v2-readme-vqav2").delta == pytest.approx(53.1 - 54.8)
    assert any("49.4" in n and "54.8" in n for n in notes_for(_run("vqav2", "accuracy", 53.1), real))
    assert not any(
        m.compares for m in published_rows_for(_run("vqav2", "accuracy", 53.1, protocol="mmgpt-eval"), published=real)
    )


def test_zero_shots_need_the_text_demos_and_subsets_and_trials_are_caveats(tmp_path):
    data = tomllib.loads(FILE.read_text())
    row = copy.deepcopy(next(r for r in data["row"] if r["id"] == "v2-readme-vqav2"))
    row.update(id="test-0", shots=[0, 4], values=[40.0, 50.0])
    data["row"].append(row)
    pub = parse(data, tmp_path / "p.toml")
    assert _one(published_rows_for(_run("vqav2", "accuracy", 41.0, shots=0), published=pub), "test-0").compares
    m = _one(
        published_rows_for(_run("vqav2", "accuracy", 41.0, shots=0, fewshot_zero_mode="none"), published=pub), "test-0"
    )
    assert not m.compares and any("--fewshot-zero-mode none" in r for r in m.reasons)
    run = _run("vqav2", "accuracy", 51.0, trials={"seeds": [42, 43, 44]})
    run.tasks["vqav2"].n_samples, run.tasks["vqav2"].subset = 10, "10 of 50 samples drawn as OpenFlamingo draws them"
    m = _one(published_rows_for(run, published=pub), "test-0")
    assert m.compares and any("10 of 50" in c for c in m.caveats) and any("3 trials" in c for c in m.caveats)


def test_the_preset_of_a_spec_file(tmp_path):
    spec = load_spec("openflamingo-9b-mpt7b").to_dict()
    local = dict(
        spec,
        name=str(tmp_path / "of.toml"),
        lm="/models/mpt-7b",
        tokenizer="/models/mpt-7b",
        openflamingo_checkpoint="/models/of9b/checkpoint.pt",
    )
    run = RunResults(run={}, model={"model_spec": local}, tasks={}, provenance={})
    preset, how = run_preset(run)
    assert preset == "openflamingo-9b-mpt7b" and "architecture" in how
    run.model["model_spec"] = dict(local, openflamingo_checkpoint="hf://someone/else/checkpoint.pt")
    assert run_preset(run)[0] is None
    run.model["model_spec"] = dict(local, cross_attn_every_n_layers=1)
    assert run_preset(run)[0] is None
    run.model["model_spec"] = {"name": "mmgpt-9b-v0"}
    assert run_preset(run) == ("mmgpt-9b-v0", "")


def test_preset_architecture_read_as_data_equals_the_model_spec():
    """published matches presets through mmgpt_eval.presets (no model code): the architecture it reads
    from each preset file is the one ModelSpec builds, defaults included."""
    import dataclasses

    from mmgpt_eval.model.spec import ModelSpec
    from mmgpt_eval.presets import ARCHITECTURE_DEFAULTS, ARCHITECTURE_KEYS, architecture, preset_table

    defaults = {f.name: f.default for f in dataclasses.fields(ModelSpec) if f.default is not dataclasses.MISSING}
    assert ARCHITECTURE_DEFAULTS == {k: defaults[k] for k in ARCHITECTURE_KEYS if k in defaults}
    for name in list_presets():
        spec = load_spec(name).to_dict()
        assert architecture(preset_table(name)) == {k: spec[k] for k in ARCHITECTURE_KEYS}, name
        assert preset_table(name).get("openflamingo_checkpoint") == spec["openflamingo_checkpoint"], name


def test_the_published_numbers_ship_inside_the_package():
    assert pubmod.default_path() == FILE.resolve() and pubmod.load_default().path == FILE.resolve()
    assert not (ROOT / "baselines").exists()  # one copy


# ------------------------------------------------------------------------------------------ report and CLI
def _report_run(tmp_path: Path, name: str, *, shots: int = 4, protocol: str = "openflamingo") -> Path:
    out = make_run(tmp_path / name, {"CIDEr": [0.95, 0.85, 0.9, 0.88]}, task="coco", kind="corpus", scale=1.0)
    doc = json.loads((out / "results.json").read_text())
    doc["run"].update(
        protocol=protocol,
        num_fewshot=shots,
        fewshot_selection="random",
        fewshot_zero_mode="text-demos",
        generation_overrides={},
    )
    doc["model"]["model_spec"] = {"name": "openflamingo-9b-mpt7b"}
    doc["tasks"]["coco"]["num_fewshot"] = shots
    (out / "results.json").write_text(json.dumps(doc))
    return out


def test_the_report_shows_a_published_row_only_where_it_compares(tmp_path):
    from mmgpt_eval.report import build_report

    pub = _synthetic(tmp_path)
    good = RunResults.load(_report_run(tmp_path, "good"))
    html = build_report([good], published=pub, n_resamples=200)
    section = html.split('<section id="published">', 1)[1].split("</section>", 1)[0]
    compare = section.split('id="published-compare"', 1)[1].split("</table>", 1)[0]
    assert 'data-row="test-coco"' in compare and "89.5" in compare and "90" in compare  # measured 0.895 x100
    assert 'data-row="v2-readme-coco"' not in compare and 'data-row="v1-card-coco"' not in compare
    assert 'data-row="v2-readme-coco"' in section  # listed with its reason instead
    assert "x100" in section or "×100" in section
    for name, kwargs, why in (
        ("proto", {"protocol": "mmgpt-eval"}, "this run used --protocol mmgpt-eval"),
        ("shots", {"shots": 3}, "published at 4 shots; this run used 3"),
    ):
        html = build_report([RunResults.load(_report_run(tmp_path, name, **kwargs))], published=pub, n_resamples=200)
        section = html.split('<section id="published">', 1)[1].split("</section>", 1)[0]
        assert 'id="published-compare"' not in section and "No published row compares" in section
        other = section.split('id="published-other"', 1)[1]
        assert 'data-row="test-coco"' in other and why in other
    # the shipped file: COCO rows exist for this preset but none compares; each says why
    html = build_report([good], n_resamples=200)
    section = html.split('<section id="published">', 1)[1].split("</section>", 1)[0]
    assert 'id="published-compare"' not in section and 'data-row="v2-card-coco"' in section
    # a run of a task nobody published gets no section
    plain = RunResults.load(make_run(tmp_path / "plain", {"accuracy": [1, 0, 1]}))
    assert '<section id="published">' not in build_report([plain], published=pub, n_resamples=200)
    # a malformed file is an error box, not a crash
    bad = tmp_path / "bad.toml"
    bad.write_text("[[row]]\nid = 'x'\n")
    html = build_report([good], published=bad, n_resamples=200)
    assert "Published numbers not shown" in html and "bad.toml" in html


def test_compare_and_run_summary_print_the_published_rows(tmp_path, capsys, monkeypatch):
    from mmgpt_eval.cli import main
    from mmgpt_eval.cli.run import print_published_numbers

    pub = _synthetic(tmp_path)
    monkeypatch.setattr(pubmod, "load_default", lambda: pub)
    a, b = _report_run(tmp_path, "a"), _report_run(tmp_path, "b", shots=3)
    assert main(["compare", str(a), str(b), "--resamples", "200", "--json", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    assert "published OpenFlamingo numbers that compare" in out and "test-coco" in out
    pj = json.loads((tmp_path / "cmp.json").read_text())["runs"][0]["published"]  # the same matches, for scripts
    base_row = next(m for m in pj["baseline"] if m["row"] == "test-coco")
    cand_row = next(m for m in pj["candidate"] if m["row"] == "test-coco")
    assert base_row["compares"] and base_row["published"] == 90.0
    assert not cand_row["compares"] and any("this run used 3" in r for r in cand_row["reasons"])
    assert re.search(
        r"not compared: test-coco .* vs openflamingo-9b-mpt7b \(b\): .*published at 4 shots; this run used 3", out
    )
    print_published_numbers(RunResults.load(b))
    out = capsys.readouterr().out
    assert "none compares with this run" in out and "published at 4 shots; this run used 3" in out
    print_published_numbers(RunResults.load(make_run(tmp_path / "plain", {"accuracy": [1, 0]})))
    assert capsys.readouterr().out == ""  # nothing published for the task: nothing printed
