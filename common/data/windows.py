"""Windows: the [T, S, S, 3] face window every graph takes, where evaluation windows start, and
``stitch``, which puts the mel windows predicted for them back into one mel.

Evaluation windows start every T - overlap frames until one reaches the clip's end; each
predicts mel_step_size mel frames from timing.mel_start(start), and consecutive predictions
are crossfaded over mel_overlap frames.
"""
import numpy as np


def window_shape(hp):
    """Shape of one face window: T frames of img_size x img_size RGB."""
    return (hp.T, hp.img_size, hp.img_size, 3)


def window_starts(num_frames, hp):
    """First frame of each evaluation window covering ``num_frames`` frames (the last may run past the end)."""
    stride = hp.T - hp.overlap  # > 0: the hparams check refuses overlap >= T
    starts = [0]
    while starts[-1] + hp.T < num_frames:
        starts.append(starts[-1] + stride)
    return starts


def stitch(windows, mel_starts, total_frames, mel_overlap):
    """Mel windows [W, M, num_mels] placed at ``mel_starts`` -> one mel [total_frames, num_mels].

    Where two consecutive windows overlap, the later one fades in linearly over
    min(mel_overlap, overlap) frames centred in the overlap (weights sum to 1), so constant
    windows stitch to the same constant. Frames past the last window repeat its last frame;
    the result always has exactly ``total_frames`` frames.
    """
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3 or len(windows) != len(mel_starts) or not len(windows):
        raise ValueError("need windows [W, M, num_mels] with one start each, got %s and %d starts"
                         % (windows.shape, len(mel_starts)))
    count, size, bands = windows.shape
    span = max(int(total_frames), int(mel_starts[-1]) + size)
    weights = np.ones((count, size), dtype=np.float64)
    for k in range(count - 1):
        begin, end = int(mel_starts[k + 1]), int(mel_starts[k]) + size
        if begin <= int(mel_starts[k]) or begin > end:
            raise ValueError("window starts must increase and consecutive windows must touch, got %s"
                             % list(mel_starts))
        length = min(max(int(mel_overlap), 0), end - begin)
        fade_start = begin + (end - begin - length) // 2
        fading_out = np.arange(size) + int(mel_starts[k])
        weights[k] *= np.clip((fade_start + length - fading_out) / float(length + 1), 0.0, 1.0)
        fading_in = np.arange(size) + begin
        weights[k + 1] *= np.clip((fading_in - fade_start + 1) / float(length + 1), 0.0, 1.0)
    total = np.zeros((span, bands), dtype=np.float64)
    norm = np.zeros(span, dtype=np.float64)
    for k in range(count):
        start = int(mel_starts[k])
        total[start:start + size] += weights[k][:, None] * windows[k]
        norm[start:start + size] += weights[k]
    covered = norm > 0
    last = int(np.flatnonzero(covered)[-1])
    total[covered] /= norm[covered][:, None]
    total[last + 1:] = total[last]
    return total[:int(total_frames)].astype(np.float32)
