"""RICES few-shot demo selection (Yang et al. 2022, as in OpenFlamingo's eval): the demos for a test
image are the k train images most similar to it, by cosine similarity of L2-normalised pooled image
features from the model's own vision encoder, ordered with the MOST similar LAST (next to the query).

Train-pool features are computed once per run and cached on disk under ``OUTDIR/cache/`` (keyed by
the vision encoder's weights and the pool's image keys), so re-runs and resumes reuse them.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import torch

from .taskapi import Sample

log = logging.getLogger("mmgpt_eval")


def _vision_fingerprint(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.vision_encoder.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(tuple(p.shape)).encode())
    return h.hexdigest()[:16]


class RICES:
    def __init__(self, loaded: Any, pool: list[Sample], cache_dir: Path | None = None, batch_size: int = 64):
        self.loaded = loaded
        self.pool = pool
        self.batch_size = batch_size
        keys = [s.images[0].key for s in pool]
        tag = hashlib.sha256(("\n".join(keys) + _vision_fingerprint(loaded.model)).encode()).hexdigest()[:16]
        self.cache_file = (cache_dir / f"rices-{tag}.pt") if cache_dir else None
        self.features = self._pool_features()

    @torch.inference_mode()
    def embed(self, samples: list[Sample]) -> torch.Tensor:
        """L2-normalised pooled image features of each sample's first image."""
        out = []
        proc = self.loaded.image_processor
        for i in range(0, len(samples), self.batch_size):
            px = torch.stack([proc(s.images[0].open()) for s in samples[i:i + self.batch_size]])
            px = px.to(self.loaded.device, dtype=self.loaded.dtype)
            pooled = self.loaded.model.vision_encoder(px)[0].float()
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, 1)

    def _pool_features(self) -> torch.Tensor:
        if self.cache_file is not None and self.cache_file.is_file():
            return torch.load(self.cache_file, weights_only=True)
        feats = self.embed(self.pool)
        if self.cache_file is not None:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_suffix(".tmp")
            torch.save(feats, tmp)
            tmp.replace(self.cache_file)
            log.info("cached RICES features of %d demo images in %s", len(self.pool), self.cache_file)
        return feats

    def select(self, task: str, sample: Sample, pool: list[Sample], k: int) -> list[Sample]:
        """The demo-selector interface (``pool`` is the one this index was built on)."""
        return self.find(sample, k)

    def find(self, sample: Sample, k: int) -> list[Sample]:
        q = self.embed([sample])[0]
        sims = self.features @ q
        top = torch.topk(sims, k=min(k, len(self.pool))).indices.tolist()  # most similar first
        return [self.pool[i] for i in reversed(top)]  # most similar last


class OpenFlamingoRICES(RICES):
    """RICES as OpenFlamingo's ``rices.py`` ranks: over the whole train split, similarities sorted with
    ``argsort(descending=True)``, the first k, most similar last. The features come from the model's own
    vision encoder (OpenFlamingo uses a separate open_clip ViT-L-14 ``openai``, which this offline
    harness cannot download; the tests give OpenFlamingo's code the same encoder)."""

    def find(self, sample: Sample, k: int) -> list[Sample]:
        q = self.embed([sample])
        sims = (q @ self.features.T).squeeze()
        if sims.ndim == 0:
            sims = sims.unsqueeze(0)
        idx = sims.argsort(dim=-1, descending=True)[:k].tolist()
        return [self.pool[i] for i in reversed(idx)]
