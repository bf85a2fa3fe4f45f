"""How video frames, audio samples and mel frames line up: the one place this arithmetic lives
(its frame-to-mel ratio is hparams.mel_frames_lasting, which the hyperparameter checks share).

N video frames at hp.fps last exactly round(N * sample_rate / fps) samples (preprocessing cuts
the audio to that length), and video frame i lines up with mel frame round(i * mel_fps / fps).
"""
import numpy as np

from common.config import hparams
from common.data import audio


def num_samples(num_frames, hp):
    """Samples that ``num_frames`` video frames last: round(N * sample_rate / fps)."""
    return int(round(num_frames * float(hp.sample_rate) / hp.fps))


def frames_in_samples(samples, hp):
    """Whole video frames that ``samples`` audio samples cover (the audio bounds the crops kept)."""
    return int(np.floor(samples / (hp.sample_rate / float(hp.fps)) + 1e-6))


def num_frames(seconds, hp):
    """Video frames in ``seconds``: round(seconds * fps)."""
    return int(round(seconds * hp.fps))


def seconds(num_frames, hp):
    """Duration of ``num_frames`` video frames."""
    return num_frames / float(hp.fps)


def mel_seconds(mel_frames, hp):
    """Duration of ``mel_frames`` mel frames."""
    return mel_frames / hp.mel_frames_per_second


def mel_frames(num_frames, hp):
    """Mel frames of the audio that ``num_frames`` video frames last (centred STFT)."""
    return audio.num_frames(num_samples(num_frames, hp), hp)


def mel_start(frame, hp):
    """Mel frame aligned with video frame ``frame``: round(frame * mel_fps / fps); arrays give int64 arrays."""
    frames = np.asarray(frame, dtype=np.float64)
    aligned = np.rint(hparams.mel_frames_lasting(frames, hp.sample_rate, hp.hop_size, hp.fps))
    return aligned.astype(np.int64) if aligned.ndim else int(aligned)
