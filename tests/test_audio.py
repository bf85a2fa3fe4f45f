"""common.data.audio: mels match an independent librosa computation; I/O round trips; Griffin-Lim intelligibility."""
import os
import stat

import librosa
import numpy as np
import pytest
import soundfile as sf
from pystoi import stoi
from scipy import signal

from common.data import audio
from common.config import hparams


@pytest.fixture(scope="module")
def hp():
    return hparams.resolve("default")


def vowel_sequence(sample_rate, seed=0):
    """About 2 s of speech-like sound: glottal pulses with a falling pitch through
    per-vowel F1/F2/F3 resonators, vowels separated by short silences."""
    rng = np.random.RandomState(seed)
    formants = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    pieces = []
    for k in range(8):
        n = int(sample_rate * rng.uniform(0.15, 0.3))
        f0 = np.linspace(140, 110, n) * (1 + 0.01 * rng.randn(n))
        pulses = np.diff(np.floor(np.cumsum(f0 / sample_rate)), prepend=0.0)
        x = signal.lfilter([1.0, -1.0], [1.0, -1.9, 0.9025], pulses)
        for freq, bw in zip(formants[k % len(formants)], (80, 100, 150)):
            r = np.exp(-np.pi * bw / sample_rate)
            x = signal.lfilter([1 - 2 * r * np.cos(2 * np.pi * freq / sample_rate) + r * r],
                               [1, -2 * r * np.cos(2 * np.pi * freq / sample_rate), r * r], x)
        pieces.append(x * np.hanning(n))
        pieces.append(np.zeros(int(sample_rate * rng.uniform(0.05, 0.15))))
    wav = np.concatenate(pieces)
    return (0.9 * wav / np.abs(wav).max()).astype(np.float32)


