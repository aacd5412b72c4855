"""The judgment modes over lists of answers: rubric grading (per dimension, per turn), the
reference-guided relative score (candidate / reference x 100) and the pairwise comparison of two
runs' answers, judged in both orders (a pair whose two verdicts disagree is a tie).

Every judgment is asked ``repeats`` times (the repeat index goes into the cache key and to the judge
as its seed), read through the :class:`~mmgpt_eval.judge.cache.JudgmentCache` (answers already judged
cost nothing) and parsed strictly: a reply that does not parse, or a call that failed after its
retries, is a judgment with ``failure`` set and no score."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import UserError
from .backends import Judge, JudgeCallError, Messages
from .cache import JudgmentCache, judgment_key
from .parse import ParseFailure, parse_scores, parse_verdict
from .prompts import PAIRWISE, RELATIVE, RUBRIC, Template, render_pairwise, render_relative, render_rubric


#: a reply's scores by name, or why it has none
ScoreParser = Callable[[str], "dict[str, int] | ParseFailure"]


@dataclass(frozen=True)
class AnswerItem:
    """One sample's answers from one run: ``turns`` as (user message, model answer) in order.
    ``image`` is the description the judge reads; ``image_id`` identifies the image itself (e.g. its
    sha256) so that a new image with the same caption is judged again."""

    id: str
    turns: tuple[tuple[str, str], ...]
    image: str | None = None
    image_id: str | None = None
    reference: str | None = None  # the reference answer to the last turn (relative mode)


@dataclass
class Judgment:
    item_id: str
    turn: int
    repeat: int
    scores: dict[str, int] | None  # rubric / relative; None on failure
    reply: str
    failure: str | None = None  # "parse: ..." or "call: ..."

    @property
    def relative(self) -> float | None:
        """Relative mode: candidate / reference x 100."""
        if not self.scores or "reference" not in self.scores:
            return None
        return 100.0 * self.scores["candidate"] / self.scores["reference"]


@dataclass
class PairJudgment:
    item_id: str
    turn: int
    repeat: int
    first: str | None  # verdict with run A's answer shown first ("A" / "B" / "tie"), None on failure
    second: str | None  # verdict with the order swapped, in the order shown
    replies: tuple[str, str]
    failure: str | None = None

    @property
    def outcome(self) -> str | None:
        """``"a"``, ``"b"`` or ``"tie"`` (both orders must agree on a winner), None on failure."""
        if self.first is None or self.second is None:
            return None
        w1 = {"A": "a", "B": "b"}.get(self.first)
        w2 = {"A": "b", "B": "a"}.get(self.second)
        return w1 if w1 is not None and w1 == w2 else "tie"

    @property
    def follows_position(self) -> bool | None:
        """Both orders picked the same position (the verdict followed the position, not the answer)."""
        if self.first is None or self.second is None:
            return None
        return self.first == self.second and self.first != "tie"


@dataclass
class _Call:
    key: str
    messages: Messages
    repeat: int
    reply: str | None = None
    error: str | None = None


@dataclass
class JudgeRunner:
    """Runs judgments with one judge and one cache; counts judgments and parse failures."""

    judge: Judge
    cache: JudgmentCache
    repeats: int = 1
    identity: dict[str, Any] = field(init=False)
    judgments: int = 0
    parse_failures: int = 0
    call_failures: int = 0
    templates_used: dict[str, str] = field(default_factory=dict)
    # told how many judge calls (not answered by the cache) each batch is about to make: a progress
    # bar's total grows with it
    on_calls: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise UserError(f"judge repeats must be >= 1, got {self.repeats}")
        self.judge.check()
        self.identity = self.judge.identity()

    def provenance(self) -> dict[str, Any]:
        """What results record about the judging: the judge's identity, every template used (name ->
        sha256), the repeats, and what it cost (calls, cache hits, retries, tokens) and the failures."""
        st = self.cache.stats
        return {
            "judge": self.identity,
            "templates": dict(sorted(self.templates_used.items())),
            "repeats": self.repeats,
            "judgments": self.judgments,
            "parse_failures": self.parse_failures,
            "call_failures": self.call_failures,
            "calls": st.calls,
            "cache_hits": st.hits,
            "failed_calls": st.failed_calls,
            "retries": st.retries,
            "prompt_tokens": st.prompt_tokens,
            "completion_tokens": st.completion_tokens,
        }

    def _call(self, c: _Call) -> _Call:
        try:
            r = self.judge.complete(c.messages, repeat=c.repeat)
        except JudgeCallError as e:
            self.cache.failed(e.retries)
            c.error = str(e)
            return c
        self.cache.put(c.key, r.text, r.usage, r.retries)
        c.reply = r.text
        return c

    def _ask(self, template: Template, inputs: list[tuple[Messages, str | None, int]]) -> list[_Call]:
        """Replies to (messages, image id, repeat) in order: cached ones read, the rest asked once each."""
        self.templates_used[template.name] = template.sha256
        calls = []
        for messages, image_id, repeat in inputs:
            judge_input = {"messages": messages, "image_id": image_id}
            calls.append(_Call(judgment_key(self.identity, template.sha256, judge_input, repeat), messages, repeat))
        todo: dict[str, _Call] = {}
        for c in calls:
            hit = self.cache.get(c.key) if c.key not in todo else None
            if hit is not None:
                c.reply = hit["reply"]
            elif c.key not in todo:
                todo[c.key] = c
        workers = max(1, int(getattr(self.judge, "concurrency", 1)))
        if todo and self.on_calls is not None:
            self.on_calls(len(todo))
        if todo:
            pool = ThreadPoolExecutor(max_workers=workers)
            try:
                done = {c.key: c for c in pool.map(self._call, todo.values())}
            except BaseException:
                # a refused key, a bug or Ctrl-C: ask nothing more (replies already written stay cached)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            for c in calls:
                if c.reply is None and c.key in done:
                    c.reply, c.error = done[c.key].reply, done[c.key].error
        return calls

    def _scores(self, c: _Call, parse: ScoreParser) -> tuple[dict[str, int] | None, str | None]:
        self.judgments += 1
        if c.reply is None:
            self.call_failures += 1
            return None, f"call: {c.error}"
        parsed = parse(c.reply)
        if isinstance(parsed, ParseFailure):
            self.parse_failures += 1
            return None, f"parse: {parsed.reason}"
        return parsed, None

    def graded(
        self,
        template: Template,
        slots: list[tuple[str, int, int]],
        inputs: list[tuple[Messages, str | None, int]],
        parse: ScoreParser | None = None,
    ) -> list[Judgment]:
        """One Judgment per (item id, turn, repeat) slot from the judge's replies to ``inputs`` (messages,
        image id, repeat), asked through the cache and counted (judgments, parse and call failures).
        ``parse``: a reply's scores or a ParseFailure (default: the template's ``SCORES:`` line); modes
        defined outside this module (``judge.grade``) pass their own."""
        read = parse or (lambda text: parse_scores(text, template.dimensions))
        out = []
        for (item_id, t, r), c in zip(slots, self._ask(template, inputs)):
            scores, failure = self._scores(c, read)
            out.append(Judgment(item_id, t, r, scores, c.reply or "", failure))
        return out

    def rubric(self, items: list[AnswerItem], template: Template = RUBRIC) -> list[Judgment]:
        """Every turn of every item, graded alone with the conversation before it as context."""
        slots, inputs = [], []
        for it in items:
            for t, (question, answer) in enumerate(it.turns):
                msgs = render_rubric(template, question, answer, history=list(it.turns[:t]), image=it.image)
                for r in range(self.repeats):
                    slots.append((it.id, t, r))
                    inputs.append((msgs, it.image_id, r))
        return self.graded(template, slots, inputs)

    def relative(self, items: list[AnswerItem], template: Template = RELATIVE) -> list[Judgment]:
        """The last turn's answer against the item's reference answer, both scored 1-10."""
        slots, inputs = [], []
        for it in items:
            if it.reference is None:
                raise UserError(f"item {it.id}: relative judging needs a reference answer")
            question, answer = it.turns[-1]
            msgs = render_relative(template, question, it.reference, answer, image=it.image)
            for r in range(self.repeats):
                slots.append((it.id, len(it.turns) - 1, r))
                inputs.append((msgs, it.image_id, r))
        return self.graded(template, slots, inputs)

    def _verdict(self, c: _Call) -> tuple[str | None, str | None]:
        self.judgments += 1
        if c.reply is None:
            self.call_failures += 1
            return None, f"call: {c.error}"
        v = parse_verdict(c.reply)
        if isinstance(v, ParseFailure):
            self.parse_failures += 1
            return None, f"parse: {v.reason}"
        return v, None

    def pairwise(
        self, items_a: list[AnswerItem], items_b: list[AnswerItem], template: Template = PAIRWISE
    ) -> list[PairJudgment]:
        """Run A's answers against run B's, per turn, matched by item id (both runs must hold the same
        items and turns); the earlier turns are shown as the user's messages only, so neither run's
        earlier answers sway the verdict. Each pair is judged as (A, B) and as (B, A)."""
        by_id = {it.id: it for it in items_b}
        ids_a = {it.id for it in items_a}
        unmatched = sorted(ids_a ^ set(by_id))
        if unmatched or len(ids_a) != len(items_a):
            raise UserError(
                f"pairwise judging needs the same items, once each, in both runs; unmatched: {unmatched[:5]}"
            )
        slots, inputs = [], []
        for a in items_a:
            b = by_id[a.id]
            if [q for q, _ in a.turns] != [q for q, _ in b.turns]:
                raise UserError(f"item {a.id}: the two runs asked different questions")
            for t, ((question, ans_a), (_, ans_b)) in enumerate(zip(a.turns, b.turns)):
                history = [(q, "(reply not shown)") for q, _ in a.turns[:t]]
                ab = render_pairwise(template, question, ans_a, ans_b, history=history, image=a.image)
                ba = render_pairwise(template, question, ans_b, ans_a, history=history, image=a.image)
                for r in range(self.repeats):
                    slots.append((a.id, t, r))
                    inputs += [(ab, a.image_id, r), (ba, a.image_id, r)]
        calls = self._ask(template, inputs)
        out = []
        for i, (item_id, t, r) in enumerate(slots):
            c1, c2 = calls[2 * i], calls[2 * i + 1]
            v1, f1 = self._verdict(c1)
            v2, f2 = self._verdict(c2)
            out.append(PairJudgment(item_id, t, r, v1, v2, (c1.reply or "", c2.reply or ""), f1 or f2))
        return out
