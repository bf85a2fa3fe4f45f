"""Word scores from a fixed offline recognizer: pocketsphinx's en-us model held to GRID's grammar.

The recognizer is fixed (pocketsphinx 5.1.1 and the acoustic model in its wheel, a JSGF
grammar built from common.data.align.SLOTS, a seeded dither) so that word error rates
compare across runs and machines; nothing is downloaded. A grammar-held decoder returns a
whole six-word sentence or nothing, so per-slot accuracy compares word i with word i.
WER (substitutions + deletions + insertions over reference words, pooled over clips)
comes from jiwer. Workstation-only: the training images do not install these packages.
"""
import collections
import os
import tempfile

import numpy as np

from common.data import align
from common.errors import Lip2WavError

SAMPLE_RATE = 16000
PAD_SECONDS = 0.25
DITHER_SEED = 0


class RecognizerError(Lip2WavError, RuntimeError):
    """The recognizer cannot run; the message names the fix."""


def grammar():
    """GRID's grammar as JSGF text (no rule may be called <s>: pocketsphinx reserves it)."""
    lines = ["#JSGF V1.0;", "grammar grid;", "public <sentence> = %s;" % " ".join("<%s>" % s for s in align.SLOTS)]
    lines += ["<%s> = %s;" % (slot, " | ".join(words)) for slot, words in align.SLOTS.items()]
    return "\n".join(lines) + "\n"


class Recognizer(object):
    """pocketsphinx Decoder(samprate=16000, jsgf=GRID grammar); recognize(wav) -> list of words."""

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError:
            raise RecognizerError("word scores need pocketsphinx: pip install pocketsphinx==5.1.1 "
                                  "(see requirements.txt)")
        handle, path = tempfile.mkstemp(suffix=".gram")
        try:
            with os.fdopen(handle, "w") as f:
                f.write(grammar())
            self._decoder = Decoder(samprate=SAMPLE_RATE, jsgf=path, loglevel="FATAL")
        finally:
            os.remove(path)

    def recognize(self, wav, sample_rate=SAMPLE_RATE):
        """Words heard in float ``wav`` (peak-normalised here); [] when no grammar path fits."""
        if sample_rate != SAMPLE_RATE:
            raise RecognizerError("the recognizer takes %d Hz audio, got %d Hz; resample first"
                                  % (SAMPLE_RATE, sample_rate))
        wav = np.asarray(wav, dtype=np.float64)
        peak = np.abs(wav).max() if wav.size else 0.0
        pad = np.zeros(int(PAD_SECONDS * SAMPLE_RATE))
        wav = np.concatenate([pad, wav / peak * 0.9 if peak > 0 else wav, pad])
        # One-bit dither with a fixed seed: digital silence gives the front end log(0) energies.
        dither = np.random.RandomState(DITHER_SEED).randint(-1, 2, size=wav.size)
        pcm = np.clip(np.round(wav * 32767) + dither, -32768, 32767).astype(np.int16)
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr.split() if hypothesis is not None else []


def word_scores(references, hypotheses):
    """{"wer", "slot_accuracy": {slot: fraction}, "sentences", "words", "unrecognised"} over clips.

    ``references`` and ``hypotheses`` are lists of word lists, one per clip.
    """
    try:
        import jiwer
    except ImportError:
        raise RecognizerError("word scores need jiwer: pip install jiwer==4.0.0 (see requirements.txt)")
    if not references or len(references) != len(hypotheses):
        raise RecognizerError("need one hypothesis per reference, got %d and %d"
                              % (len(references), len(hypotheses)))
    result = jiwer.process_words([" ".join(r) for r in references], [" ".join(h) for h in hypotheses])
    slots = collections.OrderedDict()
    for i, slot in enumerate(align.SLOTS):
        right = sum(1 for r, h in zip(references, hypotheses) if len(h) > i and h[i] == r[i])
        slots[slot] = right / float(len(references))
    return collections.OrderedDict([
        ("wer", float(result.wer)), ("slot_accuracy", slots), ("sentences", len(references)),
        ("words", sum(len(r) for r in references)), ("unrecognised", sum(1 for h in hypotheses if not h))])
