"""Protocols are strategy objects (mmgpt_eval.protocols): the runner and the tasks hold no protocol
branches, a protocol acts on what tasks declare, and a new protocol is one file."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import mmgpt_eval.protocols as protocols
from mmgpt_eval.config import EvalConfig
from mmgpt_eval.errors import UserError
from mmgpt_eval.taskapi import Request
from mmgpt_eval.templates import get_template

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmgpt_eval"


def _protocol_strings() -> set[str]:
    return set(protocols.names())


def _protocol_value(node: ast.AST) -> bool:
    """An operand that is a run's protocol: ``cfg.protocol``, ``run.get("protocol")``, ``run["protocol"]``."""
    if isinstance(node, ast.Attribute):
        return node.attr == "protocol"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return any(isinstance(a, ast.Constant) and a.value == "protocol" for a in node.args[:1])
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "protocol"
    if isinstance(node, ast.BoolOp):  # run.get("protocol") or "mmgpt-eval"
        return any(map(_protocol_value, node.values))
    return False


def _mentions_protocol(node: ast.AST) -> bool:
    return _protocol_value(node) or (isinstance(node, ast.Name) and node.id.endswith("protocol"))


def _offences(path: Path, names: set[str], root: Path = ROOT) -> list[str]:
    """Branches on the running protocol: a comparison of a run's protocol (``cfg.protocol``,
    ``run.get("protocol")``) with anything, or of a protocol's name with a variable named for a protocol.
    (``"openflamingo"`` is also a checkpoint format and a VQA normalisation mode: those comparisons are not
    protocol branches.)"""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
            consts = {
                c.value for p in parts for c in ast.walk(p) if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
            if any(map(_protocol_value, parts)) or (consts & names and any(map(_mentions_protocol, parts))):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Match) and _mentions_protocol(node.subject):
            found.append(f"{path.relative_to(root)}:{node.lineno}: match on a protocol")
    return found


def test_no_protocol_string_comparisons_outside_protocols():
    names = _protocol_strings()
    assert names >= {"mmgpt-eval", "openflamingo"}
    files = [p for p in PACKAGE.rglob("*.py") if "protocols" not in p.relative_to(PACKAGE).parts]
    files += list((ROOT / "tasks").rglob("*.py"))
    offences = [o for p in files for o in _offences(p, names)]
    assert not offences, "protocol branches outside mmgpt_eval/protocols/:\n" + "\n".join(offences)


def test_the_check_catches_a_branch(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        'if cfg.protocol == "x":\n    pass\nok = protocol in ("openflamingo", "b")\n'
        'fine = mode == "openflamingo"\nalso = run.get("protocol") != "mmgpt-eval"\n'
    )
    assert len(_offences(bad, {"openflamingo", "mmgpt-eval"}, tmp_path)) == 3


def test_runner_writes_no_task_state():
    """The runner configures no task: no assignment to task.options / .protocol / .pool_limit."""
    tree = ast.parse((PACKAGE / "runner.py").read_text())
    for node in ast.walk(tree):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, (ast.AugAssign, ast.AnnAssign))
            else []
        )
        for t in targets:
            base = t.value if isinstance(t, ast.Subscript) else t
            assert not (isinstance(base, ast.Attribute) and base.attr in ("options", "protocol", "pool_limit")), (
                f"runner.py:{node.lineno}: {ast.unparse(node)}"
            )


def test_registry_and_unknown_protocol():
    assert protocols.names()[0] == "mmgpt-eval"
    assert protocols.get("openflamingo").pool_limit is None and protocols.get("mmgpt-eval").pool_limit == 2048
    with pytest.raises(UserError, match="unknown protocol 'nope'; known: mmgpt-eval, openflamingo"):
        protocols.get("nope")


def test_a_third_protocol_is_one_file(tmp_path, monkeypatch):
    (tmp_path / "firsttwo.py").write_text(
        textwrap.dedent('''
        """Evaluate the first two samples of each task, in file order."""
        from mmgpt_eval.protocols.native import Native


        class FirstTwo(Native):
            name = "first-two"

            def subset(self, task, samples, cfg):
                return samples[:2]

            def subset_description(self, pt, cfg):
                return "the first 2 samples"
    ''')
    )
    monkeypatch.setattr(protocols, "__path__", [*protocols.__path__, str(tmp_path)])
    monkeypatch.setattr(protocols, "_REGISTRY", {})
    monkeypatch.delitem(sys.modules, "mmgpt_eval.protocols.firsttwo", raising=False)
    try:
        assert "first-two" in protocols.names()
        cfg = EvalConfig.from_cli(["--protocol", "first-two", "--tasks", "easyvqa"])
        assert cfg.protocol == "first-two"
        from mmgpt_eval.api import prepare_tasks

        pt = prepare_tasks("easyvqa", cfg)[0]
        assert len(pt.samples) == 2 and pt.samples == pt.population[:2]
    finally:
        protocols._REGISTRY.clear()


def test_openflamingo_post_processing_is_a_task_declaration(monkeypatch):
    """OK-VQA declares its OpenFlamingo post-processing by name; the protocol applies it."""
    from mmgpt_eval.protocols import openflamingo
    from mmgpt_eval.taskregistry import discover

    okvqa = discover()["okvqa"]
    assert okvqa.openflamingo_postprocess == "okvqa-stemming"
    monkeypatch.setitem(openflamingo.POSTPROCESS, "okvqa-stemming", lambda text: f"<{text.strip()}>")
    gen = SimpleNamespace(text=" cats ", full_text="Answer: cats ")
    req = Request("main", "Question: q Short answer:", [], get_template("of-vqa"))
    of_task = protocols.get("openflamingo").make_task(okvqa, {})
    assert of_task.postprocess(req, gen) == "<cats>"
    assert of_task.options["vqa_normalization"] == "openflamingo"  # its openflamingo_options
    own = protocols.get("mmgpt-eval").make_task(okvqa, {})
    assert own.postprocess(req, gen) == req.template.extract(gen.full_text, gen.text)
    with pytest.raises(UserError, match="sets okvqa's normalization to openflamingo, not official"):
        protocols.get("openflamingo").make_task(okvqa, {"vqa_normalization": "official"})


def test_protocol_validation():
    of = protocols.get("openflamingo")
    with pytest.raises(UserError, match="--of-num-samples / --of-query-set-size need --protocol openflamingo"):
        protocols.get("mmgpt-eval").check(EvalConfig(of_query_set_size=16))
    of.check(EvalConfig(protocol="openflamingo", of_num_samples=5))
    assert of.resolve(EvalConfig(protocol="openflamingo")).seed == 42
    assert protocols.get("mmgpt-eval").resolve(EvalConfig()).seed == 0
    assert of.run_info(EvalConfig(protocol="openflamingo", seed=42)) == {
        "protocol": "openflamingo",
        "of_num_samples": None,
        "of_query_set_size": 2048,
    }
    assert protocols.get("mmgpt-eval").run_info(EvalConfig()) == {"protocol": "mmgpt-eval"}
    assert protocols.get("mmgpt-eval").fingerprint_extras(EvalConfig()) == {}
