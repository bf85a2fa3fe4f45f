"""GRID sentences and their word timings: the six-slot grammar and the .align file format.

GRID (Cooke et al. 2006) sentences are command colour preposition letter digit adverb, e.g.
"bin blue at f two now"; the corpus names each by its slots' first letters (digit as a
number): "bbaf2n". A .align file has one "start end word" line per segment, times in
units of 1/25000 s (1000 per 25 fps video frame), with "sil" (and "sp") between words.
A clip folder that has words holds them as a .align file (common.data.datadir.TRANSCRIPT).
"""
import collections
import os

from common import atomic
from common.data import datadir
from common.errors import Lip2WavError

ALIGN_UNITS_PER_SECOND = 25000.0
PAUSES = ("sil", "sp")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SLOTS = collections.OrderedDict([
    ("command", ("bin", "lay", "place", "set")),
    ("colour", ("blue", "green", "red", "white")),
    ("preposition", ("at", "by", "in", "with")),
    ("letter", tuple("abcdefghijklmnopqrstuvxyz")),  # GRID has no "w": its name is three syllables
    ("digit", DIGITS),
    ("adverb", ("again", "now", "please", "soon")),
])


class AlignError(Lip2WavError, ValueError):
    """A .align file or sentence that does not fit GRID's format; the message names the fix."""


def sample_sentence(rng):
    """Six words, one per slot, drawn uniformly with ``rng`` (a numpy RandomState)."""
    return [words[rng.randint(len(words))] for words in SLOTS.values()]


def check_sentence(words):
    """Raise AlignError unless ``words`` is a sentence of the grammar."""
    if len(words) != len(SLOTS) or any(w not in slot for w, slot in zip(words, SLOTS.values())):
        raise AlignError("%r is not a GRID sentence (%s); use one word per slot in that order"
                         % (" ".join(words), " ".join(SLOTS)))


def sentence_id(words):
    """GRID's file name of a sentence: each slot's first letter, the digit as a number ("bbaf2n")."""
    check_sentence(words)
    return "".join(str(DIGITS.index(w)) if slot == "digit" else w[0] for slot, w in zip(SLOTS, words))


def write_align(path, spans, seconds):
    """Write [(start s, end s, word)] as a .align file covering 0..``seconds``, pauses as "sil"."""
    lines = []
    cursor = 0
    for start, end, word in spans:
        a, b = _units(start), _units(end)
        if a > cursor:
            lines.append("%d %d sil" % (cursor, a))
        lines.append("%d %d %s" % (max(a, cursor), b, word))
        cursor = b
    total = _units(seconds)
    if total > cursor:
        lines.append("%d %d sil" % (cursor, total))
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def _units(seconds):
    return int(round(seconds * ALIGN_UNITS_PER_SECOND))


def read_align(path):
    """[(start s, end s, word)] of the spoken words of a .align file (pauses dropped)."""
    spans = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                start, end, word = int(parts[0]), int(parts[1]), parts[2]
            except (IndexError, ValueError):
                raise AlignError("%s line %d is %r, not 'start end word'; fix or remove the file"
                                 % (path, number, line.strip()))
            if word not in PAUSES:
                spans.append((start / ALIGN_UNITS_PER_SECOND, end / ALIGN_UNITS_PER_SECOND, word))
    return spans


def clip_words(clip_folder):
    """The words of a preprocessed clip (from its transcript), or None when it has none."""
    path = datadir.transcript_path(clip_folder)
    if not os.path.isfile(path):
        return None
    return [word for _, _, word in read_align(path)]
