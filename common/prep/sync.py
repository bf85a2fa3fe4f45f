"""Audio-video offset of a clip, measured from its mouth motion and its audio, offline.

YouTube sources are often a frame or more out of sync, and a model trained on shifted
pairs learns blur. The estimator correlates two per-frame signals over lags of
+-SEARCH_FRAMES frames: the mouth region's motion energy (mean absolute grey-level change
between consecutive crops, lower middle of the face crop, less what the upper face's
motion explains: crop jitter and head motion) and the audio's spectral change
(summed absolute change of log band energies between consecutive frame times). Both peak
when the mouth opens or closes, so they line up at the true offset.

Confidence is the best in-window correlation in standard deviations above the
correlations at lags far outside the window, a null measured on the same clip (its own
rhythm, its own noise). Below MIN_CONFIDENCE, or with a still mouth, the clip gets no
offset (None) instead of a guess.

Cost: about 0.07 s of CPU for a 30 s clip of 32 px crops and 0.2 s at 96 px (half of it
reading the JPEGs back), well under 1% of preprocessing the clip.

Sign: offset k > 0 means the audio lags the video by k frames (a sound is heard k frames
after the mouth makes it); ``shift_audio(wav, k, ...)`` takes it back.
"""
import collections
import os

import numpy as np

from common.data import crops
from common.data import datadir

SEARCH_FRAMES = 15
MIN_CONFIDENCE = 3.5
NULL_MARGIN = 5  # lags within SEARCH_FRAMES + this stay out of the null (the peak's shoulders)
MIN_NULL_LAGS = 20
MIN_MOTION = 0.05  # mean grey-level change per pixel per frame; below it the mouth does not move
MOUTH_ROWS = (0.55, 0.95)  # fractions of the face crop (the crop is the face box plus a margin)
UPPER_ROWS = (0.1, 0.45)  # eyes and forehead: moved by crop jitter and head motion, not by speech
MOUTH_COLS = (0.2, 0.8)
BAND_EDGES_HZ = tuple(np.geomspace(100.0, 6000.0, 9))
SMOOTHING = (0.25, 0.5, 0.25)

Estimate = collections.namedtuple("Estimate", "offset lag confidence reason")
Estimate.__doc__ = """offset: frames (int) or None when unsure; lag: the best lag even when unsure;
confidence: peak z-score against the clip's own far-lag null; reason: why offset is None (else "")."""


def region_motion(crops, rows, cols=MOUTH_COLS):
    """Motion energy [N-1] of a region (fractions of the crop) of face crops uint8 [N, H, W, 3]:
    mean absolute grey-level change per pixel between consecutive frames."""
    crops = np.asarray(crops)
    h, w = crops.shape[1:3]
    region = crops[:, int(rows[0] * h):int(rows[1] * h), int(cols[0] * w):int(cols[1] * w)]
    grey = region.astype(np.float32).mean(axis=3)
    return np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))


def speech_motion(mouth, upper):
    """Mouth motion with the part that the upper face's motion explains (least squares) taken out:
    crop jitter and head motion move both, speech moves the mouth only."""
    upper = upper - upper.mean()
    spread = (upper * upper).sum()
    return mouth - upper * ((upper * (mouth - mouth.mean())).sum() / spread) if spread > 0 else mouth


