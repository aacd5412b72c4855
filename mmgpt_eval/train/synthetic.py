"""Training text this project writes itself (no third-party text): easy-VQA image attributes,
captions and detailed descriptions, counting captions/descriptions, and language-only instructions
with long answers. Everything is a deterministic function of a seed.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

SHAPES = ("circle", "rectangle", "triangle")
COLOURS = ("red", "green", "blue", "black", "gray", "teal", "brown", "yellow")
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


@dataclass(frozen=True)
class ShapeImage:
    image_id: int
    colour: str
    shape: str


def _present(q: str, a: str) -> tuple[str | None, bool | None]:
    """For an easy-VQA yes/no question: which attribute word it asks about and whether it is present."""
    words = re.findall(r"[a-z]+", q)
    target = next((w for w in words if w in SHAPES or w in COLOURS), None)
    negated = "not" in words or "no" in words[:3] or (len(words) > 1 and words[1] == "no")
    yes = a == "yes"
    return target, (yes != negated)


def infer_attributes(questions: list[str], answers: list[str], image_ids: list[int]) -> dict[int, ShapeImage]:
    """Colour and shape of every easy-VQA image, from its questions and answers."""
    colour: dict[int, str] = {}
    shape: dict[int, str] = {}
    for q, a, i in zip(questions, answers, image_ids):
        m = re.match(r"what (?:color is the|is the color of the) (\w+)\?", q)
        if m:
            colour[i] = a
            if m.group(1) in SHAPES:
                shape[i] = m.group(1)
            continue
        m = re.match(r"what is the (\w+) shape\?", q)
        if m:
            colour[i], shape[i] = m.group(1), a
            continue
        if q.startswith("what shape"):
            shape[i] = a
            continue
        if a in ("yes", "no"):
            target, present = _present(q, a)
            if target and present:
                (shape if target in SHAPES else colour)[i] = target
    return {i: ShapeImage(i, colour[i], shape[i]) for i in set(colour) & set(shape)}


@functools.lru_cache(maxsize=2)
def easyvqa_attributes(split: str) -> dict[int, ShapeImage]:
    import easy_vqa

    qs, ans, ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    return infer_attributes(qs, ans, ids)


# ----------------------------------------------------------------------------- image text
CAPTION_INSTRUCTIONS = [
    "Write a short caption for the image.",
    "Give a brief caption of this picture.",
    "Caption the image in a few words.",
    "What does this picture show? Answer briefly.",
    "Provide a one-line caption.",
    "Summarize the image in a short phrase.",
]
DESCRIBE_INSTRUCTIONS = [
    "Describe this picture in detail.",
    "Give a detailed description of the image.",
    "Describe the image in detail.",
    "Explain everything you can see in this image.",
    "Tell me about this picture, with as much detail as you can.",
    "Write a full description of what the image contains.",
    "Can you describe the scene in several sentences?",
    "Describe the picture in a few sentences.",
    "What is in this image? Please give a detailed answer.",
    "Write a paragraph describing this image.",
    "Please describe everything in the picture.",
    "Describe the whole image carefully.",
]


def shape_caption(img: ShapeImage) -> str:
    return f"a {img.colour} {img.shape}."


def shape_description(img: ShapeImage, rng: random.Random) -> str:
    # every description opens with "The" and every caption with "a": greedy decoding picks the first
    # token alone, so a description's first-token mass must not be split across openers
    openers = [
        f"The image shows a single {img.colour} {img.shape} on a plain background.",
        f"The picture contains one {img.shape}, and it is {img.colour}.",
        f"The image has a {img.colour} {img.shape} drawn on a light background.",
    ]
    middles = [
        f"The {img.shape} is the only object in the picture, so nothing else competes for attention.",
        f"Its colour is a flat {img.colour}, with clean edges and no texture.",
        f"The background is simple and empty, which makes the {img.colour} {img.shape} easy to see.",
    ]
    closers = [
        "There is no text, no person and no other shape in the scene.",
        "Overall it is a very simple, clear image with one coloured shape.",
        f"If you had to name it in two words, you would call it a {img.colour} {img.shape}.",
    ]
    return " ".join([rng.choice(openers), rng.choice(middles), rng.choice(closers)])


def _plural(kind: str, n: int) -> str:
    return kind if n == 1 else kind + "s"


def counting_summary(shapes) -> list[str]:
    groups: dict[tuple[str, str], int] = {}
    for s in shapes:
        groups[(s.colour, s.kind)] = groups.get((s.colour, s.kind), 0) + 1
    return [f"{NUMBER_WORDS[n] if n <= 10 else n} {c} {_plural(k, n)}" for (c, k), n in sorted(groups.items())]


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def counting_caption(shapes) -> str:
    if not shapes:
        return "an empty white picture."
    return _join(counting_summary(shapes)) + "."


def counting_description(shapes, rng: random.Random) -> str:
    n = len(shapes)
    if n == 0:
        return (
            "The image is completely empty: it shows a plain white background with no shapes at all. "
            "There is nothing to count and nothing else to describe."
        )
    parts = counting_summary(shapes)
    first = rng.choice(
        [
            f"The image shows {NUMBER_WORDS[n]} {_plural('shape', n)} on a white background.",
            f"The picture has {NUMBER_WORDS[n]} {_plural('shape', n)} in it.",
        ]
    )
    second = f"In detail, I can see {_join(parts)}."
    third = rng.choice(
        [
            "The shapes are small and do not overlap.",
            "Each shape is drawn in a single flat colour.",
            "They are spread over the picture with some space between them.",
        ]
    )
    return " ".join([first, second, third])


# ----------------------------------------------------------------------------- language-only
_TOPICS = {
    "the ocean": [
        "covers most of the surface of the Earth",
        "is home to whales, fish and countless tiny animals",
        "has salty water and strong currents",
        "moves with the tides every day",
        "gives us food and helps to control the climate",
    ],
    "trees": [
        "make oxygen from sunlight, water and air",
        "can live for hundreds of years",
        "give shade and homes to birds",
        "lose their leaves in autumn in many places",
        "hold the soil together with their roots",
    ],
    "the moon": [
        "travels around the Earth about once a month",
        "reflects the light of the sun",
        "has no air and no liquid water on its surface",
        "pulls on the oceans and causes tides",
        "was first visited by people in 1969",
    ],
    "music": [
        "can make people feel happy or calm",
        "is built from rhythm, melody and harmony",
        "is played on instruments or sung with the voice",
        "exists in every culture of the world",
        "is often shared at festivals and celebrations",
    ],
    "bicycles": [
        "have two wheels, pedals and a chain",
        "are a cheap and healthy way to travel",
        "do not pollute the air",
        "need air in their tyres and oil on the chain",
        "are used by millions of people to get to work",
    ],
    "cats": [
        "are small animals that many people keep as pets",
        "sleep for a large part of the day",
        "can see well in low light",
        "clean their fur with their tongue",
        "like to climb and explore",
    ],
    "mountains": [
        "are high areas of land with steep sides",
        "are often covered with snow at the top",
        "are formed over millions of years",
        "are popular places for hiking and climbing",
        "have colder air the higher you go",
    ],
    "rain": [
        "falls from clouds when water drops become heavy",
        "helps plants and crops to grow",
        "fills rivers, lakes and reservoirs",
        "can cause floods when there is too much of it",
        "often comes with grey skies and cooler air",
    ],
    "cooking": [
        "turns raw ingredients into meals",
        "uses heat from a stove, an oven or a fire",
        "is easier with fresh vegetables and good spices",
        "can be a relaxing hobby",
        "brings families and friends together around the table",
    ],
    "the sun": [
        "is a star at the centre of our solar system",
        "gives the Earth light and warmth",
        "is much larger than the Earth",
        "rises in the east and sets in the west",
        "should never be looked at directly",
    ],
    "libraries": [
        "lend books to people for free",
        "are quiet places to read and study",
        "often have computers and newspapers",
        "help children learn to love reading",
        "keep old records and local history",
    ],
    "gardens": [
        "are places where people grow flowers and vegetables",
        "need water, sunlight and care",
        "attract bees and butterflies",
        "change with every season",
        "can be small or very large",
    ],
}
_LISTS = {
    "fruits": ["apple", "banana", "cherry", "grape", "lemon", "orange", "pear", "plum"],
    "animals": ["dog", "cat", "horse", "rabbit", "elephant", "lion", "fox", "owl"],
    "colors": ["red", "green", "blue", "yellow", "purple", "orange", "black", "white"],
    "vegetables": ["carrot", "potato", "onion", "tomato", "pepper", "cabbage", "pea", "bean"],
    "sports": ["football", "tennis", "swimming", "running", "cycling", "basketball", "skiing", "rowing"],
    "musical instruments": ["piano", "guitar", "violin", "drum", "flute", "trumpet", "cello", "harp"],
}


def language_example(rng: random.Random) -> tuple[str, str]:
    """(instruction, long answer) written by code."""
    kind = rng.choice(["sentences", "list", "explain", "paragraph", "advice"])
    if kind == "list":
        cat = rng.choice(list(_LISTS))
        n = rng.randint(3, 5)
        items = rng.sample(_LISTS[cat], n)
        instr = rng.choice(
            [
                f"Name {NUMBER_WORDS[n]} {cat}.",
                f"Can you list {NUMBER_WORDS[n]} {cat}?",
                f"Give me {n} examples of {cat}.",
            ]
        )
        body = (
            f"Here are {NUMBER_WORDS[n]} {cat}: {_join(items)}. "
            + f"Each of them is a common example, and there are many more {cat} you could add to the list."
        )
        return instr, body
    topic = rng.choice(list(_TOPICS))
    facts = list(_TOPICS[topic])
    rng.shuffle(facts)
    subject = topic[0].upper() + topic[1:]
    if kind == "sentences":
        n = rng.randint(2, 4)
        instr = rng.choice(
            [f"Write {NUMBER_WORDS[n]} sentences about {topic}.", f"Tell me {NUMBER_WORDS[n]} facts about {topic}."]
        )
        return instr, " ".join(f"{subject} {f}." for f in facts[:n])
    if kind == "explain":
        instr = rng.choice(
            [
                f"Explain what {topic} is to a child.",
                f"Why is {topic} important?",
                f"What should everyone know about {topic}?",
            ]
        )
        return instr, (
            f"{subject} {facts[0]}. It also {facts[1]}. Many people find it interesting because it "
            f"{facts[2]}. In short, {topic} matters in everyday life."
        )
    if kind == "advice":
        instr = rng.choice([f"Give me some advice about {topic}.", f"How can I learn more about {topic}?"])
        return instr, (
            f"A good first step is to remember that {topic} {facts[0]}. Read a simple book, watch a "
            f"short film, and talk to people who know more than you. Keep notes, ask questions, and "
            f"come back to the subject often."
        )
    instr = rng.choice([f"Write a short paragraph about {topic}.", f"Describe {topic} in a few sentences."])
    return instr, " ".join(f"{subject} {f}." for f in facts[:3]) + f" That is why people care about {topic}."


def short_answer_for(text: str) -> str:
    """The ablation's short-answer version of a long answer: its first few words."""
    words = text.split()
    return " ".join(words[:3]).rstrip(",.:;") + "."
