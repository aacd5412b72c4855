"""Log-likelihood ranking: score candidate continuations of a context (with its images).

A ranking input is a context -- a prompt with its ``<image>`` tokens and images -- and candidate
continuations. A candidate's tokens are either its own tokenization (``add_special_tokens=False``)
appended to the context's tokens, as OpenFlamingo's ``get_rank_classifications`` does
(``joint=False``), or the tokens that context + candidate tokenized together have after the
context's (``joint=True``, lm-evaluation-harness's rule: the candidate is tokenized as it reads in
the full text, e.g. without the word-start marker a lone word gets; trailing spaces of the context
move to the front of every candidate, since tokenizers attach a space to the word after it). Its score is the sum of the
log-probabilities of its tokens (``CandidateScore.sum_logprob``); OpenFlamingo's length
normalisation divides by the number of candidate tokens (``mean_logprob``).

How one batch is computed (equal, within float rounding, to scoring every candidate alone with a
plain forward over context + candidate; tests/test_rank.py checks 1e-4 for v1 and v2 models):

1. Contexts: left-padded, positions from the attention mask (a padded row gets the positions it has
   unpadded), images encoded once per distinct image (the :class:`~mmgpt_eval.model.generate.Generator`'s
   feature cache), one forward with the KV cache kept. The last position's logits score every
   candidate's first token: single-token candidates (yes/no, most multiple-choice letters) need
   nothing more.
2. Candidates: the tokens after the first are scored by running the candidate's tokens but its last
   against the cached context. Candidates of one context that share a token prefix share the work:
   a sequence that is a prefix of another context-mate's is read off the longer one's logits (causal
   attention), so each context runs only its trie's leaves. Rows from all contexts of the batch,
   sorted by length, are packed into one right-padded forward per ``candidate_batch`` rows, each with
   its context's KV cache rows, vision features and media positions selected; each forward's logits
   are reduced at once to the scores the candidates need.
3. Cross-attention: candidate tokens see the images exactly as they would following the context in
   one sequence. v2 (open-flamingo 2.x): they attend to the image the context's last ``<image>``
   token refers to (image number = the context's ``<image>`` count: the last image, unless images
   without a token were passed, as OpenFlamingo's 0-shot classification does) -- the cached-media
   rule open-flamingo uses during generation, fed the context's media locations. v1: positions after
   ``<image>`` get no cross-attention in either form (media locations are recomputed per call). With
   attention to the immediate image only (both versions' default) the candidate rows get just that
   one image's features: the others would get exactly zero weight.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ...compat import cache_select, output_cache
from ..batching import batches_by_image_count, halving_on_oom
from ..seam import CandidateScore, RankInput
from .generate import Generator


class Ranker:
    """Candidate scoring on the model a :class:`Generator` wraps (sharing its image-feature cache,
    its out-of-memory batch cap and its counters)."""

    CANDIDATE_BATCH = {"cuda": 1024, "cpu": 256}

    def __init__(self, gen: Generator, candidate_batch: int | None = None):
        self.gen = gen
        self.lm = gen.lm
        self.model = gen.model
        self.tokenizer = gen.tokenizer
        self.candidate_batch = candidate_batch or self.CANDIDATE_BATCH.get(self.lm.device.type, 256)
        self._cand_tokens: dict[str, list[int]] = {}
        self.candidate_forwards = 0  # forwards over candidate rows (a measure for the benchmark)
        self.candidate_rows = 0

    def candidate_tokens(self, text: str) -> list[int]:
        ids = self._cand_tokens.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"candidate {text!r} has no tokens")
            self._cand_tokens[text] = ids
        return ids

    def joint_tokens(self, context: str, context_ids: list[int], text: str) -> list[int]:
        """The tokens of ``context + text`` after the context's own tokens."""
        ids = self.tokenizer(context + text)["input_ids"][len(context_ids) :]
        if not ids:
            raise ValueError(f"candidate {text!r} has no tokens after its context")
        return ids

    # ------------------------------------------------------------------ public
    def score(self, inputs: Sequence[RankInput], batch_size: int = 8) -> list[list[CandidateScore]]:
        """Scores of every candidate of every input, in input order. Contexts are grouped by image
        count and length into batches of ``batch_size``; on out-of-memory the batch is halved."""
        out: list[list[CandidateScore] | None] = [None] * len(inputs)
        for batch in batches_by_image_count(inputs, batch_size):
            for j, s in zip(batch, self._score_backoff([inputs[j] for j in batch])):
                out[j] = s
        return out  # type: ignore[return-value]

    def _score_backoff(self, inputs: Sequence[RankInput]) -> list[list[CandidateScore]]:
        return halving_on_oom(self.gen, self.score_batch, inputs)

    # ------------------------------------------------------------------ one batch
    @torch.inference_mode()
    def score_batch(self, inputs: Sequence[RankInput]) -> list[list[CandidateScore]]:
        """One batch of contexts (same image count)."""
        if not inputs:
            return []
        device = self.lm.device
        prompts = [x.prompt() for x in inputs]
        feats = self.gen.vision_features(prompts)  # (B, T, n, d) or None
        texts = [x.text.rstrip(" ") if x.joint else x.text for x in inputs]
        rows: list[list[int]] = self.tokenizer(texts)["input_ids"]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, width - len(r) :] = torch.tensor(r, dtype=torch.long)
            mask[b, width - len(r) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ctx = self.model(
            None,
            ids,
            attention_mask=mask,
            use_cache=True,
            vision_features=feats,
            position_ids=positions,
            logits_to_keep=1,
        )
        first = torch.log_softmax(ctx.logits[:, -1].float(), dim=-1)  # (B, V): scores candidates' first tokens
        cache = output_cache(ctx)
        ctx_len = mask.sum(-1)  # real context tokens per row

        # every candidate's tokens; the rows to run: per context, the trie leaves of tokens[:-1]
        cand = [
            [
                self.joint_tokens(texts[b], rows[b], x.text[len(texts[b]) :] + c)
                if x.joint
                else self.candidate_tokens(c)
                for c in x.candidates
            ]
            for b, x in enumerate(inputs)
        ]
        leaves: list[tuple[int, tuple[int, ...]]] = []  # (context row, input tokens)
        where: dict[tuple[int, tuple[int, ...]], int] = {}  # (row, prefix) -> leaf
        for b, toks in enumerate(cand):
            for seq in sorted({tuple(t[:-1]) for t in toks if len(t) > 1}, key=len, reverse=True):
                if (b, seq) in where:
                    continue  # a prefix of a longer sequence already kept
                for k in range(1, len(seq) + 1):
                    where.setdefault((b, seq[:k]), len(leaves))
                leaves.append((b, seq))
        # the scores to read: (leaf, position, target token) for every candidate token after the first
        entries: list[tuple[int, int, int]] = []
        owner: list[int] = []  # flat candidate index of each entry
        flat = 0
        for b, toks in enumerate(cand):
            for t in toks:
                if len(t) > 1:
                    leaf = where[(b, tuple(t[:-1]))]
                    entries.extend((leaf, j, t[j + 1]) for j in range(len(t) - 1))
                    owner.extend([flat] * (len(t) - 1))
                flat += 1
        n_cand = flat
        rest_sum = torch.zeros(n_cand, dtype=torch.float64)
        rest_greedy = torch.ones(n_cand, dtype=torch.bool)
        if entries:
            order = sorted(range(len(leaves)), key=lambda i: len(leaves[i][1]))  # chunks of similar lengths pad little
            slot = {leaf: i for i, leaf in enumerate(order)}
            e = torch.tensor(entries, dtype=torch.long)
            e_slot = torch.tensor([slot[int(x)] for x in e[:, 0]], dtype=torch.long)
            e_owner = torch.tensor(owner, dtype=torch.long)
            media = ids == self.lm.media_token_id
            for start in range(0, len(order), self.candidate_batch):
                chunk = [leaves[i] for i in order[start : start + self.candidate_batch]]
                sel = ((e_slot >= start) & (e_slot < start + len(chunk))).nonzero().squeeze(1)
                lp, greedy = self._run_leaves(
                    chunk, cache, mask, media, feats, ctx_len, e_slot[sel] - start, e[sel, 1], e[sel, 2]
                )
                rest_sum.index_add_(0, e_owner[sel], lp.double().cpu())
                rest_greedy[e_owner[sel][~greedy.cpu()]] = False

        results: list[list[CandidateScore]] = []
        best = first.argmax(-1).tolist()
        flat = 0
        for b, toks in enumerate(cand):
            row_first = first[b, [t[0] for t in toks]].double().cpu().tolist()
            row_scores = []
            for t, lp0 in zip(toks, row_first):
                row_scores.append(
                    CandidateScore(
                        sum_logprob=lp0 + float(rest_sum[flat]),
                        n_tokens=len(t),
                        is_greedy=best[b] == t[0] and bool(rest_greedy[flat]),
                    )
                )
                flat += 1
            results.append(row_scores)
        return results

    def _visible_image(self, feats: torch.Tensor, media: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Each context's one image a candidate token can see, as (B, 1, n, d) features and a (B, 1) media
        mask -- or None when the full set must be passed. With attention to the immediate image only, a
        token after the context attends to image number = the context's ``<image>`` count (v2) or to none
        (v1); every other image gets exactly zero weight, so the K/V projections of the others are skipped."""
        blocks = [blk for blk in self.model.lang_encoder.gated_cross_attn_layers if blk is not None]
        if not blocks or not all(blk.attn.only_attend_immediate_media for blk in blocks):
            return None
        count = media.sum(-1)
        if getattr(self.model, "flamingo_version", "v1") == "v2":
            if bool((count < 1).any()) or bool((count > feats.shape[1]).any()):
                return None
            picked = feats[torch.arange(feats.shape[0], device=feats.device), count - 1][:, None]
        else:  # v1: no image is attended after the context; any one keeps the block's shapes
            picked = feats[:, :1]
        return picked, torch.ones((feats.shape[0], 1), dtype=torch.bool, device=feats.device)

    def _run_leaves(
        self,
        chunk: list[tuple[int, tuple[int, ...]]],
        cache: Any,
        ctx_mask: torch.Tensor,
        media: torch.Tensor,
        feats: torch.Tensor | None,
        ctx_len: torch.Tensor,
        rows: torch.Tensor,
        pos: torch.Tensor,
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run each leaf sequence after its context; the log-probability of ``target`` at (``rows``,
        ``pos``) and whether it is the argmax there."""
        device = ctx_mask.device
        m = max(len(s) for _, s in chunk)
        idx = torch.tensor([b for b, _ in chunk], device=device)
        x = torch.zeros((len(chunk), m), dtype=torch.long, device=device)
        own = torch.zeros((len(chunk), m), dtype=torch.long, device=device)
        for i, (_, s) in enumerate(chunk):
            x[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            own[i, : len(s)] = 1  # right padding: causal attention keeps it out of the real positions
        att = torch.cat([ctx_mask[idx], own], dim=1)
        position = ctx_len[idx][:, None] + torch.arange(m, device=device)[None, :]
        sub_cache = cache_select(cache, idx)
        lm = self.model.lang_encoder
        self.candidate_forwards += 1
        self.candidate_rows += len(chunk)
        if feats is None:
            out = self.model(
                None, x, attention_mask=att, past_key_values=sub_cache, use_cache=True, position_ids=position
            )
        else:
            # the context's images and media positions, with open-flamingo's cached-media rule
            visible = self._visible_image(feats, media)
            f, loc = visible if visible is not None else (feats, media)
            try:
                lm._use_cached_vision_x = True
                self.model._condition_vis_x(f[idx])
                for layer in lm._get_decoder_layers():
                    layer.condition_media_locations(loc[idx])
                out = self.model(
                    None, x, attention_mask=att, past_key_values=sub_cache, use_cache=True, position_ids=position
                )
            finally:
                lm.clear_conditioned_layers()
                lm._use_cached_vision_x = False
        logits = out.logits.float()
        rows, pos, target = rows.to(device), pos.to(device), target.to(device)
        at = logits[rows, pos]  # (entries, V)
        lp = at.gather(1, target[:, None]).squeeze(1) - torch.logsumexp(at, dim=-1)
        return lp, at.argmax(-1) == target


def top_k(scores: Sequence[float], candidates: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` best (candidate, score) pairs, best first; ties keep candidate order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(candidates[i], scores[i]) for i in order[:k]]


def softmax_of(scores: Sequence[float], i: int) -> float:
    """exp(score_i - logsumexp(scores)): OpenFlamingo's confidence of candidate ``i``."""
    m = max(scores)
    return math.exp(scores[i] - m) / sum(math.exp(s - m) for s in scores)
