"""Waveform I/O and the Tacotron-2 / Lip2Wav spectrogram definitions.

The spectrogram maths follows Rayhane-mamah's Tacotron-2 audio.py (as used by
Lip2Wav) so that mels are interchangeable with the original recipe: pre-emphasis,
STFT (n_fft, hop_size, win_size, Hann, centred, reflect padding), mel filter bank
(fmin, fmax), 20*log10(max(min_level, x)) - ref_level_db, then clipping
normalisation to [-max_abs_value, max_abs_value] (or [0, max_abs_value]).

Frame count: the STFT is centred, so a waveform of L samples gives exactly
``1 + L // hop_size`` frames and mel frame j is centred on sample ``j * hop_size``
(time j / 80 s at 16 kHz, hop 200). The dataset pairs video frame i with mel
frame ``round(i * 80 / fps)``, i.e. the mel frame centred on the video frame's time.
"""
import os
from math import gcd

import librosa
import numpy as np
import soundfile as sf
from scipy import signal

from common import atomic
from common.errors import Lip2WavError

_MEL_BASIS = {}
_INV_MEL_BASIS = {}


class AudioError(Lip2WavError, ValueError):
    """An audio file or setting that cannot be used; the message names the fix."""


def load_wav(path, sample_rate, rescaling_max=0.9):
    """Read any soundfile-readable file as float32 mono at ``sample_rate``.

    Channels are averaged, the rate is converted with a polyphase filter
    (deterministic, no soxr needed) and the peak is rescaled to ``rescaling_max``
    (pass ``hp.rescaling_max``; None keeps the recorded level).
    """
    if not os.path.isfile(path):
        raise AudioError("audio file %s does not exist; check the path or re-run preprocessing" % path)
    try:
        wav, file_rate = sf.read(path, dtype="float64", always_2d=True)
    except RuntimeError as e:
        raise AudioError("cannot read %s (%s); convert it to WAV/FLAC first" % (path, str(e).splitlines()[0]))
    wav = resample(wav.mean(axis=1), file_rate, sample_rate)
    if rescaling_max is not None:
        peak = np.abs(wav).max() if wav.size else 0.0
        if peak > 0:
            wav = wav / peak * rescaling_max
    return wav.astype(np.float32)


