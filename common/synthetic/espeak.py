"""espeak-ng through ctypes: speech with the time of every phoneme and word.

The library and its voice data come from the espeakng-loader wheel (nothing is
downloaded). espeak-ng keeps one global engine per process: it is initialised once, in
synchronous mode with phoneme events (espeak_Initialize option 1), and every call to
speak() sets its own rate and pitch before synthesising.
"""
import collections
import ctypes
import functools
import threading

import numpy as np

from common.errors import Lip2WavError

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 1
CHARS_UTF8 = 1
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7
PARAMETER_RATE, PARAMETER_PITCH = 1, 3
VOICE = "en-us"

Utterance = collections.namedtuple("Utterance", "samples sample_rate phonemes words")
Utterance.__doc__ = """int16 samples; phonemes [(start s, mnemonic)]; words [(start s, first char, length)]."""


class EspeakError(Lip2WavError, RuntimeError):
    """espeak-ng is missing or refused a request; the message names the fix."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h."""
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_LOCK = threading.Lock()
_PENDING = {"chunks": [], "events": []}


def _collect(wav, num_samples, events):
    if num_samples > 0:
        _PENDING["chunks"].append(np.ctypeslib.as_array(wav, (num_samples,)).copy())
    i = 0
    while events[i].type != EVENT_LIST_TERMINATED:
        event = events[i]
        if event.type == EVENT_PHONEME:
            _PENDING["events"].append((EVENT_PHONEME, event.sample, event.id.string.decode("ascii", "replace")))
        elif event.type == EVENT_WORD:
            _PENDING["events"].append((EVENT_WORD, event.sample, (event.text_position, event.length)))
        i += 1
    return 0


_COLLECT = _CALLBACK(_collect)  # kept referenced for the life of the process: espeak-ng holds the pointer


@functools.lru_cache(maxsize=None)
def _engine():
    """(library, sample rate) after the one espeak_Initialize of this process."""
    try:
        import espeakng_loader
    except ImportError:
        raise EspeakError("the GRID speaker needs espeak-ng: pip install espeakng-loader (see requirements.txt)")
    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(),
                                 INITIALIZE_PHONEME_EVENTS)
    if rate <= 0:
        raise EspeakError("espeak_Initialize failed (%d); reinstall espeakng-loader" % rate)
    lib.espeak_SetSynthCallback(_COLLECT)
    if lib.espeak_SetVoiceByName(VOICE.encode()) != 0:
        raise EspeakError("espeak-ng has no voice %r; reinstall espeakng-loader" % VOICE)
    return lib, rate


def speak(text, rate, pitch):
    """Synthesise ``text`` at ``rate`` words/minute and ``pitch`` (0-100, espeak's 50 is its default)."""
    lib, sample_rate = _engine()
    with _LOCK:
        _PENDING["chunks"], _PENDING["events"] = [], []
        lib.espeak_SetParameter(PARAMETER_RATE, int(rate), 0)
        lib.espeak_SetParameter(PARAMETER_PITCH, int(pitch), 0)
        data = text.encode("utf-8")
        code = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        chunks, events = _PENDING["chunks"], _PENDING["events"]
    if code != 0 or not chunks:
        raise EspeakError("espeak-ng could not speak %r (code %d)" % (text, code))
    phonemes = [(sample / float(sample_rate), name.lstrip("',")) for kind, sample, name in events
                if kind == EVENT_PHONEME]
    words = [(sample / float(sample_rate),) + tuple(where) for kind, sample, where in events if kind == EVENT_WORD]
    return Utterance(np.concatenate(chunks), sample_rate, phonemes, words)
