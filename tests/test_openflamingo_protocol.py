"""--protocol openflamingo: the draws (evaluation subset, loader order, query set, demos) equal what
OpenFlamingo's own utilities (open_flamingo/eval/utils.py, imported from the installed package) draw,
and the protocol's flags are checked before anything loads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mmgpt_eval.cli import main
from mmgpt_eval.protocols.openflamingo import draws, eval_subset


@pytest.fixture(scope="module")
def of_utils():
    import open_flamingo.eval as of_eval
    import torch.distributed as dist

    folder = str(Path(of_eval.__file__).parent)  # evaluate.py imports its siblings as top-level modules
    sys.path.insert(0, folder)
    created = False
    if not dist.is_initialized():  # prepare_eval_samples builds a DistributedSampler
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:29561", rank=0, world_size=1)
        created = True
    import utils  # noqa: PLC0415  (open_flamingo/eval/utils.py)

    yield utils
    if created:
        dist.destroy_process_group()
    sys.path.remove(folder)


@pytest.mark.parametrize(
    "n_test,n_train,k,seed,num_samples,query,batch",
    [(37, 50, 4, 42, 20, 30, 8), (37, 50, 2, 7, -1, 50, 3), (300, 3000, 8, 42, 100, 2048, 8), (5, 9, 2, 1, -1, 9, 1)],
)
def test_draws_equal_openflamingos(of_utils, n_test, n_train, k, seed, num_samples, query, batch):
    import numpy as np

    test = [{"t": i} for i in range(n_test)]
    train = [{"i": i} for i in range(n_train)]
    np.random.seed(seed)  # what evaluate_vqa / _captioning / _classification do, in this order
    loader = of_utils.prepare_eval_samples(test, num_samples if num_samples > 0 else n_test, batch)
    query_set = of_utils.get_query_set(train, query)
    of_utils.random_seed(seed, 0)
    order, demos = [], {}
    for b in loader:
        for item, ds in zip(b["t"], of_utils.sample_batch_demos_from_query_set(query_set, k, len(b["t"]))):
            order.append(item)
            demos[item] = [x["i"] for x in ds]
    d = draws(n_test, n_train, k, seed, num_samples, query)
    assert d.order == order and d.demos == demos
    assert eval_subset(n_test, num_samples, seed)[0] == order
    # OpenFlamingo's batch size never changes the draws (one draw per item, in loader order)
    assert draws(n_test, n_train, k, seed, num_samples, query).demos == demos


def test_query_set_larger_than_train_split_is_a_clear_error():
    from mmgpt_eval.errors import UserError

    with pytest.raises(UserError, match="--of-query-set-size"):
        draws(10, 5, 2, 42, None, 2048)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--protocol", "openflamingo", "--limit", "5"], "--of-num-samples"),
        (["--of-num-samples", "5"], "--protocol openflamingo"),
        (["--protocol", "openflamingo", "--template", "mmgpt"], "of-vqa"),
        (["--protocol", "openflamingo", "--fewshot-zero-mode", "none"], "text-only demos"),
        (["--protocol", "openflamingo", "--tasks", "counting"], "not part of OpenFlamingo"),
        (
            [
                "--protocol",
                "openflamingo",
                "--tasks",
                "vqav2",
                "--vqav2-questions",
                "q.json",
                "--vqav2-annotations",
                "a.json",
                "--vqav2-images",
                ".",
                "--vqa-normalization",
                "official",
            ],
            "normalization",
        ),
    ],
)
def test_protocol_flag_errors(tmp_path, capsys, monkeypatch, extra, message):
    import mmgpt_eval.api as api

    monkeypatch.setattr(api, "load", lambda *a, **k: pytest.fail("model loaded before the flags were checked"))
    monkeypatch.chdir(tmp_path)
    if "vqav2" in extra:
        (tmp_path / "q.json").write_text('{"questions": []}')
        (tmp_path / "a.json").write_text('{"annotations": []}')
    args = ["run", "--model", "tiny", "--output-dir", str(tmp_path / "o"), "--no-progress", *extra]
    if "--tasks" not in extra:
        args += ["--tasks", "easyvqa"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_protocol_run_records_draws_and_uses_openflamingo_settings(tmp_path):
    """easy-VQA (offline) under the protocol: OpenFlamingo's template, decoding, seed 42 subset and demos."""
    from mmgpt_eval.results import RunResults
    from mmgpt_eval_tasks.easyvqa import EasyVQA

    out = tmp_path / "o"
    assert (
        main(
            [
                "-q",
                "run",
                "--model",
                "tiny",
                "--tasks",
                "easyvqa",
                "--protocol",
                "openflamingo",
                "--of-num-samples",
                "6",
                "--of-query-set-size",
                "100",
                "--num-fewshot",
                "2",
                "--output-dir",
                str(out),
                "--no-progress",
                "--no-report",
                "--max-new-tokens",
                "2",
            ]
        )
        == 0
    )
    run = RunResults.load(out)
    t = run.tasks["easyvqa"]
    assert run.run["protocol"] == "openflamingo" and run.run["seed"] == 42 and run.run["of_query_set_size"] == 100
    assert t.template["name"] == "of-vqa" and t.generation["num_beams"] == 3
    test, train = EasyVQA().load(), EasyVQA().fewshot_pool()
    d = draws(len(test), len(train), 2, 42, 6, 100)
    recs = {r["id"]: r for r in run.samples("easyvqa")}
    assert set(recs) == {test[i].id for i in d.order}
    for i in d.order:  # the demos in each prompt are OpenFlamingo's draws, in order
        want = [train[j].images[0].key for j in d.demos[i]] + [test[i].images[0].key]
        assert recs[test[i].id]["images"] == want
        for j in d.demos[i]:
            assert (
                f"Question:{train[j].fields['question']} Short answer:{train[j].references[0]}<|endofchunk|>\n"
                in recs[test[i].id]["prompt"]
            )


