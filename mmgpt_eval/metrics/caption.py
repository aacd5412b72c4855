"""COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) computed by pycocoevalcap 1.2 itself.

What ``COCOEvalCap.evaluate()`` does, minus SPICE: the references and the predictions are each
tokenised with pycocoevalcap's ``PTBTokenizer`` (Stanford PTBTokenizer in Java, lower-cased,
punctuation tokens dropped), then ``Bleu(4)``, ``Meteor()``, ``Rouge()`` and ``Cider()`` score them.
Values are pycocoevalcap's, on its raw scale (CIDEr about 0..1.3, not x100).

* ``Java`` must be on PATH (tokeniser and METEOR); its absence is a :class:`UserError` raised before
  any work.
* METEOR runs ``java -jar meteor-1.5.jar`` (a JVM of about 1 GB that takes seconds to start): one
  instance per process, created lazily under a lock, reused, and shut down at exit.
* SPICE is not computed: pycocoevalcap's SPICE downloads Stanford CoreNLP 3.6.0 at run time, which
  an offline harness cannot do (``CaptionScores.spice`` says so).
* CIDEr is CIDEr-D with document frequencies taken from the references of the EVALUATED images: a
  score depends on which images are scored, and one image alone always scores 0 (log(1) = 0). The
  per-image CIDEr values are the ones pycocoevalcap computes with that same, fixed IDF; they average
  to the corpus value and are the right inputs for paired statistics between two systems scored on
  the same images.

Edge cases, handled so that scoring never crashes or silently shifts:

* Empty captions (or captions that are only punctuation) tokenise to ``""``; pycocoevalcap scores
  them without error: BLEU/METEOR/CIDEr 0, and ROUGE-L 1.0 against an empty reference (an artefact of
  ``"".split(" ") == [""]``). If NO reference of any evaluated image has a token, pycocoevalcap's
  CIDEr fails (``max()`` of an empty document-frequency table); we report CIDEr 0 with a note.
* Characters that Java's tokeniser treats as line breaks but pycocoevalcap does not replace
  (``\\r``, ``\\v``, ``\\f``, U+2028, U+2029) would shift every later caption onto the wrong image;
  they are replaced by spaces first (pycocoevalcap itself only replaces ``\\n``). Lone UTF-16
  surrogates (possible in JSON) would crash the UTF-8 encoding and become U+FFFD.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

from ..errors import UserError

METRICS = ("Bleu", "METEOR", "ROUGE_L", "CIDEr")
CORPUS_KEYS = {
    "Bleu": ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"),
    "METEOR": ("METEOR",),
    "ROUGE_L": ("ROUGE_L",),
    "CIDEr": ("CIDEr",),
}
SPICE_NOTE = (
    "SPICE not computed: pycocoevalcap's SPICE needs Stanford CoreNLP 3.6.0 jars that it downloads at "
    "run time (spice/get_stanford_models.py), which is not possible offline"
)
JAVA_MISSING = (
    "Java is required for COCO caption metrics (pycocoevalcap's PTB tokenizer and METEOR) but `java` "
    "is not on PATH; install a Java runtime, e.g. `sudo apt-get install default-jre-headless`"
)

# Line terminators of Java's tokeniser that pycocoevalcap does not replace (it replaces only "\n").
_JAVA_LINE_BREAKS = re.compile("[\r\x0b\x0c\u2028\u2029]")
_SURROGATES = re.compile("[\ud800-\udfff]")


@dataclass
class CaptionScores:
    """Corpus scores (``Bleu_1``..``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``), per-image scores for
    every metric (``per_image[image_id][metric]``), the SPICE note and notes on comparability."""

    corpus: dict[str, float]
    per_image: dict[str, dict[str, float]]
    spice: str = SPICE_NOTE
    notes: list[str] = field(default_factory=list)
    n_images: int = 0

    def per_image_metric(self, metric: str) -> dict[str, float]:
        return {img: scores[metric] for img, scores in self.per_image.items()}


# ------------------------------------------------------------------------------------------------
# Java, tokenisation, METEOR
# ------------------------------------------------------------------------------------------------


def java_available() -> bool:
    return shutil.which("java") is not None


def require_java() -> None:
    """Raise the one-line install hint when ``java`` is not on PATH."""
    if not java_available():
        raise UserError(JAVA_MISSING)


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _capture_fd2() -> Iterator[io.StringIO]:
    """Send file descriptor 2 (where the Java tokeniser's progress line goes) to a buffer."""
    buf = io.StringIO()
    with _STDERR_LOCK, tempfile.TemporaryFile(mode="w+b") as tmp:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no usable fd 2 (detached process): nothing to silence
            yield buf
            return
        os.dup2(tmp.fileno(), 2)
        try:
            yield buf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            buf.write(tmp.read().decode("utf-8", "replace"))


def _sanitize(caption: str) -> str:
    caption = _JAVA_LINE_BREAKS.sub(" ", caption)
    if _SURROGATES.search(caption):
        caption = _SURROGATES.sub("\ufffd", caption)
    return caption


def tokenize(captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """pycocoevalcap's ``PTBTokenizer().tokenize`` on ``{image: [caption, ...]}``.

    pycocoevalcap writes its temporary input file next to the jar; when that folder is not writable
    (a read-only install) the same Java command runs on a temporary file elsewhere."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    prepared = {k: [{"caption": _sanitize(c)} for c in caps] for k, caps in captions.items()}
    n_lines = sum(len(v) for v in prepared.values())
    jar_dir = os.path.dirname(os.path.abspath(ptbtokenizer.__file__))
    with _capture_fd2() as err:
        try:
            if os.access(jar_dir, os.W_OK):
                out = ptbtokenizer.PTBTokenizer().tokenize(prepared)
            else:
                out = _tokenize_elsewhere(prepared, jar_dir)
        except (OSError, subprocess.SubprocessError) as e:
            raise UserError(f"the PTB tokenizer (Java) failed to run: {e}") from None
    got = sum(len(v) for v in out.values())
    if got != n_lines:
        msg = err.getvalue().strip().splitlines()
        raise UserError(
            f"the PTB tokenizer (Java) returned {got} lines for {n_lines} captions" + (f": {msg[-1]}" if msg else "")
        )
    return out


def _tokenize_elsewhere(prepared: dict[str, list[dict]], jar_dir: str) -> dict[str, list[str]]:
    """Exactly ``PTBTokenizer.tokenize``, with the temporary file in the system temp folder."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS, STANFORD_CORENLP_3_4_1_JAR

    image_id = [k for k, v in prepared.items() for _ in range(len(v))]
    sentences = "\n".join([c["caption"].replace("\n", " ") for k, v in prepared.items() for c in v])
    fd, tmp = tempfile.mkstemp(prefix="mmgpt-ptb-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(sentences.encode())
        cmd = [
            "java",
            "-cp",
            os.path.join(jar_dir, STANFORD_CORENLP_3_4_1_JAR),
            "edu.stanford.nlp.process.PTBTokenizer",
            "-preserveLines",
            "-lowerCase",
            tmp,
        ]
        lines = subprocess.run(cmd, stdout=subprocess.PIPE, check=False).stdout.decode().split("\n")
    finally:
        os.unlink(tmp)
    out: dict[str, list[str]] = {}
    for k, line in zip(image_id, lines):
        out.setdefault(k, []).append(" ".join([w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS]))
    return out


_METEOR = None
_METEOR_LOCK = threading.Lock()


def get_meteor():
    """The process-wide pycocoevalcap ``Meteor`` (one JVM, started on first use)."""
    global _METEOR
    with _METEOR_LOCK:
        if _METEOR is None or _METEOR.meteor_p.poll() is not None:
            from pycocoevalcap.meteor.meteor import Meteor

            require_java()
            _METEOR = Meteor()
        return _METEOR


def shutdown_meteor() -> None:
    """Stop the METEOR JVM (registered with atexit; safe to call any time)."""
    global _METEOR
    with _METEOR_LOCK:
        m, _METEOR = _METEOR, None
    if m is None:
        return
    p = m.meteor_p
    with contextlib.suppress(Exception):
        p.stdin.close()
    with contextlib.suppress(Exception):
        p.wait(timeout=5)
    if p.poll() is None:
        with contextlib.suppress(Exception):
            p.kill()
            p.wait(timeout=5)
    for stream in (p.stdout, p.stderr):
        with contextlib.suppress(Exception):
            stream.close()


atexit.register(shutdown_meteor)


def _meteor_scores(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    meteor = get_meteor()
    try:
        score, scores = meteor.compute_score(gts, res)
    except (ValueError, OSError, BrokenPipeError) as e:
        # the JVM died (e.g. could not reserve its 2 GB heap): drop it so a later call restarts it
        detail = ""
        with contextlib.suppress(Exception):
            if meteor.meteor_p.poll() is not None:
                detail = meteor.meteor_p.stderr.read().decode("utf-8", "replace").strip().splitlines()[-1]
        with contextlib.suppress(Exception):
            meteor.lock.release()
        shutdown_meteor()
        raise UserError(f"METEOR (java -jar meteor-1.5.jar) failed: {detail or e}") from None
    return float(score), [float(s) for s in scores]


# ------------------------------------------------------------------------------------------------
# Scoring
# ------------------------------------------------------------------------------------------------


def score_captions(
    gts: Mapping[str, Sequence[str]],
    res: Mapping[str, str],
    metrics: Sequence[str] = METRICS,
) -> CaptionScores:
    """Score one caption per image (``res``) against the reference captions (``gts``).

    Only the images in ``res`` are evaluated (their order is kept); each must have references in
    ``gts``. ``metrics`` is a subset of ``("Bleu", "METEOR", "ROUGE_L", "CIDEr")``."""
    require_java()
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise UserError(f"unknown caption metrics {unknown}; choose from {', '.join(METRICS)}")
    if not res:
        raise UserError("no predicted captions to score")
    missing = [k for k in res if k not in gts]
    if missing:
        shown = ", ".join(str(k) for k in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise UserError(f"{len(missing)} predicted images have no reference captions (e.g. {shown})")
    for k, c in res.items():
        if not isinstance(c, str):
            raise UserError(f"the predicted caption of image {k} is not a string")
    for k in res:
        refs = gts[k]
        if isinstance(refs, str) or not refs or not all(isinstance(c, str) for c in refs):
            raise UserError(f"image {k} needs a non-empty list of reference caption strings")

    ids = list(res)
    gts_tok = tokenize({k: list(gts[k]) for k in ids})
    res_tok = tokenize({k: [res[k]] for k in ids})

    corpus: dict[str, float] = {}
    per_image: dict[str, dict[str, float]] = {str(k): {} for k in ids}
    notes: list[str] = []

    def put(name: str, score: float, scores: Sequence[float]) -> None:
        corpus[name] = float(score)
        for k, s in zip(ids, scores):
            per_image[str(k)][name] = float(s)

    if "Bleu" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        with contextlib.redirect_stdout(io.StringIO()):  # BleuScorer prints its totals
            score, scores = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
        for n in range(4):
            put(f"Bleu_{n + 1}", score[n], scores[n])
    if "METEOR" in metrics:
        put("METEOR", *_meteor_scores(gts_tok, res_tok))
    if "ROUGE_L" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        put("ROUGE_L", *Rouge().compute_score(gts_tok, res_tok))
    if "CIDEr" in metrics:
        from pycocoevalcap.cider.cider import Cider

        if any(ref.split() for k in ids for ref in gts_tok[k]):
            put("CIDEr", *Cider().compute_score(gts_tok, res_tok))
        else:
            put("CIDEr", 0.0, [0.0] * len(ids))
            notes.append("no reference caption has any token after PTB tokenization: CIDEr reported as 0")
        notes.append(
            f"CIDEr IDF computed over the {len(ids)} evaluated images; scores on different image subsets "
            "are not comparable, and per-image CIDEr values use this fixed IDF (use them for paired "
            "statistics on the same images)"
        )
        if len(ids) == 1:
            notes.append("a single evaluated image always gets CIDEr 0 (its IDF is log(1) = 0)")
    ordered = {key: corpus[key] for m in METRICS if m in metrics for key in CORPUS_KEYS[m]}
    return CaptionScores(corpus=ordered, per_image=per_image, notes=notes, n_images=len(ids))
