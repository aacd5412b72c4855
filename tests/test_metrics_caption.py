"""COCO caption metrics: equal to pycocoevalcap's own tokenizer + scorers, CIDEr properties, SPICE
note, Java handling. The Java tests share one module-scoped scoring run (METEOR's JVM starts once)."""

from __future__ import annotations

import contextlib
import io
import shutil

import numpy as np
import pytest

from mmgpt_eval.errors import UserError
from mmgpt_eval.metrics import caption
from mmgpt_eval.metrics.caption import score_captions, tokenize

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a Java runtime")

# Five hand-written images with five references each, and one prediction per image (one empty).
GTS = {
    "101": [
        "A brown dog runs across a grassy field.",
        "a dog running on the grass",
        "The dog is sprinting through a green park.",
        "A happy dog plays outside on a sunny day.",
        "Brown dog running in the grass with its tongue out.",
    ],
    "102": [
        "Two cats are sleeping on a red sofa.",
        "A pair of cats napping on a couch.",
        "two kittens curled up asleep on the sofa",
        "Cats lying together on red cushions.",
        "The two cats sleep side by side on a couch.",
    ],
    "103": [
        "A man rides a bicycle down a busy city street.",
        "a person riding a bike in traffic",
        "A cyclist pedals past cars on the road.",
        "Man on a bike going down the street, near buses.",
        "Someone biking through a crowded downtown area.",
    ],
    "104": [
        "A plate with a slice of pizza and a salad.",
        "pizza and salad served on a white plate",
        "A meal of pizza with a side of greens.",
        "A slice of cheese pizza next to some lettuce.",
        "Food on a plate: pizza, salad and a fork.",
    ],
    "105": [
        "A red double-decker bus parked by the curb.",
        "a large red bus on the side of the road",
        "The bus is stopped at a bus stop in London.",
        "Red tour bus waiting on a city street.",
        "A double decker bus with people walking by.",
    ],
}
RES = {
    "101": "a brown dog running through the grass",
    "102": "two cats sleeping on a red couch",
    "103": "A man riding a bike down the street.",
    "104": "",
    "105": "a red bus parked on the side of the street",
}