def resample(wav, from_rate, to_rate):
    """``wav`` converted from ``from_rate`` to ``to_rate`` Hz with a polyphase filter (deterministic)."""
    if from_rate == to_rate:
        return wav
    div = gcd(int(from_rate), int(to_rate))
    return signal.resample_poly(wav, int(to_rate) // div, int(from_rate) // div)


def save_wav(wav, path, sample_rate):
    """Write 16-bit PCM WAV atomically (temp file in the same folder, then rename).

    Samples outside [-1, 1] are clipped; the level is kept as is so that a
    save/load round trip does not change the signal beyond quantisation.
    """
    wav = np.clip(np.asarray(wav, dtype=np.float64), -1.0, 1.0)
    with atomic.replacing(path, ".wav") as tmp:
        sf.write(tmp, wav, int(sample_rate), subtype="PCM_16", format="WAV")


def save_speech(wav, mel, path, hp):
    """Write vocoded speech at the level its mel [num_mels, frames] describes, lowered only to keep the peak
    within full scale, so nothing is clipped.

    Griffin-Lim of magnitudes raised to hp.power is louder than the speech the mel came from (true mels:
    5-7 dB in RMS, peaks 2-3). The mel's own level is the one rule that serves the model, the baseline and
    the ceiling alike, needs no reference clip (synthesize has none), keeps a quiet prediction quiet, and
    puts the ceiling at the level of the clip's audio as training saw it (peak hp.rescaling_max); scores are
    taken before this, on the vocoder's output.
    """
    wav = np.asarray(wav, dtype=np.float64)
    produced = np.mean(np.square(_mel_amplitude_of(wav, hp)))
    gain = np.sqrt(np.mean(np.square(_mel_amplitude(mel, hp))) / produced) if produced > 0 else 1.0
    peak = np.abs(wav).max() * gain if wav.size else 0.0
    save_wav(wav * (gain / peak if peak > 1.0 else gain), path, hp.sample_rate)


def preemphasis(wav, k, preemphasize=True):
    if preemphasize:
        return signal.lfilter([1, -k], [1], wav)
    return wav


def inv_preemphasis(wav, k, inv_preemphasize=True):
    if inv_preemphasize:
        return signal.lfilter([1], [1, -k], wav)
    return wav


def num_frames(num_samples, hp):
    """Spectrogram frames for a waveform of ``num_samples`` samples (centred STFT)."""
    return 1 + num_samples // hp.hop_size


def melspectrogram(wav, hp):
    """Normalised mel spectrogram, float32 [num_mels, 1 + len(wav) // hop_size]."""
    db = _amp_to_db(_mel_amplitude_of(wav, hp), hp) - hp.ref_level_db
    return _normalize(db, hp).astype(np.float32)


def _mel_amplitude_of(wav, hp):
    return _linear_to_mel(np.abs(_stft(preemphasis(wav, hp.preemphasis, hp.preemphasize), hp)), hp)


def _mel_amplitude(mel, hp):
    """Mel magnitudes of a normalised mel: the inverse of melspectrogram's last steps."""
    return _db_to_amp(_denormalize(np.asarray(mel, dtype=np.float64), hp) + hp.ref_level_db)


def inv_mel_spectrogram(mel, hp, seed=0):
    """Griffin-Lim vocoder: float32 wav of (frames - 1) * hop_size samples.

    The random initial phase comes from ``seed`` so synthesis is reproducible.
    """
    linear = _mel_to_linear(_mel_amplitude(mel, hp), hp)
    wav = _griffin_lim(linear ** hp.power, hp, np.random.RandomState(seed))
    return inv_preemphasis(wav, hp.preemphasis, hp.preemphasize).astype(np.float32)


def _griffin_lim(magnitude, hp, rng):
    angles = np.exp(2j * np.pi * rng.rand(*magnitude.shape))
    magnitude = magnitude.astype(np.complex128)
    wav = _istft(magnitude * angles, hp)
    for _ in range(hp.griffin_lim_iters):
        angles = np.exp(1j * np.angle(_stft(wav, hp)))
        wav = _istft(magnitude * angles, hp)
    return wav


def _stft(wav, hp):
    # reflect padding is librosa < 0.10's default, which the original recipe used.
    return librosa.stft(y=np.asarray(wav, dtype=np.float64), n_fft=hp.n_fft, hop_length=hp.hop_size,
                        win_length=hp.win_size, window="hann", center=True, pad_mode="reflect")


def _istft(spec, hp):
    return librosa.istft(spec, hop_length=hp.hop_size, win_length=hp.win_size, window="hann", center=True)


def _mel_key(hp):
    return (hp.sample_rate, hp.n_fft, hp.num_mels, hp.fmin, hp.fmax)


def mel_basis(hp):
    """The mel filter bank [num_mels, n_fft // 2 + 1], cached per audio setting."""
    key = _mel_key(hp)
    if key not in _MEL_BASIS:  # fmax <= sample_rate / 2 is the hparams check's
        _MEL_BASIS[key] = librosa.filters.mel(sr=hp.sample_rate, n_fft=hp.n_fft, n_mels=hp.num_mels,
                                              fmin=hp.fmin, fmax=hp.fmax)
    return _MEL_BASIS[key]


def _linear_to_mel(spec, hp):
    return np.dot(mel_basis(hp), spec)


def _mel_to_linear(mel, hp):
    key = _mel_key(hp)
    if key not in _INV_MEL_BASIS:
        _INV_MEL_BASIS[key] = np.linalg.pinv(mel_basis(hp))
    return np.maximum(1e-10, np.dot(_INV_MEL_BASIS[key], mel))


def _amp_to_db(x, hp):
    min_level = np.exp(hp.min_level_db / 20.0 * np.log(10))
    return 20 * np.log10(np.maximum(min_level, x))


def _db_to_amp(x):
    return np.power(10.0, x * 0.05)


def _normalize(db, hp):
    scaled = (db - hp.min_level_db) / (-hp.min_level_db)
    if hp.symmetric_mels:
        return np.clip(2 * hp.max_abs_value * scaled - hp.max_abs_value, -hp.max_abs_value, hp.max_abs_value)
    return np.clip(hp.max_abs_value * scaled, 0, hp.max_abs_value)


def _denormalize(norm, hp):
    if hp.symmetric_mels:
        clipped = np.clip(norm, -hp.max_abs_value, hp.max_abs_value)
        return (clipped + hp.max_abs_value) * -hp.min_level_db / (2 * hp.max_abs_value) + hp.min_level_db
    clipped = np.clip(norm, 0, hp.max_abs_value)
    return clipped * -hp.min_level_db / hp.max_abs_value + hp.min_level_db
