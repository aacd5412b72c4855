"""Speed of VQA scoring: the fast scorer against the straightforward official algorithm.

    .venv/bin/python benchmarks/vqa_scoring_speed.py [--questions 200000] [--repeats 3] [--seed 0]

Generates seeded synthetic official-format data (several questions per image; yes/no, number and
other answer types; ten annotator answers with frequent disagreement, case/punctuation/article/
number-word variants and a long tail of rare answers; predictions that are right, variants, wrong or
noisy generations), scores it with ``mmgpt_eval.metrics.vqa.score_vqa`` and with
``mmgpt_eval_dev.vqa_reference.score_vqa_reference`` in both normalisation modes, asserts the
results are identical (overall, per type, per question), and prints median times and the ratio.
Not a test: it takes a couple of minutes.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmgpt_eval.metrics.vqa import score_vqa
from mmgpt_eval_dev.vqa_reference import score_vqa_reference

QUESTION_TYPES = {
    "yes/no": [
        "is the",
        "is there a",
        "are the",
        "does the",
        "is this a",
        "can you",
        "is it",
        "are there",
        "is the man",
        "do you",
        "was",
        "could",
        "is this person",
        "has the",
    ],
    "number": ["how many", "how many people are", "how many people are in", "what number is", "what time"],
    "other": [
        "what color is the",
        "what is the",
        "what",
        "what is",
        "what kind of",
        "what type of",
        "where is the",
        "who is",
        "why",
        "which",
        "what sport is",
        "what animal is",
        "what is the man",
        "what room is",
        "what are the",
        "how",
        "what brand",
        "what is on the",
        "none of the above",
    ],
}
COLORS = [
    "red",
    "blue",
    "green",
    "white",
    "black",
    "yellow",
    "brown",
    "gray",
    "orange",
    "pink",
    "purple",
    "silver",
    "tan",
    "beige",
    "gold",
]
NOUNS = (
    "dog cat man woman boy girl car bus train truck bike motorcycle plane boat horse cow sheep elephant "
    "giraffe zebra bear bird pizza cake sandwich banana apple orange donut table chair couch bed tv laptop "
    "phone clock vase book umbrella kite frisbee skateboard surfboard skis snowboard ball bat glove racket "
    "bottle cup fork knife spoon bowl oven sink toilet refrigerator window door street road grass snow beach "
    "water sky tree building field kitchen bathroom bedroom park sidewalk fence sign light pole tennis "
    "baseball soccer frisbee surfing skiing skateboarding eating sleeping standing sitting walking running "
    "flying playing wood metal plastic glass stone brick paper cloth leather cotton wool"
).split()
ADJ = "big small old young tall short wet dry hot cold open closed empty full new dirty clean wooden".split()
PREFIXES = ["", "", "", "the ", "a ", "The ", "A "]


def _other_answer(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        return rng.choice(COLORS)
    if r < 0.7:
        return rng.choice(NOUNS)
    if r < 0.85:
        return f"{rng.choice(ADJ + COLORS)} {rng.choice(NOUNS)}"
    # long tail: rare multi-word answers
    return " ".join(rng.choice(NOUNS + ADJ) for _ in range(rng.randint(2, 3)))


def _number_answer(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.85:
        return str(min(int(rng.expovariate(0.35)), 40))
    if r < 0.92:
        return rng.choice(["1,000", "2:30", "3.5", "10:15", "100", "12.5", "1:00"])
    return str(rng.randint(41, 5000))


_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _variant(ans: str, rng: random.Random) -> str:
    """A surface variant an annotator or a model might produce."""
    r = rng.random()
    if r < 0.2:
        return ans.capitalize()
    if r < 0.35:
        return ans + rng.choice([".", "!", "?", " .", ".."])
    if r < 0.5 and ans.isdigit() and int(ans) <= 10:
        return _NUMBER_WORDS[int(ans)]
    if r < 0.6:
        return rng.choice(PREFIXES) + ans
    if r < 0.7:
        return ans.replace(" ", "-") if " " in ans else f" {ans} "
    if r < 0.8:
        return ans.upper()
    if r < 0.85:
        return f"{ans}\n"
    if r < 0.9:
        return f"({ans})"
    return ans


def make_synthetic(n_questions: int, seed: int = 0) -> tuple[list[dict], list[dict], list[dict]]:
    """Seeded official-format (questions, annotations, predictions)."""
    rng = random.Random(seed)
    questions: list[dict] = []
    annotations: list[dict] = []
    predictions: list[dict] = []
    image_id = 9
    while len(annotations) < n_questions:
        image_id += rng.randint(1, 40)
        for k in range(rng.choice([3, 4, 5, 5, 6, 6, 7, 10])):
            if len(annotations) >= n_questions:
                break
            qid = image_id * 1000 + k
            r = rng.random()
            atype = "yes/no" if r < 0.38 else ("number" if r < 0.50 else "other")
            qtype = rng.choice(QUESTION_TYPES[atype])
            if atype == "yes/no":
                truth = rng.choice(["yes", "no"])
                alt = [("no" if truth == "yes" else "yes")]
            elif atype == "number":
                truth = _number_answer(rng)
                alt = [_number_answer(rng) for _ in range(3)]
            else:
                truth = _other_answer(rng)
                alt = [_other_answer(rng) for _ in range(4)]
            consensus = rng.random()
            answers = []
            for a in range(10):
                x = rng.random()
                if consensus < 0.4 or x < 0.55:
                    ans = truth
                elif x < 0.8:
                    ans = _variant(truth, rng)
                else:
                    ans = rng.choice(alt)
                    if rng.random() < 0.3:
                        ans = _variant(ans, rng)
                answers.append(
                    {"answer": ans, "answer_confidence": rng.choice(["yes", "yes", "maybe", "no"]), "answer_id": a + 1}
                )
            questions.append({"image_id": image_id, "question": f"{qtype} ... ?", "question_id": qid})
            annotations.append(
                {
                    "question_type": qtype,
                    "multiple_choice_answer": truth,
                    "answers": answers,
                    "image_id": image_id,
                    "answer_type": atype,
                    "question_id": qid,
                }
            )
            p = rng.random()
            if p < 0.45:
                pred = truth
            elif p < 0.65:
                pred = _variant(truth, rng)
            elif p < 0.85:
                pred = rng.choice(alt)
            else:
                pred = rng.choice(
                    [
                        f"{truth}, it is",
                        f"it's {truth}",
                        f"{truth}\t",
                        f"\n{truth}",
                        "I don't know",
                        "dont know",
                        "",
                        "none",
                        f"{truth} and {rng.choice(alt)}",
                        f"{truth}/{rng.choice(alt)}",
                        "1,000 people",
                        f"{truth}" + "." * rng.randint(30, 40),
                    ]
                )
            predictions.append({"question_id": qid, "answer": pred})
    rng.shuffle(predictions)  # results files are not in annotation order
    return questions, annotations, predictions


def _time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="official,openflamingo")
    ap.add_argument("--output", default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    figures: dict = {"questions": args.questions, "repeats": args.repeats, "modes": {}}

    t0 = time.perf_counter()
    q, a, p = make_synthetic(args.questions, args.seed)
    n_distinct = len({d["answer"] for ann in a for d in ann["answers"]} | {x["answer"] for x in p})
    disagree = sum(len({d["answer"] for d in ann["answers"]}) > 1 for ann in a)
    print(
        f"generated {len(a)} questions on {len({x['image_id'] for x in q})} images in "
        f"{time.perf_counter() - t0:.1f}s; {disagree / len(a):.0%} with disagreeing answers, "
        f"{n_distinct} distinct answer strings"
    )
    ok = True
    for mode in args.modes.split(","):
        fast_med, fast_all, fast = _time(lambda mode=mode: score_vqa(q, a, p, mode=mode), args.repeats)
        ref_med, ref_all, ref = _time(lambda mode=mode: score_vqa_reference(q, a, p, mode=mode), args.repeats)
        same = (
            fast.overall == ref.overall
            and fast.perQuestionType == ref.perQuestionType
            and fast.perAnswerType == ref.perAnswerType
            and fast.perQuestion == ref.perQuestion
            and list(fast.perQuestion) == list(ref.perQuestion)
        )
        ok &= same
        print(f"[{mode}] overall {fast.overall} | per answer type {fast.perAnswerType}")
        print(f"[{mode}] fast      median {fast_med:7.3f}s  runs {', '.join(f'{t:.3f}' for t in fast_all)}")
        print(f"[{mode}] reference median {ref_med:7.3f}s  runs {', '.join(f'{t:.3f}' for t in ref_all)}")
        print(f"[{mode}] identical results: {same}; speed ratio (reference / fast): {ref_med / fast_med:.1f}x")
        figures["modes"][mode] = {
            "fast_median_s": round(fast_med, 3),
            "reference_median_s": round(ref_med, 3),
            "ratio": round(ref_med / fast_med, 2),
            "identical": same,
        }
        assert same, f"{mode}: fast and reference results differ"
    if args.output:
        import json

        Path(args.output).write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
