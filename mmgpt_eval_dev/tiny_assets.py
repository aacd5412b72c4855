"""How the ``tiny`` preset's configuration files were made (run: ``python -m mmgpt_eval_dev.tiny_assets``).

The preset ships only configs (no weights): a LLaMA-style BPE tokenizer (Metaspace, byte fallback,
BOS added, EOS not; ``<|endofchunk|>``, ``<image>``, ``<PAD>`` appended after the base vocabulary as
MultiModal-GPT's builder does, so vocab = base + 3 as with LLaMA-7B's 32003), a tiny LLaMA config and
a tiny open_clip ViT config. Weights are drawn from a seed at build time (``init = "random"``).

The tokenizer is trained on text this project writes: the prompt templates, the easy-VQA question
and answer vocabulary, counting and description phrasings, and general instruction words. Text
outside it still encodes (byte fallback), only less compactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import mmgpt_eval

PRESET_DIR = Path(mmgpt_eval.__file__).resolve().parent / "model" / "presets" / "tiny"
BASE_VOCAB = 2048

_WORDS = """
the a an is are was were be been being there here this that these those it its of in on at to from by with
for and or not no yes what which who whom whose where when why how many much more most less few several
some any all each every both either neither one two three four five six seven eight nine ten eleven twelve
zero none first second third last next previous other another same different image picture photo scene
shape shapes color colors colour circle circles square squares rectangle rectangles triangle triangles
star stars diamond diamonds red green blue yellow purple orange black white gray grey brown teal pink
large small big tiny medium left right top bottom center middle corner background foreground contains
contain present absent visible show shows showing see seen look looks describe description detail details
detailed caption short answer question questions instruction instructions response task request write
please can could would should will may might must tell explain list give name count number numbers total
sentence sentences word words paragraph story poem about ocean sea sky sun moon tree trees flower flowers
fruit fruits apple banana cherry grape lemon animal animals dog cat bird fish water mountain river city
house car book music food morning night day week year time people person friend help think because so
then also very really just only even still again together between above below under over near far inside
outside around through into onto up down out off than as if but while after before during until since
good bad new old long high low light dark bright simple clear single double plain empty filled solid
I you he she we they me him her us them my your our their mine yours ours yes. no. thank thanks hello
steps step recipe make made making use used using find found keep kept learn learned teach reason reasons
summary summarize compare comparison difference similar example examples idea ideas plan plans travel
"""


def corpus() -> list[str]:
    """Rendered prompts with answers (so template pieces and answer words become tokens), plus
    general words. ``<image>`` / ``<|endofchunk|>`` are removed: they are appended as special tokens."""
    import easy_vqa

    from mmgpt_eval.templates import TEMPLATES

    lines: list[str] = []
    qa: set[tuple[str, str]] = set()
    for split in (easy_vqa.get_train_questions, easy_vqa.get_test_questions):
        qs, ans, _ = split()
        qa.update(zip(qs, ans))
    for q, a in sorted(qa):
        lines.append(TEMPLATES["mmgpt"].render(question=q) + a)
        lines.append(TEMPLATES["mmgpt"].render(question=q.capitalize()) + a.capitalize() + ".")
        lines.append(TEMPLATES["of-vqa"].render_demo(question=q, answer=a))
    words = _WORDS.split()
    lines.extend(words)
    lines.extend(w.capitalize() for w in words)
    lines.append(" ".join(words))
    for n in range(0, 21):
        lines.append(f"There are {n} shapes.")
        lines.append(TEMPLATES["mmgpt"].render(question="How many shapes are there?") + str(n))
    import random

    from mmgpt_eval.train.synthetic import (
        easyvqa_attributes,
        language_example,
        shape_description,
    )

    rng = random.Random(0)
    for _ in range(3000):
        q, a = language_example(rng)
        lines.append(TEMPLATES["mmgpt-text"].render(question=q) + a)
    for attr in list(easyvqa_attributes("train").values())[:500]:
        lines.append(shape_description(attr, rng))
    for q in (
        "Describe the image in detail.",
        "Write three sentences about the ocean.",
        "List four fruits.",
        "What is in this image?",
    ):
        lines.append(TEMPLATES["mmgpt"].render(question=q) + "The image shows a large blue circle.")
        lines.append(TEMPLATES["mmgpt-text"].render(question=q) + "Here are some ideas.")
        lines.append(TEMPLATES["of-caption"].render_demo(caption="a blue circle."))
    return [ln.replace("<image>", "").replace("<|endofchunk|>", "") for ln in lines]


def build_tokenizer(out_dir: Path = PRESET_DIR / "tokenizer", vocab_size: int = BASE_VOCAB) -> None:
    """LLaMA layout: <unk>=0, <s>=1, </s>=2, byte tokens <0x00>..<0xFF>=3..258 (ordinary, not
    special, so decoding keeps them), then BPE pieces; Flamingo tokens appended after the base."""
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    def pre():
        # newlines and punctuation are pieces of their own, so no merge ever crosses a prompt/answer
        # boundary such as "### Response:\n" + answer or OpenFlamingo's "Short answer:" + answer
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split("\n", behavior="isolated"),
                pre_tokenizers.Split(Regex(r"[:;,.!?()\"'<>|\[\]{}]"), behavior="isolated"),
                pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True),
            ]
        )

    specials = ["<unk>", "<s>", "</s>"]
    tmp = Tokenizer(models.BPE(unk_token="<unk>"))
    tmp.pre_tokenizer = pre()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 256, special_tokens=specials, min_frequency=2, show_progress=False, limit_alphabet=120
    )
    tmp.train_from_iterator(corpus(), trainer=trainer)
    trained = json.loads(tmp.to_str())["model"]
    vocab: dict[str, int] = {t: i for i, t in enumerate(specials)}
    for i in range(256):
        vocab[f"<0x{i:02X}>"] = len(vocab)
    for tok_str, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if tok_str not in vocab:
            vocab[tok_str] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre()
    tok.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    base = tok.get_vocab_size()
    tok.add_special_tokens(["<|endofchunk|>", "<image>", "<PAD>"])
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    cfg = {
        "backend": "tokenizers",
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<PAD>",
        "additional_special_tokens": ["<|endofchunk|>", "<image>"],
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 2048,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"tokenizer: base vocab {base}, total {tok.get_vocab_size()}")


def build_configs(vocab_total: int) -> None:
    lm = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_total,
        "hidden_size": 128,
        "intermediate_size": 384,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "head_dim": 32,
        "hidden_act": "silu",
        "max_position_embeddings": 1024,
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.02,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": None,
        "use_cache": True,
    }
    (PRESET_DIR / "lm").mkdir(parents=True, exist_ok=True)
    (PRESET_DIR / "lm" / "config.json").write_text(json.dumps(lm, indent=2) + "\n")
    (PRESET_DIR / "lm" / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2}, indent=2) + "\n"
    )
    vision = {
        "model_cfg": {
            "embed_dim": 64,
            "quick_gelu": False,
            "vision_cfg": {
                "image_size": 64,
                "patch_size": 8,
                "width": 64,
                "layers": 2,
                "head_width": 32,
                "mlp_ratio": 4.0,
                "final_ln_after_pool": True,
            },
            "text_cfg": {"context_length": 8, "vocab_size": 16, "width": 16, "heads": 1, "layers": 1},
        },
        "preprocess_cfg": {
            "size": 64,
            "mode": "RGB",
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
            "interpolation": "bicubic",
            "resize_mode": "shortest",
            "fill_color": 0,
        },
    }
    (PRESET_DIR / "vision").mkdir(parents=True, exist_ok=True)
    (PRESET_DIR / "vision" / "open_clip_config.json").write_text(json.dumps(vision, indent=2) + "\n")


if __name__ == "__main__":  # pragma: no cover
    build_tokenizer()
    from transformers import AutoTokenizer

    n = len(AutoTokenizer.from_pretrained(str(PRESET_DIR / "tokenizer")))
    build_configs(n)
