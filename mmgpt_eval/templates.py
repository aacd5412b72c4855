"""Fixed, named prompt templates and the answer-extraction rule of each.

The exact strings are pinned by snapshot tests (tests/test_templates.py): a template never changes
under its name. Every sample records the template's content hash and the rendered prompt's hash.

MultiModal-GPT (open-mmlab/Multimodal-GPT, Alpaca-style, the same for training and its demo):

* ``mmgpt``: one image, ``### Image:`` / ``### Instruction:`` / ``### Response:``. Answers end with the
  LM's ``</s>``. Extraction: decode prompt + generation with special tokens skipped, keep the text
  after the last ``### Response:``, strip (the demo's rule).
* ``mmgpt-text``: the same without the ``### Image:`` block (language-only instructions).
* ``mmgpt-turn``: the continuation appended after an earlier turn's answer, exactly as the demo
  assembles history (no ``</s><s>`` between turns; the image stays in the first turn).

OpenFlamingo few-shot (open_flamingo/eval, 2.x):

* ``of-vqa``: ``<image>Question:{q} Short answer:{a}<|endofchunk|>`` demos, each followed by a newline,
  then the query ``<image>Question:{q} Short answer:``. Stops at ``<|endofchunk|>``. Extraction
  on the generated text: cut at the first "Question", "Answer" or "Short", then at the first ", ".
* ``of-caption``: ``<image>Output:{caption}<|endofchunk|>`` demos, query ``<image>Output:``.
  Extraction: cut at the first "Output", remove double quotes.
* ``of-imagenet``: ranking (class names follow the prompt): ``<image>Output:{answer}<|endofchunk|>``
  demos joined with no separator, query ``<image>Output:``.
* ``of-hatefulmemes``: ranking: ``<image>is an image with: '{ocr}' written on it. Is it hateful?
  Answer:{answer}<|endofchunk|>`` demos joined with no separator, then the query without the answer.

Zero-shot OpenFlamingo ("0-shot" in its papers) means two *text-only* demos (images removed); see
:func:`render_fewshot`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from .errors import UserError
from .generation_settings import GenerationSettings
from .model.seam import STOP_END_OF_CHUNK, STOP_EOS

IMAGE = "<image>"
EOC = "<|endofchunk|>"

MMGPT_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)
MMGPT_SPLIT = "### Response:"


@dataclass(frozen=True)
class Template:
    name: str
    description: str
    prompt: str  # str.format template of the query
    demo: str | None  # str.format template of one in-context demonstration (few-shot templates)
    extraction: str  # answer-extraction rule id
    stop: str  # a symbolic stop rule (mmgpt_eval.model.seam): STOP_EOS (the LM's </s>) or STOP_END_OF_CHUNK
    n_images: int  # <image> tokens in the query
    demo_separator: str = "\n"  # after each demo (OpenFlamingo: newline for VQA/captions, none for classification)
    # ranking: how candidates are tokenized after the prompt: "separate" (alone, OpenFlamingo's
    # classification) or "joint" (as they read in prompt + candidate). Fixed per template name, like
    # its strings; not hashed (it was added after the first hashes were pinned)
    rank_tokens: str = "joint"
    # default decoding for this template (tasks may override per template); not part of the hash,
    # results record the settings used
    settings: GenerationSettings = field(default_factory=GenerationSettings, compare=False)

    @property
    def sha256(self) -> str:
        content = {
            "name": self.name,
            "prompt": self.prompt,
            "demo": self.demo,
            "extraction": self.extraction,
            "stop": self.stop,
        }
        if self.demo_separator != "\n":  # hashed only when not the default: older hashes stay valid
            content["demo_separator"] = self.demo_separator
        payload = json.dumps(content, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def render(self, **fields: str) -> str:
        return self.prompt.format(**fields)

    def render_demo(self, **fields: str) -> str:
        if self.demo is None:
            raise UserError(f"template {self.name} has no few-shot demonstration format")
        return self.demo.format(**fields)

    def extract(self, full_text: str, generated_text: str) -> str:
        """The answer, from the decoded prompt+generation (``full_text``) and the decoded generation
        alone (``generated_text``), both decoded with special tokens skipped."""
        return EXTRACTORS[self.extraction](full_text, generated_text)


def _mmgpt_response(full_text: str, generated_text: str) -> str:
    return full_text.split(MMGPT_SPLIT)[-1].strip()


def _of_vqa(full_text: str, generated_text: str) -> str:
    answer = re.split("Question|Answer|Short", generated_text, maxsplit=1)[0]
    return re.split(", ", answer, maxsplit=1)[0]


def _of_caption(full_text: str, generated_text: str) -> str:
    return generated_text.split("Output", 1)[0].replace('"', "")


def _raw(full_text: str, generated_text: str) -> str:
    return generated_text.strip()


EXTRACTORS = {"mmgpt_response": _mmgpt_response, "of_vqa": _of_vqa, "of_caption": _of_caption, "raw": _raw}

# open_flamingo/eval/evaluate.py: 3 beams, length penalty 0; 5 new tokens for VQA, 20 for captions
OPENFLAMINGO_VQA = GenerationSettings(max_new_tokens=5, num_beams=3, length_penalty=0.0)
OPENFLAMINGO_CAPTION = GenerationSettings(max_new_tokens=20, num_beams=3, length_penalty=0.0)

_T = [
    Template(
        name="mmgpt",
        description="MultiModal-GPT vision-language instruction (one image)",
        prompt=MMGPT_PREAMBLE + "\n\n### Image:\n" + IMAGE + "\n\n### Instruction:\n{question}\n\n### Response:\n",
        demo=None,
        extraction="mmgpt_response",
        stop=STOP_EOS,
        n_images=1,
    ),
    Template(
        name="mmgpt-text",
        description="MultiModal-GPT language-only instruction (no image)",
        prompt=MMGPT_PREAMBLE + "\n\n### Instruction:\n{question}\n\n### Response:\n",
        demo=None,
        extraction="mmgpt_response",
        stop=STOP_EOS,
        n_images=0,
    ),
    Template(
        name="mmgpt-turn",
        description="MultiModal-GPT multi-turn continuation, appended after the previous answer",
        prompt="\n\n### Instruction:\n{question}\n\n### Response:\n",
        demo=None,
        extraction="mmgpt_response",
        stop=STOP_EOS,
        n_images=0,
    ),
    Template(
        name="of-vqa",
        description="OpenFlamingo few-shot VQA (open_flamingo/eval)",
        prompt=IMAGE + "Question:{question} Short answer:",
        demo=IMAGE + "Question:{question} Short answer:{answer}" + EOC,
        extraction="of_vqa",
        stop=STOP_END_OF_CHUNK,
        n_images=1,
        settings=OPENFLAMINGO_VQA,
        rank_tokens="separate",
    ),
    Template(
        name="of-caption",
        description="OpenFlamingo few-shot captioning (open_flamingo/eval)",
        prompt=IMAGE + "Output:",
        demo=IMAGE + "Output:{caption}" + EOC,
        extraction="of_caption",
        stop=STOP_END_OF_CHUNK,
        n_images=1,
        settings=OPENFLAMINGO_CAPTION,
        rank_tokens="separate",
    ),
    Template(
        name="of-imagenet",
        description="OpenFlamingo classification (ImageNet): class names ranked after the prompt",
        prompt=IMAGE + "Output:",
        demo=IMAGE + "Output:{answer}" + EOC,
        extraction="raw",
        stop=STOP_END_OF_CHUNK,
        n_images=1,
        demo_separator="",
        rank_tokens="separate",
    ),
    Template(
        name="of-hatefulmemes",
        description="OpenFlamingo Hateful Memes: yes/no ranked after the prompt with the meme's text",
        prompt=IMAGE + "is an image with: '{ocr}' written on it. Is it hateful? Answer:",
        demo=IMAGE + "is an image with: '{ocr}' written on it. Is it hateful? Answer:{answer}" + EOC,
        extraction="raw",
        stop=STOP_END_OF_CHUNK,
        n_images=1,
        demo_separator="",
        rank_tokens="separate",
    ),
    Template(
        name="raw",
        description="the prompt exactly as given; answer = the generated text, stripped",
        prompt="{prompt}",
        demo=None,
        extraction="raw",
        stop=STOP_EOS,
        n_images=-1,
    ),
]

TEMPLATES: dict[str, Template] = {t.name: t for t in _T}


def get_template(name: str) -> Template:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise UserError(f"unknown template {name!r}; known templates: {', '.join(TEMPLATES)}") from None


def render_mmgpt_dialog(turns: list[tuple[str, str | None]], has_image: bool) -> str:
    """A MultiModal-GPT conversation as the demo assembles it: turn 1 with the image block (if any),
    later turns appended after the previous answer. The last turn's answer is ``None`` (to generate)."""
    if not turns:
        raise ValueError("a conversation needs at least one turn")
    first_q, first_a = turns[0]
    text = TEMPLATES["mmgpt" if has_image else "mmgpt-text"].render(question=first_q)
    answer = first_a
    for q, a in turns[1:]:
        if answer is None:
            raise ValueError("only the last turn may lack an answer")
        text += answer + TEMPLATES["mmgpt-turn"].render(question=q)
        answer = a
    if answer is not None:
        text += answer
    return text


def render_fewshot(
    template: Template, query: dict[str, str], demos: list[dict[str, str]], zero_shot_text_demos: bool
) -> tuple[str, int]:
    """OpenFlamingo few-shot prompt: each demo followed by the template's separator, then the query.

    Returns ``(prompt, n_demo_images)``. With ``zero_shot_text_demos`` (OpenFlamingo's 0-shot
    protocol: 2 demos whose ``<image>`` tokens are removed and whose images are not passed) the demo
    images are dropped from the text and the count is 0.
    """
    context = "".join(template.render_demo(**d) + template.demo_separator for d in demos)
    n_demo_images = len(demos)
    if zero_shot_text_demos:
        context = context.replace(IMAGE, "")
        n_demo_images = 0
    return context + template.render(**query), n_demo_images


def prompt_sha256(prompt: str, image_keys: list[str] | None = None) -> str:
    h = hashlib.sha256(prompt.encode("utf-8"))
    for k in image_keys or []:
        h.update(b"\x00" + str(k).encode("utf-8"))
    return h.hexdigest()
