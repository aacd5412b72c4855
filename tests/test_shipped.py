"""The weights that ship with mmgpt-eval (made by `make reproduce --install`): they load with every
tensor matched, resolve by name, and the tiny MultiModal-GPT really answers easy-VQA questions."""

from __future__ import annotations

import pytest

from mmgpt_eval.model.build import load_model
from mmgpt_eval.model.checkpoint import read_checkpoint, shipped_checkpoints
from mmgpt_eval.model.resolve import choose_base
from mmgpt_eval.model.spec import load_spec


def test_shipped_names():
    assert {"tiny-mmgpt", "tiny-ablation"} <= set(shipped_checkpoints())


@pytest.mark.parametrize("name", ["tiny-mmgpt", "tiny-ablation"])
def test_shipped_adapters_load_completely(name):
    info = read_checkpoint(name)
    assert info.format == "peft" and info.lora.r == 16 and info.lora.alpha == 16
    choice = choose_base(info)
    assert choice.spec.name == "tiny-openflamingo"
    m = load_model(load_spec("tiny-openflamingo", {"device": "cpu"}), info)
    assert all(r.ok for r in m.reports) and len(m.reports) == 2  # OpenFlamingo weights + adapter
    assert not m.reports[-1].missing and len(m.reports[-1].matched) == len(info.tensors)


def test_tiny_mmgpt_answers_easyvqa():
    from mmgpt_eval.model.generate import GenerationSettings, Generator, PromptInput
    from mmgpt_eval.taskapi import fixed_subset
    from mmgpt_eval.templates import TEMPLATES
    from mmgpt_eval_tasks.easyvqa import EasyVQA, exact_match

    m = load_model(load_spec("tiny-openflamingo", {"device": "cpu"}), "tiny-mmgpt")
    samples = fixed_subset("easyvqa", EasyVQA().load(), 60)
    prompts = [
        PromptInput(TEMPLATES["mmgpt"].render(question=s.fields["question"]), [s.images[0]], [s.images[0].key])
        for s in samples
    ]
    gens = Generator(m).generate_grouped(prompts, GenerationSettings(max_new_tokens=10), batch_size=32)
    acc = sum(
        exact_match(TEMPLATES["mmgpt"].extract(g.full_text, g.text), s.references[0]) for g, s in zip(gens, samples)
    ) / len(samples)
    assert acc >= 0.8


def test_shipped_models_differ_on_open_ended_instructions():
    """The paper's finding, in the shipped weights: the joint model describes, the ablation answers shortly."""
    import statistics

    import easy_vqa

    from mmgpt_eval.model.generate import GenerationSettings, Generator, PromptInput
    from mmgpt_eval.templates import TEMPLATES

    all_paths = easy_vqa.get_test_image_paths()
    paths = [all_paths[i] for i in range(6)]
    prompts = [PromptInput(TEMPLATES["mmgpt"].render(question="Describe the image in detail."), [p]) for p in paths]
    words = {}
    for name in ("tiny-mmgpt", "tiny-ablation"):
        m = load_model(load_spec("tiny-openflamingo", {"device": "cpu"}), name)
        gens = Generator(m).generate_grouped(prompts, GenerationSettings(max_new_tokens=60), batch_size=6)
        words[name] = statistics.median(len(TEMPLATES["mmgpt"].extract(g.full_text, g.text).split()) for g in gens)
    assert words["tiny-mmgpt"] >= 2 * words["tiny-ablation"] and words["tiny-mmgpt"] >= 10, words
