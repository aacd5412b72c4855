"""Inputs shared by both sides of an equivalence check, written ONCE with the reference commit's code
(tests/of_fixtures.py and tests/helpers.py of a checkout of it, e.g. a `git worktree` at 0ef36bc with its
own venv) into DATA_DIR:

  data/of/<dataset>/...      official-format OpenFlamingo fixtures (VQAv2, COCO, Hateful Memes, ImageNet)
  data/of/flags.json         {task: [--<task>-<key>, path, ...]} for mmgpt-eval run
  data/ckpts/checkpoint_{100,200,300}.pt   trainer checkpoints (random LoRA on the `tiny` preset)
  data/peft-series/checkpoint_{1,2}/       the shipped tiny-ablation / tiny-mmgpt PEFT adapters (copies)
  data/reproduce-models/                    what `make reproduce` trains, rebuilt from the shipped models:
      tiny-base/final/model.toml (+ the tiny-openflamingo preset's files), tiny-mmgpt/final, tiny-ablation/final

Usage: REFERENCE_CHECKOUT=DIR DIR/.venv/bin/python benchmarks/equivalence/make_data.py DATA_DIR
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OLD = Path(os.environ["REFERENCE_CHECKOUT"]).resolve()
sys.path.insert(0, str(OLD / "tests"))

import mmgpt_eval  # noqa: E402

assert Path(mmgpt_eval.__file__).resolve().is_relative_to(OLD), mmgpt_eval.__file__

import of_fixtures  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

data = Path(sys.argv[1])
if data.exists():
    shutil.rmtree(data)
data.mkdir(parents=True)

# --- OpenFlamingo-protocol fixtures (sizes a bit above the equivalence test's 8 test / 16 train)
of = data / "of"
N_TEST, N_TRAIN = 12, 24
fx = {
    name: of_fixtures.WRITERS[name](of, n_test=N_TEST, n_train=N_TRAIN) for name in ("vqav2", "coco", "hateful_memes")
}
fx["imagenet"] = of_fixtures.write_imagenet(of, n_classes=2, test_per_class=2, train_per_class=8)
flags = {of_fixtures.MMGPT_TASKS[n]: f.mmgpt_flags() for n, f in fx.items()}
(of / "flags.json").write_text(json.dumps({"n_test": N_TEST, "n_train": N_TRAIN, "flags": flags}, indent=1))

# --- checkpoint series 1: trainer .pt checkpoints (random LoRA, as tests/test_scale.py builds them)
from helpers import SETTINGS, tiny_with_random_lora  # noqa: E402

from mmgpt_eval.model.export import save_mmgpt_checkpoint  # noqa: E402

ck = data / "ckpts"
ck.mkdir()
for step, seed in ((100, 1), (200, 2), (300, 3)):
    m = tiny_with_random_lora(seed=seed)
    save_mmgpt_checkpoint(m.model, SETTINGS, ck / f"checkpoint_{step}.pt", kind="trainer", step=step)

# --- checkpoint series 2: a folder of PEFT adapter folders (the shipped adapters)
pkg = Path(mmgpt_eval.__file__).resolve().parent
ps = data / "peft-series"
shutil.copytree(pkg / "weights" / "tiny-ablation", ps / "checkpoint_1")
shutil.copytree(pkg / "weights" / "tiny-mmgpt", ps / "checkpoint_2")

# --- make reproduce's trained stages, as `make reproduce --install` turned them into the shipped models:
# the base's folder (model.toml beside its files) and the two adapter folders
rm = data / "reproduce-models"
presets = pkg / "model" / "presets"
base = rm / "tiny-base" / "final"
shutil.copytree(presets / "tiny-openflamingo", base)
(base / "model.toml").write_text((presets / "tiny-openflamingo.toml").read_text().replace('"tiny-openflamingo/', '"'))
for name in ("tiny-mmgpt", "tiny-ablation"):
    shutil.copytree(pkg / "weights" / name, rm / name / "final")
print("data written under", data)
