"""OpenFlamingo-9B-shaped throughput check: CLIP ViT-L/14 + a LLaMA-7B-shaped language model (random
weights, bf16, no downloads), cross-attention every 4 layers, the stock Perceiver, a 32,003-token
vocabulary. Runs the `bench` comparison (mmgpt-eval vs OpenFlamingo-style vs per-sample loops) on
synthetic MultiModal-GPT prompts over easy-VQA images and prints tokens/s, samples/s, peak memory.

    benchmarks/gpu_check.sh                  # the real shape, needs a GPU (~30 GB in bf16)
    benchmarks/gpu_check.sh --small          # a scaled-down shape that runs on CPU (tests)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "vocab_size": 32003,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
}
SMALL = {
    **LLAMA_7B,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}


def make_assets(tmp: Path, small: bool) -> Path:
    from transformers import AutoTokenizer

    from mmgpt_eval.presets import presets_dir

    lm = tmp / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps(SMALL if small else LLAMA_7B))
    tok = AutoTokenizer.from_pretrained(str(presets_dir() / "tiny" / "tokenizer"))
    # pad the vocabulary to LLaMA's 32,000 (+3 Flamingo tokens) so the LM head has the real width
    tok.add_tokens([f"<unused_{i}>" for i in range(32000 - len(tok) + 3)])
    tok.save_pretrained(tmp / "tokenizer")
    spec = tmp / "model.toml"
    vision = f'vision_encoder = "{presets_dir() / "tiny" / "vision"}"' if small else 'vision_encoder = "ViT-L-14"'
    spec.write_text(f'''{vision}
lm = "lm"
tokenizer = "tokenizer"
init = "random"
gate_init = 0.5
cross_attn_every_n_layers = 4
flamingo_version = "v2"
vision_quick_gelu = true
precision = "{"fp32" if small else "bf16"}"
device = "{"cpu" if small else "cuda"}"
''')
    return spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true", help="scaled-down shape on CPU")
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    from mmgpt_eval_dev.bench import run_bench
    from mmgpt_eval.model.build import load_model
    from mmgpt_eval.model.generate import GenerationSettings
    from mmgpt_eval.model.spec import load_spec
    from mmgpt_eval.taskapi import fixed_subset
    from mmgpt_eval.templates import get_template
    from mmgpt_eval_tasks.easyvqa import EasyVQA

    n = args.samples or (24 if args.small else 256)
    with tempfile.TemporaryDirectory() as tmp:
        spec = make_assets(Path(tmp), args.small)
        loaded = load_model(load_spec(spec))
        samples = fixed_subset("easyvqa", EasyVQA().load(), n)
        summary = run_bench(
            loaded,
            samples,
            get_template("mmgpt"),
            GenerationSettings(max_new_tokens=args.max_new_tokens),
            batch_size=args.batch_size or (8 if args.small else 64),
            repeats=args.repeats,
        )
    import torch

    summary["shape"] = "small (CPU test)" if args.small else "OpenFlamingo-9B (ViT-L/14 + LLaMA-7B shape, random, bf16)"
    summary["card"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    summary["parameters"] = sum(p.numel() for p in loaded.model.parameters())
    print(json.dumps(summary, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(summary, indent=2))
    return 0 if summary["outputs_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
