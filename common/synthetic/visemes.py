"""Mouth shapes from phoneme timings: a phoneme-to-viseme table and coarticulation.

As in real lip reading, several phonemes share one viseme (p/b/m close the lips, f/v put
the lower lip to the teeth, t/d/n/l look alike, k/g/h barely show), so the video cannot
tell them apart and the model must use context, as with GRID's letter and digit slots.
Each viseme is a target (lip opening, jaw drop, lip rounding, lip spread, all 0..1);
targets hold from a phoneme's start to the next one's, diphthongs glide between two
targets, lip and teeth closures are lengthened to at least CLOSURE_SECONDS (the lips
close before the release espeak-ng times), and the track is smoothed with a Gaussian
(articulators anticipate and lag their targets).
"""
import numpy as np
from scipy.ndimage import gaussian_filter1d

from common.synthetic.astronaut import CONTROL_RATE

PARAMETERS = ("opening", "jaw", "rounding", "spread")
# viseme -> (lip opening, jaw drop, lip rounding, lip spread)
VISEMES = {
    "rest": (0.0, 0.05, 0.0, 0.5),
    "p": (0.0, 0.1, 0.0, 0.5),      # p b m: lips pressed together
    "f": (0.06, 0.1, 0.0, 0.65),    # f v: lower lip under the upper teeth
    "th": (0.18, 0.15, 0.0, 0.6),   # T D: tongue between the teeth
    "t": (0.22, 0.2, 0.0, 0.6),     # t d n l: tongue tip, lips neutral
    "s": (0.1, 0.05, 0.0, 0.8),     # s z: teeth together, lips spread
    "sh": (0.18, 0.1, 0.6, 0.35),   # S Z tS dZ: lips pushed forward
    "k": (0.3, 0.3, 0.0, 0.55),     # k g N h j: back of the tongue, mouth as the neighbours
    "r": (0.2, 0.15, 0.55, 0.3),
    "w": (0.12, 0.12, 1.0, 0.0),    # w u: U: small round lips
    "aa": (0.9, 0.85, 0.0, 0.6),
    "eh": (0.55, 0.45, 0.0, 0.8),
    "ee": (0.3, 0.2, 0.0, 1.0),
    "oh": (0.6, 0.5, 0.75, 0.2),
}
# espeak-ng's en-us phoneme mnemonics (stress marks stripped) -> viseme
PHONEME_VISEMES = {
    "_": "rest", "_:": "rest", "_!": "rest", ";": "rest",
    "p": "p", "b": "p", "m": "p",
    "f": "f", "v": "f",
    "T": "th", "D": "th",
    "t": "t", "d": "t", "n": "t", "l": "t", "t#": "t", "n-": "t", "l/": "t", "?": "t",
    "s": "s", "z": "s",
    "S": "sh", "Z": "sh", "tS": "sh", "dZ": "sh",
    "k": "k", "g": "k", "N": "k", "h": "k", "j": "k", "x": "k",
    "r": "r", "r-": "r", "3": "r", "3:": "r",
    "w": "w", "u:": "w", "U": "w", "U@": "w",
    "a": "aa", "A:": "aa", "aa": "aa", "A@": "aa", "V": "aa", "0": "aa", "a#": "eh",
    "E": "eh", "e": "eh", "e@": "eh", "@": "eh", "@2": "eh", "@5": "eh", "@L": "eh",
    "i": "ee", "i:": "ee", "I": "ee", "I#": "ee", "I2": "ee", "i@": "ee", "i@3": "ee",
    "O:": "oh", "O@": "oh", "o@": "oh", "O": "oh",
}
DIPHTHONGS = {"aI": ("aa", "ee"), "aU": ("aa", "w"), "eI": ("eh", "ee"), "oU": ("oh", "w"), "OI": ("oh", "ee"),
              "aI@": ("aa", "eh"), "aU@": ("aa", "eh")}
CLOSURES = ("p", "f")
CLOSURE_SECONDS = 0.06
SMOOTHING_SECONDS = 0.015


def visemes_of(phoneme):
    """(first, second) viseme of an espeak-ng phoneme; an unknown one falls back on its first character."""
    if phoneme in DIPHTHONGS:
        return DIPHTHONGS[phoneme]
    for key in (phoneme, phoneme.rstrip("#:2345"), phoneme[:1]):
        if key in PHONEME_VISEMES:
            return PHONEME_VISEMES[key], PHONEME_VISEMES[key]
    return "k", "k"


def viseme_track(phonemes, seconds):
    """Articulation at CONTROL_RATE for [(start s, phoneme)]: dict of PARAMETERS -> arrays.

    Before the first phoneme and after ``seconds`` the mouth rests.
    """
    n = int(round(seconds * CONTROL_RATE)) + 1
    targets = np.tile(np.array(VISEMES["rest"])[:, None], (1, n))

    def fill(start, end, viseme):
        a, b = int(round(start * CONTROL_RATE)), int(round(end * CONTROL_RATE))
        targets[:, max(a, 0):max(b, 0)] = np.array(VISEMES[viseme])[:, None]

    ends = [start for start, _ in phonemes[1:]] + [seconds]
    closures = []
    for (start, phoneme), end in zip(phonemes, ends):
        first, second = visemes_of(phoneme)
        middle = 0.5 * (start + end)
        fill(start, middle, first)
        fill(middle, end, second)
        if first in CLOSURES:
            closures.append((min(start, end - CLOSURE_SECONDS), end, first))
    for start, end, viseme in closures:
        fill(start, end, viseme)
    smooth = gaussian_filter1d(targets, sigma=SMOOTHING_SECONDS * CONTROL_RATE, axis=1, mode="nearest")
    return dict(zip(PARAMETERS, np.clip(smooth, 0.0, 1.0)))


def at_times(track, times):
    """The track's parameters at ``times`` (seconds), linearly interpolated."""
    grid = np.arange(track["opening"].size) / float(CONTROL_RATE)
    return {key: np.interp(times, grid, value) for key, value in track.items()}