def _pycocoevalcap_reference(gts, res, meteor):
    """What COCOEvalCap.evaluate() does (minus SPICE), with pycocoevalcap's classes directly."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    g = tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()})
    r = tok.tokenize({k: [{"caption": res[k]}] for k in gts})
    out, per = {}, {}
    with contextlib.redirect_stdout(io.StringIO()):
        for scorer, names in (
            (Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]),
            (meteor, "METEOR"),
            (Rouge(), "ROUGE_L"),
            (Cider(), "CIDEr"),
        ):
            score, scores = scorer.compute_score(g, r)
            if isinstance(names, list):
                for n, sc, scs in zip(names, score, scores):
                    out[n], per[n] = sc, list(scs)
            else:
                out[names], per[names] = score, list(scores)
    return out, per


@pytest.fixture(scope="module")
def both():
    if shutil.which("java") is None:
        pytest.skip("needs a Java runtime")
    from pycocoevalcap.meteor.meteor import Meteor

    ref_meteor = Meteor()  # an independent METEOR JVM; it starts loading while ours runs
    try:
        ours = score_captions(GTS, RES)
        ref = _pycocoevalcap_reference(GTS, RES, ref_meteor)
    finally:
        ref_meteor.meteor_p.stdin.close()
        ref_meteor.meteor_p.kill()
        ref_meteor.meteor_p.wait()
    return ours, ref


@pytest.mark.java
def test_equals_pycocoevalcap(both):
    ours, (ref, ref_per) = both
    assert list(ours.corpus) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    for k, v in ref.items():
        assert ours.corpus[k] == pytest.approx(v, abs=1e-9, rel=0), k
        for i, img in enumerate(GTS):
            assert ours.per_image[img][k] == pytest.approx(ref_per[k][i], abs=1e-9, rel=0), (k, img)
    assert all(isinstance(v, float) for v in ours.corpus.values())
    assert 0.3 < ours.corpus["CIDEr"] < 3  # raw pycocoevalcap scale, not x100
    assert ours.n_images == 5


@pytest.mark.java
def test_empty_caption_scores_zero(both):
    ours, _ = both
    assert {k: v for k, v in ours.per_image["104"].items()} == {
        "Bleu_1": 0.0,
        "Bleu_2": 0.0,
        "Bleu_3": 0.0,
        "Bleu_4": 0.0,
        "METEOR": 0.0,
        "ROUGE_L": 0.0,
        "CIDEr": 0.0,
    }


@pytest.mark.java
def test_per_image_cider_mean_is_corpus(both):
    ours, _ = both
    per = list(ours.per_image_metric("CIDEr").values())
    assert np.mean(per) == pytest.approx(ours.corpus["CIDEr"], abs=1e-12)
    assert any("IDF computed over the 5 evaluated images" in n for n in ours.notes)


@pytest.mark.java
def test_spice_reported_unavailable(both):
    ours, _ = both
    assert "SPICE" in ours.spice and "CoreNLP 3.6.0" in ours.spice
    assert "SPICE" not in ours.corpus


@pytest.mark.java
def test_single_image_cider_is_zero():
    s = score_captions({"1": GTS["101"]}, {"1": RES["101"]}, metrics=("CIDEr",))
    assert s.corpus == {"CIDEr": 0.0}
    assert s.per_image == {"1": {"CIDEr": 0.0}}
    assert any("single evaluated image" in n for n in s.notes)


@pytest.mark.java
def test_subset_of_images_and_edge_cases():
    # only predicted images are scored; all-empty references do not crash CIDEr
    s = score_captions(
        {"1": ["", "..."], "2": [""], "3": ["unused"]}, {"1": "a dog", "2": ""}, metrics=("CIDEr", "ROUGE_L")
    )
    assert list(s.per_image) == ["1", "2"]
    assert s.corpus["CIDEr"] == 0.0 and any("no reference caption has any token" in n for n in s.notes)
    assert s.per_image["2"]["ROUGE_L"] == 1.0  # pycocoevalcap: "" vs "" (documented artefact)


@pytest.mark.java
def test_tokenize_line_breaks_and_readonly_fallback(monkeypatch):
    caps = {"a": ["Hello\rWorld.", "x\u2028y"], "b": ["A café, nice!", ""], "c": ["last\x0cone"]}
    expected = {"a": ["hello world", "x y"], "b": ["a café nice", ""], "c": ["last one"]}
    assert tokenize(caps) == expected  # without the replacement, captions would shift between images
    monkeypatch.setattr(caption.os, "access", lambda *a, **k: False)  # read-only pycocoevalcap install
    assert tokenize(caps) == expected


def test_java_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as e:
        score_captions({"1": ["a dog"]}, {"1": "a dog"})
    assert "apt-get install default-jre-headless" in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_inputs():
    if shutil.which("java") is None:
        pytest.skip("Java is checked first")
    with pytest.raises(UserError, match="no predicted captions"):
        score_captions({"1": ["a"]}, {})
    with pytest.raises(UserError, match=r"1 predicted images have no reference captions \(e.g. 9\)"):
        score_captions({"1": ["a"]}, {"9": "a"})
    with pytest.raises(UserError, match="unknown caption metrics"):
        score_captions({"1": ["a"]}, {"1": "a"}, metrics=("SPICE",))
    with pytest.raises(UserError, match="not a string"):
        score_captions({"1": ["a"]}, {"1": None})


def test_meteor_process_failure_is_a_user_error(monkeypatch):
    """A METEOR JVM that dies (e.g. cannot reserve its 2 GB heap) gives a one-line UserError, not a
    hang or a traceback, and is dropped so that the next call starts a fresh one."""
    import subprocess
    import sys
    import threading

    from pycocoevalcap.meteor.meteor import Meteor

    m = Meteor.__new__(Meteor)
    m.lock = threading.Lock()
    m.meteor_p = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stderr.write('Error: Could not reserve enough space for object heap\\n')",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    m.meteor_p.wait()
    monkeypatch.setattr(caption, "get_meteor", lambda: m)
    monkeypatch.setattr(caption, "_METEOR", m)
    with pytest.raises(UserError, match="METEOR .* failed: Error: Could not reserve enough space"):
        caption._meteor_scores({"1": ["a dog"]}, {"1": ["a dog"]})
    assert caption._METEOR is None
    assert not m.lock.locked()
