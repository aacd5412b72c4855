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
    prompts = [PromptInput(TEMPLATES["mmgpt"].render(question=s.fields["question"]), [s.images[0]], [s.images[0].key])
               for s in samples]
    gens = Generator(m).generate_grouped(prompts, GenerationSettings(max_new_tokens=10), batch_size=32)
    acc = sum(exact_match(TEMPLATES["mmgpt"].extract(g.full_text, g.text), s.references[0])
              for g, s in zip(gens, samples)) / len(samples)
    assert acc >= 0.8
