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
   attention), so each context runs only its trie's leaves. Rows from all contexts of the batch are
   packed into one right-padded forward per ``candidate_batch`` rows, each with its context's KV
   cache rows, vision features and media positions selected.
3. Cross-attention: candidate tokens see the images exactly as they would following the context in
   one sequence. v2 (open-flamingo 2.x): they attend to the context's last image -- the cached-media
   rule open-flamingo uses during generation, fed the context's media locations. v1: positions after
   ``<image>`` get no cross-attention in either form (media locations are recomputed per call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..compat import cache_select, output_cache
from .generate import Generator, PromptInput, is_oom


@dataclass
class RankInput:
    """One context and the continuations to score after it."""

    text: str
    images: list[Any] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)
    image_keys: list[str] | None = None
    joint: bool = False  # candidate tokens as in tokenize(text + candidate) (else: tokenized alone)

    def prompt(self) -> PromptInput:
        return PromptInput(self.text, list(self.images), self.image_keys)


@dataclass
class CandidateScore:
    sum_logprob: float  # sum of the candidate tokens' log-probabilities
    n_tokens: int
    is_greedy: bool  # every candidate token is the argmax at its position

    @property
    def mean_logprob(self) -> float:
        """OpenFlamingo's length-normalised score (mean over the candidate's tokens)."""
        return self.sum_logprob / self.n_tokens


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
        ids = self.tokenizer(context + text)["input_ids"][len(context_ids):]
        if not ids:
            raise ValueError(f"candidate {text!r} has no tokens after its context")
        return ids

    # ------------------------------------------------------------------ public
    def score(self, inputs: Sequence[RankInput], batch_size: int = 8) -> list[list[CandidateScore]]:
        """Scores of every candidate of every input, in input order. Contexts are grouped by image
        count and length into batches of ``batch_size``; on out-of-memory the batch is halved."""
        order = sorted(range(len(inputs)), key=lambda i: (len(inputs[i].images), len(inputs[i].text)))
        out: list[list[CandidateScore] | None] = [None] * len(inputs)
        i = 0
        while i < len(order):
            n_img = len(inputs[order[i]].images)
            batch = [order[i]]
            i += 1
            while i < len(order) and len(batch) < batch_size and len(inputs[order[i]].images) == n_img:
                batch.append(order[i])
                i += 1
            for j, s in zip(batch, self._score_backoff([inputs[j] for j in batch])):
                out[j] = s
        return out  # type: ignore[return-value]

    def _score_backoff(self, inputs: Sequence[RankInput]) -> list[list[CandidateScore]]:
        try:
            return self.score_batch(inputs)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_oom(e) or len(inputs) == 1:
                raise
        self.gen.oom_events += 1
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = max(1, len(inputs) // 2)
        self.gen._cap = min(self.gen._cap or half, half)
        return self._score_backoff(inputs[:half]) + self._score_backoff(inputs[half:])

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
            ids[b, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[b, width - len(r):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        ctx = self.model(None, ids, attention_mask=mask, use_cache=True, vision_features=feats,
                         position_ids=positions, logits_to_keep=1)
        first = torch.log_softmax(ctx.logits[:, -1].float(), dim=-1)  # (B, V): scores candidates' first tokens
        cache = output_cache(ctx)
        ctx_len = mask.sum(-1)  # real context tokens per row

        # every candidate's tokens; the rows to run: per context, the trie leaves of tokens[:-1]
        cand = [[self.joint_tokens(texts[b], rows[b], x.text[len(texts[b]):] + c) if x.joint else self.candidate_tokens(c)
                 for c in x.candidates] for b, x in enumerate(inputs)]
        leaves: list[tuple[int, tuple[int, ...]]] = []  # (context row, input tokens)
        where: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}  # (row, prefix) -> (leaf, length)
        for b, toks in enumerate(cand):
            seqs = sorted({tuple(t[:-1]) for t in toks if len(t) > 1}, key=len, reverse=True)
            for s in seqs:
                if (b, s) in where:
                    continue  # a prefix of a longer sequence already kept
                leaf = len(leaves)
                leaves.append((b, s))
                for k in range(1, len(s) + 1):
                    where.setdefault((b, s[:k]), (leaf, k))
        leaf_logprobs: list[torch.Tensor] = [None] * len(leaves)  # type: ignore[list-item]  # (len, V)
        media = ids == self.lm.media_token_id
        for start in range(0, len(leaves), self.candidate_batch):
            chunk = leaves[start:start + self.candidate_batch]
            for i, lp in enumerate(self._run_leaves(chunk, cache, mask, media, feats, ctx_len)):
                leaf_logprobs[start + i] = lp

        results: list[list[CandidateScore]] = []
        for b, toks in enumerate(cand):
            row_scores = []
            for t in toks:
                lp0 = first[b]
                total = float(lp0[t[0]])
                greedy = int(lp0.argmax()) == t[0]
                if len(t) > 1:
                    leaf, _ = where[(b, tuple(t[:-1]))]
                    lp = leaf_logprobs[leaf][: len(t) - 1]  # positions predicting t[1:]
                    tgt = torch.tensor(t[1:], device=lp.device)
                    total += float(lp.gather(1, tgt[:, None]).sum())
                    greedy = greedy and bool((lp.argmax(-1) == tgt).all())
                row_scores.append(CandidateScore(sum_logprob=total, n_tokens=len(t), is_greedy=greedy))
            results.append(row_scores)
        return results

    def _run_leaves(self, chunk: list[tuple[int, tuple[int, ...]]], cache: Any, ctx_mask: torch.Tensor,
                    media: torch.Tensor, feats: torch.Tensor | None, ctx_len: torch.Tensor) -> list[torch.Tensor]:
        """Log-probabilities (len, V) at every position of each leaf sequence, run after its context."""
        device = ctx_mask.device
        m = max(len(s) for _, s in chunk)
        idx = torch.tensor([b for b, _ in chunk], device=device)
        x = torch.zeros((len(chunk), m), dtype=torch.long, device=device)
        own = torch.zeros((len(chunk), m), dtype=torch.long, device=device)
        for i, (_, s) in enumerate(chunk):
            x[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            own[i, : len(s)] = 1  # right padding: causal attention keeps it out of the real positions
        att = torch.cat([ctx_mask[idx], own], dim=1)
        pos = ctx_len[idx][:, None] + torch.arange(m, device=device)[None, :]
        sub_cache = cache_select(cache, idx)
        lm = self.model.lang_encoder
        self.candidate_forwards += 1
        self.candidate_rows += len(chunk)
        if feats is None:
            out = self.model(None, x, attention_mask=att, past_key_values=sub_cache, use_cache=True,
                             position_ids=pos)
        else:
            # the context's images and media positions, with open-flamingo's cached-media rule
            try:
                lm._use_cached_vision_x = True
                self.model._condition_vis_x(feats[idx])
                for layer in lm._get_decoder_layers():
                    layer.condition_media_locations(media[idx])
                out = self.model(None, x, attention_mask=att, past_key_values=sub_cache, use_cache=True,
                                 position_ids=pos)
            finally:
                lm.clear_conditioned_layers()
                lm._use_cached_vision_x = False
        logprobs = torch.log_softmax(out.logits.float(), dim=-1)
        return [logprobs[i, : len(s)] for i, (_, s) in enumerate(chunk)]


def top_k(scores: Sequence[float], candidates: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` best (candidate, score) pairs, best first; ties keep candidate order."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return [(candidates[i], scores[i]) for i in order[:k]]


def softmax_of(scores: Sequence[float], i: int) -> float:
    """exp(score_i - logsumexp(scores)): OpenFlamingo's confidence of candidate ``i``."""
    m = max(scores)
    return math.exp(scores[i] - m) / sum(math.exp(s - m) for s in scores)