def audio_change(wav, num_frames, sample_rate, fps):
    """Spectral change [num_frames - 1] between consecutive video frame times of ``wav``."""
    hop = sample_rate / float(fps)
    win = int(round(2 * hop))
    padded = np.pad(np.asarray(wav, np.float64), (win // 2, win))
    starts = np.round(np.arange(num_frames) * hop).astype(np.int64)
    frames = padded[starts[:, None] + np.arange(win)[None, :]] * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    bins = np.round(np.array(BAND_EDGES_HZ) * win / float(sample_rate)).astype(int)
    bands = np.stack([power[:, a:max(b, a + 1)].sum(axis=1) for a, b in zip(bins[:-1], bins[1:])], axis=1)
    log_bands = np.log(bands + bands.max() * 1e-4 + 1e-12)
    return np.abs(np.diff(log_bands, axis=0)).sum(axis=1)


def _standardise(x):
    x = np.convolve(x, SMOOTHING, mode="same")
    return (x - x.mean()) / x.std()


def estimate(crops, wav, sample_rate, fps, search=SEARCH_FRAMES):
    """Offset of ``wav`` against face crops uint8 [N, H, W, 3] (N frames at ``fps``): an Estimate."""
    crops = np.asarray(crops)
    n = len(crops)
    needed = 2 * (search + NULL_MARGIN) + MIN_NULL_LAGS + 1
    if n < needed:
        return Estimate(None, 0, 0.0, "too short: %d frames, need %d" % (n, needed))
    mouth = region_motion(crops, MOUTH_ROWS)
    if mouth.mean() < MIN_MOTION or mouth.std() == 0:
        return Estimate(None, 0, 0.0, "still mouth")
    motion = speech_motion(mouth, region_motion(crops, UPPER_ROWS))
    change = audio_change(wav, n, sample_rate, fps)
    if change.std() == 0:
        return Estimate(None, 0, 0.0, "silent audio")
    video_signal, audio_signal = _standardise(motion), _standardise(change)
    m = len(video_signal)
    # circular correlation at every lag: corr[k] = mean_i video[i] * audio[i + k]
    corr = np.fft.irfft(np.conj(np.fft.rfft(video_signal)) * np.fft.rfft(audio_signal), m) / m
    lags = np.arange(m)
    lags[lags > m // 2] -= m
    window = np.abs(lags) <= search
    null = corr[np.abs(lags) > search + NULL_MARGIN]
    best = int(np.argmax(np.where(window, corr, -np.inf)))
    confidence = float((corr[best] - null.mean()) / null.std())
    lag = int(lags[best])
    if confidence < MIN_CONFIDENCE:
        return Estimate(None, lag, confidence, "low confidence")
    return Estimate(lag, lag, confidence, "")


def shift_audio(wav, offset, samples_per_frame, length):
    """``length`` samples of ``wav`` moved ``offset`` frames earlier (later when negative), silence where none.

    Undoes an audio lag of ``offset`` frames: sample j of the result is sample
    j + offset * samples_per_frame of ``wav``.
    """
    start = int(round(offset * samples_per_frame))
    out = np.zeros(length, dtype=np.asarray(wav).dtype)
    lo, hi = max(0, start), min(len(wav), start + length)
    if hi > lo:
        out[lo - start:hi - start] = wav[lo:hi]
    return out


def read_crops(clip_dir, hp):
    """The face crops ``<i>.jpg`` of a clip folder as the network reads them, uint8 [N, img_size, img_size, 3]
    (channel order of hp.crop_style: motion energy is grey, so it does not matter), in frame order."""
    numbers = sorted(datadir.crop_numbers(os.listdir(clip_dir)))
    frames = [crops.read(clip_dir, i, hp.img_size, hp.crop_style) for i in numbers]
    if not frames:
        return np.zeros((0, 1, 1, 3), np.uint8)
    return np.stack(frames)


def estimate_folder(clip_dir, hp):
    """Estimate for a preprocessed clip folder (``<i>.jpg`` crops and audio.wav), any speaker."""
    from common.data import audio
    wav = audio.load_wav(datadir.audio_path(clip_dir), hp.sample_rate, rescaling_max=None)
    return estimate(read_crops(clip_dir, hp), wav, hp.sample_rate, hp.fps)


def as_record(result):
    """The JSON form of an Estimate, as the preprocessing report stores it."""
    return collections.OrderedDict([("offset", result.offset), ("lag", result.lag),
                                    ("confidence", round(result.confidence, 3)), ("reason", result.reason)])


def histogram(offsets, search=SEARCH_FRAMES):
    """Counts of each offset in -search..search: OrderedDict offset -> clips."""
    counts = collections.OrderedDict((k, 0) for k in range(-search, search + 1))
    for offset in offsets:
        counts[int(offset)] += 1
    return counts


def format_histogram(offsets, unsure, width=40):
    """Offset histogram as text: one bar per offset that occurs, and the clips without a confident offset."""
    counts = histogram(offsets)
    most = max(counts.values()) if offsets else 0
    lines = ["audio-video offset (frames; > 0: audio lags): %d clips measured, %d unsure" % (len(offsets) + unsure,
                                                                                           unsure)]
    for offset, count in counts.items():
        if count:
            lines.append("  %+3d %5d %s" % (offset, count, "#" * max(1, int(round(width * count / float(most))))))
    return "\n".join(lines)


def lag_between(reference, degraded, sample_rate, max_lag_seconds, hop_seconds=0.0125):
    """Lag in samples (a multiple of the hop) at which ``degraded`` best follows ``reference``.

    Spectral-change signals of both at ``hop_seconds`` steps are correlated over
    +-max_lag_seconds; a positive lag means ``degraded`` is late.
    """
    rate = 1.0 / hop_seconds
    hop = sample_rate * hop_seconds
    length = min(len(reference), len(degraded))
    steps = int(length // hop)
    max_lag = int(round(max_lag_seconds * rate))
    if steps - 1 <= 2 * max_lag + 2:
        return 0
    ref = audio_change(reference[:length], steps, sample_rate, rate)
    deg = audio_change(degraded[:length], steps, sample_rate, rate)
    if ref.std() == 0 or deg.std() == 0:
        return 0
    ref, deg = (ref - ref.mean()) / ref.std(), (deg - deg.mean()) / deg.std()
    scores = []
    for lag in range(-max_lag, max_lag + 1):
        a, b = (ref[:len(ref) - lag], deg[lag:]) if lag >= 0 else (ref[-lag:], deg[:len(deg) + lag])
        scores.append(float(np.mean(a * b)))
    return int(round((int(np.argmax(scores)) - max_lag) * hop))
