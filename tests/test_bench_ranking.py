"""``mmgpt-eval bench --ranking`` (mmgpt_eval_dev/bench_ranking.py): OpenFlamingo's
``get_rank_classifications(use_cache=True)`` loop and mmgpt-eval's Ranker agree on OpenFlamingo's ImageNet
0-shot workload (padded contexts included); the summary says so; the command fails when they do not.
Small sizes only: no timings are checked here."""

from __future__ import annotations

import json

import pytest
import torch

from mmgpt_eval_dev import bench_ranking as BR
from mmgpt_eval.cli import main
from mmgpt_eval.model.generate import Generator
from mmgpt_eval_dev.peers.openflamingo import OpenFlamingoEvalModel

N_IMAGES = 9  # two OpenFlamingo batches of 8: one with left-padded rows, one of a single row


# thousands of tiny forwards: two threads on a busy 2-core machine make them several times slower
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # (conftest.py)


@pytest.fixture(scope="module")
def embedded():
    from mmgpt_eval.api import EMBEDDED_DEFAULT, LoadOptions, load

    return load(EMBEDDED_DEFAULT["model"], EMBEDDED_DEFAULT["ckpt"], LoadOptions(device="cpu"))


def test_workload_is_openflamingos_imagenet_zero_shot():
    names = BR.class_names()
    assert len(names) == 1000 and BR.class_names(5) == names[:5]
    ctx = BR.build_workload(4, seed=0, names=names)
    assert ctx == BR.build_workload(4, seed=0, names=names)  # fixed seed
    assert len({c.images[-1].key for c in ctx}) == 4  # distinct query images
    for c in ctx:
        # two text-only demos, joined with no separator, then the query; demo images passed before it
        a, b = c.demo_classes
        assert c.text == f"Output:{a}<|endofchunk|>Output:{b}<|endofchunk|><image>Output:"
        assert len(c.images) == 3 and c.images[-1].key.startswith("easyvqa:test:")
        assert all(k.startswith("easyvqa:train:") for k in c.keys[:2]) and a in names and b in names


def test_openflamingo_loop_and_ranker_agree(embedded):
    names = BR.class_names(10)
    ctx = BR.build_workload(N_IMAGES, seed=0, names=names)
    assert BR.padded_rows(embedded.tokenizer, ctx) > 0
    em = OpenFlamingoEvalModel(embedded, cached_mask="extended", record=False)
    ref = BR.loop_openflamingo(em, ctx, names)
    assert ref.shape == (N_IMAGES, len(names))
    gen = Generator(embedded)
    for bs in (8, 64):
        out = BR.loop_ranker(gen, ctx, names, bs)
        c = BR.compare(ref, out)
        assert c["images_with_different_top5"] == 0
        assert c["max_abs_logprob_diff"] <= BR.TOLERANCE
        assert BR.top_k_order(out) == BR.top_k_order(ref)


def test_top_k_order_and_compare():
    s = torch.tensor([[0.0, 2.0, 2.0, 1.0, -1.0, 3.0]])
    assert BR.top_k_order(s, 4) == [[5, 1, 2, 3]]  # ties keep index order
    moved = s.clone()
    moved[0, 3] = 2.5
    c = BR.compare(s, moved)
    assert c["images_with_different_top5"] == 1 and c["max_abs_logprob_diff"] == pytest.approx(1.5)
    assert c["images_with_logprob_diff_over_tolerance"] == 1


def test_summary_reports_identical_outputs(embedded):
    s = BR.run_ranking_bench(
        embedded,
        n_images=N_IMAGES,
        n_classes=4,
        batch_size=0,
        repeats=1,
        warmup_images=1,
        warmup_classes=1,
        upstream_mask=True,
    )
    assert s["outputs_identical"] is True and s["ranks_identical"] is True
    assert s["max_abs_logprob_diff"] <= s["tolerance"] == 1e-4
    assert list(s["loops"]) == [BR.OF_LOOP, "mmgpt-eval-rank-b8", "mmgpt-eval-rank-auto"]
    assert s["loops"][BR.OF_LOOP]["batch_size"] == 8 and s["loops"]["mmgpt-eval-rank-b8"]["batch_size"] == 8
    assert s["loops"]["mmgpt-eval-rank-auto"]["batch_size"] == Generator(embedded).batch_cap(0)
    for r in s["loops"].values():
        assert len(r["seconds"]) == 1 and r["min_s"] <= r["median_s"] <= r["max_s"]
    assert s["ratio_vs_openflamingo_rank"] > 0 and s["ratio_vs_openflamingo_rank_matched_batch"] > 0
    assert s["images"] == N_IMAGES and s["classes"] == 4 and s["padded_contexts_at_batch_8"] > 0
    assert s["target_met"] == (s["ratio_vs_openflamingo_rank"] >= 3.0)
    # OpenFlamingo's own mask (attention_mask=None) differs on padded rows: reported, not compared
    assert s["upstream_mask"]["images_with_logprob_diff_over_tolerance"] > 0
    json.dumps(s)


def _cli(tmp_path, name):
    out = tmp_path / f"{name}.json"
    rc = main(
        [
            "-q",
            "bench",
            "--ranking",
            "--limit",
            "3",
            "--classes",
            "4",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--skip-upstream-mask",
            "--output",
            str(out),
        ]
    )
    return rc, json.loads(out.read_text())


def test_cli_exit_code_follows_identity(tmp_path, monkeypatch, capsys):
    rc, s = _cli(tmp_path, "same")
    assert rc == 0 and s["outputs_identical"] is True and s["model"] == "tiny-openflamingo"
    assert "upstream_mask" not in s
    text = capsys.readouterr().out
    assert "outputs identical: True" in text and "target >= 3x at batch auto" in text

    real = BR.loop_ranker

    def off_by_a_bit(*args, **kwargs):
        out = real(*args, **kwargs)
        out[0, 0] += 1e-3  # beyond the 1e-4 tolerance, top-5 order unchanged or not
        return out

    monkeypatch.setattr(BR, "loop_ranker", off_by_a_bit)
    rc, s = _cli(tmp_path, "differ")
    assert rc == 1 and s["outputs_identical"] is False and s["max_abs_logprob_diff"] > 1e-4
    assert "outputs identical: False" in capsys.readouterr().out


def test_cli_rejects_an_impossible_image_count_before_loading(monkeypatch, capsys):
    import mmgpt_eval.cli.common as common

    monkeypatch.setattr(common, "load_from_args", lambda *a, **k: pytest.fail("model loaded before the check"))
    for n in ("0", "100000"):
        assert main(["-q", "bench", "--ranking", "--limit", n]) == 2
        err = capsys.readouterr().err
        assert "--limit must be between 1 and" in err and "Traceback" not in err