def test_trials_report_mean_and_std_of_per_trial_runs(tmp_path):
    """--trials N: one complete run per seed (OUTDIR/trials/seed-<s>/), metrics = mean, std as np.nanstd."""
    import numpy as np

    from mmgpt_eval.results import RunResults

    out = tmp_path / "o"
    args = [
        "-q",
        "run",
        "--model",
        "tiny-openflamingo",
        "--ckpt",
        "tiny-mmgpt",
        "--tasks",
        "easyvqa-mc",
        "--protocol",
        "openflamingo",
        "--of-num-samples",
        "8",
        "--of-query-set-size",
        "100",
        "--trials",
        "3",
        "--output-dir",
        str(out),
        "--no-progress",
        "--no-report",
    ]
    assert main(args) == 0
    run = RunResults.load(out)
    t = run.tasks["easyvqa-mc"]
    per = [RunResults.load(out / "trials" / f"seed-{s}").tasks["easyvqa-mc"] for s in (42, 43, 44)]
    values = [p.metrics["accuracy"] for p in per]
    assert t.breakdown["trials"]["values"]["accuracy"] == values
    assert t.metrics["accuracy"] == pytest.approx(np.nanmean(values), abs=1e-4)
    assert t.breakdown["trials"]["std"]["accuracy"] == pytest.approx(np.nanstd(values), abs=1e-4)
    # each trial drew its own subset (OpenFlamingo seeds the subset with the trial seed)
    ids = [{r["id"] for r in RunResults.load(out / "trials" / f"seed-{s}").samples("easyvqa-mc")} for s in (42, 43, 44)]
    assert ids[0] != ids[1] and {r["id"] for r in run.samples("easyvqa-mc")} == ids[0]
    # resumable: the second call takes every sample from the trial logs
    assert main(args) == 0
    assert all(
        RunResults.load(out / "trials" / f"seed-{s}").tasks["easyvqa-mc"].timing["samples_resumed"] == 8
        for s in (42, 43, 44)
    )


def test_rices_with_a_separate_open_clip_encoder(tmp_path):
    """--rices-encoder openclip:...: demos ranked by a separate open_clip model's image embeddings
    (OpenFlamingo's choice is openclip:ViT-L-14:openai; here a small local open_clip folder)."""
    import shutil

    import open_clip
    import torch
    from safetensors.torch import save_file

    from mmgpt_eval.results import RunResults
    from mmgpt_eval.presets import presets_dir as _presets_dir
    from mmgpt_eval_tasks.easyvqa import EasyVQA

    enc_dir = tmp_path / "enc"
    enc_dir.mkdir()
    shutil.copy(_presets_dir() / "tiny" / "vision" / "open_clip_config.json", enc_dir)
    torch.manual_seed(3)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{enc_dir}")
    save_file(model.state_dict(), str(enc_dir / "open_clip_model.safetensors"))
    out = tmp_path / "o"
    assert (
        main(
            [
                "-q",
                "run",
                "--model",
                "tiny",
                "--tasks",
                "easyvqa",
                "--protocol",
                "openflamingo",
                "--of-num-samples",
                "3",
                "--num-fewshot",
                "2",
                "--fewshot-selection",
                "rices",
                "--rices-encoder",
                f"openclip:local-dir:{enc_dir}",
                "--output-dir",
                str(out),
                "--no-progress",
                "--no-report",
                "--max-new-tokens",
                "1",
            ]
        )
        == 0
    )
    train = EasyVQA().fewshot_pool()
    test = {s.id: s for s in EasyVQA().load()}
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{enc_dir}")
    model.eval()

    def emb(samples):
        with torch.no_grad():
            f = model.encode_image(torch.stack([preprocess(s.images[0].open()) for s in samples])).float()
        return torch.nn.functional.normalize(f, dim=-1)

    first = {}
    for i, smp in enumerate(train):
        first.setdefault(smp.images[0].key, i)
    uniq = [train[i] for i in first.values()]
    ufeats = torch.cat([emb(uniq[i : i + 256]) for i in range(0, len(uniq), 256)])
    pos = {k: j for j, k in enumerate(first)}
    feats = ufeats[[pos[smp.images[0].key] for smp in train]]
    for r in RunResults.load(out).samples("easyvqa"):
        sims = (emb([test[r["id"]]]) @ feats.T)[0]
        want = [train[i].images[0].key for i in reversed(sims.argsort(descending=True)[:2].tolist())]
        assert r["images"][:2] == want


def test_rices_encoder_spec_is_checked_first(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "--model",
                "tiny",
                "--tasks",
                "easyvqa",
                "--rices-encoder",
                "clip-please",
                "--output-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "--rices-encoder must be" in capsys.readouterr().err
