"""Windows: the [T, S, S, 3] face window every graph takes, where evaluation windows start, and
``stitch``, which puts the mel windows predicted for them back into one mel.

Evaluation windows start every T - overlap frames; each predicts mel_step_size mel frames from
timing.mel_start(start). hp.stitch picks how they join: "crossfade" (ours) runs windows until one
reaches the clip's end and crossfades consecutive predictions over mel_overlap frames; "concat"
(the original's complete_test_generate.py) takes full windows only and concatenates the first
with each later one's frames past mel_overlap, dropping the clip's tail after the last full window.
"""
import numpy as np

from common.config import hparams

CROSSFADE, CONCAT = hparams.STITCHES


def window_shape(hp):
    """Shape of one face window: T frames of img_size x img_size, 3 channels (order: hp.crop_style's)."""
    return (hp.T, hp.img_size, hp.img_size, 3)


def window_starts(num_frames, hp):
    """First frame of each evaluation window of ``num_frames`` frames.

    crossfade: the last may run past the end. concat: only windows that fit (the original's
    ``while i + T <= len``), or the first alone for a clip shorter than T.
    """
    stride = hp.T - hp.overlap  # > 0: the hparams check refuses overlap >= T
    starts = [0]
    if hp.stitch == CONCAT:
        while starts[-1] + stride + hp.T <= num_frames:
            starts.append(starts[-1] + stride)
        return starts
    while starts[-1] + hp.T < num_frames:
        starts.append(starts[-1] + stride)
    return starts


def join(windows, mel_starts, total_frames, hp):
    """The mel of a clip from its predicted windows, by hp.stitch."""
    if hp.stitch == CONCAT:
        return concat(windows, hp.mel_overlap)
    return stitch(windows, mel_starts, total_frames, hp.mel_overlap)


def concat(windows, mel_overlap):
    """Mel windows [W, M, num_mels] -> [M + (W - 1) (M - mel_overlap), num_mels]: the first window, then each
    later one without its first mel_overlap frames (the original's evaluation)."""
    windows = np.asarray(windows, dtype=np.float32)
    if windows.ndim != 3 or not len(windows):
        raise ValueError("need windows [W, M, num_mels], got %s" % (windows.shape,))
    return np.concatenate([windows[0]] + [w[int(mel_overlap):] for w in windows[1:]])


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
