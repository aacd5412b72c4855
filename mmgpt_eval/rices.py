"""RICES few-shot demo selection (Yang et al. 2022, as in OpenFlamingo's eval): the demos for a test
image are the k train images most similar to it, by cosine similarity of L2-normalised pooled image
features from the model's own vision encoder, ordered with the MOST similar LAST (next to the query).

Train-pool features are computed once per run and cached on disk under ``OUTDIR/cache/`` (keyed by
the vision encoder's weights and the pool's image keys), so re-runs and resumes reuse them.

``--rices-encoder openclip:ARCH:PRETRAINED`` uses a separate open_clip model instead (OpenFlamingo's
choice: ``openclip:ViT-L-14:openai``); PRETRAINED is an open_clip tag (needs its weights downloadable
or in open_clip's cache) or a local weights file; ``openclip:local-dir:FOLDER`` reads an open_clip
folder (``open_clip_config.json`` + weights).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .taskapi import Sample

if TYPE_CHECKING:
    import torch

log = logging.getLogger("mmgpt_eval")


def _vision_fingerprint(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.vision_encoder.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(tuple(p.shape)).encode())
    return h.hexdigest()[:16]


def parse_openclip_spec(spec: str) -> tuple[str, str | None]:
    """``openclip:ARCH:PRETRAINED`` or ``openclip:local-dir:FOLDER`` -> (open_clip model name, pretrained)."""
    from .errors import UserError

    rest = spec[len("openclip:") :] if spec.startswith("openclip:") else ""
    if rest.startswith("local-dir:") and len(rest) > len("local-dir:"):
        return rest, None
    arch, _, pretrained = rest.partition(":")
    if not arch or not pretrained:
        raise UserError(
            f"--rices-encoder must be 'model', 'openclip:ARCH:PRETRAINED' or 'openclip:local-dir:FOLDER', got {spec!r}"
        )
    return arch, pretrained


class OpenClipEncoder:
    """A separate open_clip image encoder for RICES (``openclip:ARCH:PRETRAINED``)."""

    def __init__(self, spec: str, device: Any = "cpu"):
        from .errors import UserError

        arch, pretrained = parse_openclip_spec(spec)
        import open_clip

        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained)
        except Exception as e:  # noqa: BLE001 - unknown arch, no weights offline, a bad file
            raise UserError(
                f"cannot build the RICES encoder {spec!r}: {str(e).splitlines()[0] if str(e) else e} "
                "(offline, give a local weights file: openclip:ARCH:/path/to/weights)"
            ) from None
        self.model.eval().to(device)
        self.device = device
        self.vision_encoder = self.model.visual

    @property
    def dtype(self):
        return next(self.model.parameters()).dtype


class RICES:
    def __init__(
        self,
        loaded: Any,
        pool: list[Sample],
        cache_dir: Path | None = None,
        batch_size: int = 64,
        encoder: str = "model",
    ):
        self.loaded = loaded
        self.pool = pool
        self.batch_size = batch_size
        self.encoder = None if encoder == "model" else OpenClipEncoder(encoder, loaded.device)
        keys = [s.images[0].key for s in pool]
        vision = self.encoder if self.encoder is not None else loaded.model
        tag = hashlib.sha256(("\n".join(keys) + _vision_fingerprint(vision) + encoder).encode()).hexdigest()[:16]
        self.cache_file = (cache_dir / f"rices-{tag}.pt") if cache_dir else None
        self.features = self._pool_features()

    def embed(self, samples: list[Sample]) -> torch.Tensor:
        """L2-normalised pooled image features of each sample's first image."""
        import torch

        with torch.inference_mode():
            out = []
            enc = self.encoder
            proc = enc.preprocess if enc is not None else self.loaded.image_processor
            for i in range(0, len(samples), self.batch_size):
                px = torch.stack([proc(s.images[0].open()) for s in samples[i : i + self.batch_size]])
                if enc is not None:  # open_clip's encode_image: the pooled, projected embedding
                    pooled = enc.model.encode_image(px.to(enc.device, dtype=enc.dtype)).float()
                    out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
                    continue
                px = px.to(self.loaded.device, dtype=self.loaded.dtype)
                pooled = self.loaded.model.vision_encoder(px)[0].float()
                out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
            return torch.cat(out) if out else torch.zeros(0, 1)

    def _pool_features(self) -> torch.Tensor:
        import torch

        if self.cache_file is not None and self.cache_file.is_file():
            return torch.load(self.cache_file, weights_only=True)
        # one embedding per distinct image (a VQA train split asks several questions about each image)
        first: dict[str, int] = {}
        for i, smp in enumerate(self.pool):
            first.setdefault(smp.images[0].key, i)
        unique = self.embed([self.pool[i] for i in first.values()])
        row = {k: j for j, k in enumerate(first)}
        feats = (
            unique[torch.tensor([row[smp.images[0].key] for smp in self.pool], dtype=torch.long)]
            if len(self.pool)
            else unique
        )
        if self.cache_file is not None:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_suffix(".tmp")
            torch.save(feats, tmp)
            tmp.replace(self.cache_file)
            log.info(
                "cached RICES features of %d demo images (%d distinct) in %s",
                len(self.pool),
                len(first),
                self.cache_file,
            )
        return feats

    def select(self, task: str, sample: Sample, pool: list[Sample], k: int) -> list[Sample]:
        """The demo-selector interface (``pool`` is the one this index was built on)."""
        return self.find(sample, k)

    def find(self, sample: Sample, k: int) -> list[Sample]:
        import torch

        q = self.embed([sample])[0]
        sims = self.features @ q
        top = torch.topk(sims, k=min(k, len(self.pool))).indices.tolist()  # most similar first
        return [self.pool[i] for i in reversed(top)]  # most similar last