def test_melspectrogram_matches_independent_librosa(hp):
    wav = vowel_sequence(hp.sample_rate)
    wav = wav + 0.003 * np.random.RandomState(1).randn(len(wav)).astype(np.float32)
    emphasised = np.append(wav[0], wav[1:] - hp.preemphasis * wav[:-1])
    magnitude = librosa.feature.melspectrogram(
        y=emphasised.astype(np.float64), sr=hp.sample_rate, n_fft=hp.n_fft, hop_length=hp.hop_size,
        win_length=hp.win_size, window="hann", center=True, pad_mode="reflect", power=1.0,
        n_mels=hp.num_mels, fmin=hp.fmin, fmax=hp.fmax)
    db = 20 * np.log10(np.maximum(1e-5, magnitude)) - hp.ref_level_db
    expected = np.clip(2 * hp.max_abs_value * (db + 100.0) / 100.0 - hp.max_abs_value,
                       -hp.max_abs_value, hp.max_abs_value)
    mel = audio.melspectrogram(wav, hp)
    assert mel.dtype == np.float32
    assert mel.shape == expected.shape == (hp.num_mels, 1 + len(wav) // hp.hop_size)
    assert np.abs(mel - expected).max() < 1e-3
    assert mel.min() >= -hp.max_abs_value and mel.max() <= hp.max_abs_value


@pytest.mark.parametrize("length", [801, 1000, 1199, 16000, 64000, 64123])
def test_frame_count_is_one_plus_length_over_hop(hp, length):
    wav = np.random.RandomState(length).randn(length).astype(np.float32) * 0.1
    assert audio.melspectrogram(wav, hp).shape[1] == 1 + length // hp.hop_size == audio.num_frames(length, hp)


def test_asymmetric_normalisation_range(hp):
    asym = hp.replace(symmetric_mels=False)
    mel = audio.melspectrogram(vowel_sequence(asym.sample_rate), asym)
    assert mel.min() >= 0 and mel.max() <= asym.max_abs_value


def test_griffin_lim_round_trip_is_intelligible(hp):
    wav = vowel_sequence(hp.sample_rate)
    mel = audio.melspectrogram(wav, hp)
    out = audio.inv_mel_spectrogram(mel, hp)
    assert out.dtype == np.float32
    assert len(out) == (mel.shape[1] - 1) * hp.hop_size
    np.testing.assert_array_equal(out, audio.inv_mel_spectrogram(mel, hp))
    score = stoi(wav[:len(out)], out, hp.sample_rate, extended=False)
    # Measured STOI 0.949 (seeds 1, 2: 0.940, 0.951; ESTOI 0.88) with the default preset.
    assert score > 0.90


def _rms_db(wav):
    return 20 * np.log10(np.sqrt(np.mean(np.square(np.asarray(wav, dtype=np.float64)))))


def _vocode_and_save(wav, hp, path):
    """(vocoder output, what save_speech wrote) for the true mel of ``wav``."""
    mel = audio.melspectrogram(wav, hp)
    vocoded = audio.inv_mel_spectrogram(mel, hp)
    audio.save_speech(vocoded, mel, path, hp)
    saved, rate = sf.read(path, dtype="float64")
    assert rate == hp.sample_rate and saved.shape == vocoded.shape
    return vocoded, saved


@pytest.mark.parametrize("peak", [0.9, 0.09])
def test_speech_from_true_mels_is_saved_at_the_level_of_the_clip(tmp_path, hp, peak):
    """Griffin-Lim alone is 7 dB too loud here (power 1.5); a wrong ref_level_db or max_abs_value moves the
    level by tens of dB. Measured with 8 iterations: saved 1.2 dB below the clip at both levels."""
    wav = vowel_sequence(hp.sample_rate) * (peak / 0.9)
    _, saved = _vocode_and_save(wav, hp.replace(griffin_lim_iters=8), str(tmp_path / "speech.wav"))
    assert abs(_rms_db(saved) - _rms_db(wav)) < 3.0, (_rms_db(saved), _rms_db(wav))


def test_speech_louder_than_full_scale_is_scaled_down_never_clipped(tmp_path, hp):
    """A mel of speech peaking at 2.7 (beyond what 16-bit PCM holds) is saved whole, only quieter."""
    vocoded, saved = _vocode_and_save(vowel_sequence(hp.sample_rate) * 3.0, hp.replace(griffin_lim_iters=8),
                                      str(tmp_path / "speech.wav"))
    assert np.abs(vocoded).max() > 1.5 and np.abs(saved).max() > 0.99
    gain = np.dot(saved, vocoded) / np.dot(vocoded, vocoded)
    assert np.abs(saved - gain * vocoded).max() < 1.5 / 32767


def test_save_load_round_trip(tmp_path, hp):
    wav = vowel_sequence(hp.sample_rate) * 0.5
    path = str(tmp_path / "a.wav")
    audio.save_wav(wav, path, hp.sample_rate)
    assert os.listdir(str(tmp_path)) == ["a.wav"]
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (hp.sample_rate, 1, "PCM_16")
    back = audio.load_wav(path, hp.sample_rate, rescaling_max=None)
    assert back.dtype == np.float32 and back.shape == wav.shape
    assert np.abs(back - wav).max() < 1.5 / 32767
    rescaled = audio.load_wav(path, hp.sample_rate, hp.rescaling_max)
    assert abs(np.abs(rescaled).max() - hp.rescaling_max) < 1e-6


def test_save_wav_replaces_existing_file(tmp_path, hp):
    path = str(tmp_path / "a.wav")
    audio.save_wav(np.zeros(100), path, hp.sample_rate)
    audio.save_wav(np.full(50, 0.25), path, hp.sample_rate)
    back = audio.load_wav(path, hp.sample_rate, rescaling_max=None)
    assert back.shape == (50,) and abs(back.mean() - 0.25) < 1e-4


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_saved_wav_has_ordinary_permissions(tmp_path, hp, umask, mode):
    """A saved wav is an ordinary file (0o666 & ~umask), not private like a tempfile.mkstemp file."""
    path = str(tmp_path / "a.wav")
    old = os.umask(umask)
    try:
        audio.save_wav(np.zeros(100), path, hp.sample_rate)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert os.listdir(str(tmp_path)) == ["a.wav"]


def test_load_resamples_44k1_stereo_to_mono(tmp_path, hp):
    rate, seconds = 44100, 1.5
    t = np.arange(int(rate * seconds)) / float(rate)
    tone = 0.3 * np.sin(2 * np.pi * 1000 * t)
    path = str(tmp_path / "cd.wav")
    sf.write(path, np.stack([tone, tone * 0.5], axis=1), rate, subtype="PCM_16")
    wav = audio.load_wav(path, hp.sample_rate, hp.rescaling_max)
    assert wav.ndim == 1 and wav.dtype == np.float32
    assert abs(len(wav) - seconds * hp.sample_rate) <= 1
    assert abs(np.abs(wav).max() - hp.rescaling_max) < 1e-6
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    assert abs(np.argmax(spectrum) * hp.sample_rate / float(len(wav)) - 1000) < 2


def test_missing_file_is_a_project_error(tmp_path, hp):
    with pytest.raises(audio.AudioError, match="does not exist"):
        audio.load_wav(str(tmp_path / "nope.wav"), hp.sample_rate)


def test_fmax_above_nyquist_is_rejected(hp):
    with pytest.raises(hparams.HParamsError, match="fmax <= sample_rate / 2"):
        hp.replace(sample_rate=8000)
