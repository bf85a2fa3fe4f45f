"""A predictor with known answers: it returns the true mel window of every face window it is shown.

It finds each window by its pixels among all windows the clips could yield (every start frame,
the end padded by repeating the last frame) and cuts the true mel from the clip's mels.npz at
that frame's own mel position, round(frame * sample_rate / (hop_size * fps)). Windowing,
stitching, vocoding and scoring fed by it must reproduce the data's own mels and speech; a window
placed, ordered or cut wrongly by the application shows up as a mismatch with mels.npz.
"""
import hashlib

import numpy as np

from common.data import crops
from common.data import dataset


def _key(window_uint8):
    return hashlib.sha1(np.ascontiguousarray(window_uint8).tobytes()).hexdigest()


def true_mel_window(spec, mel_start, size):
    """spec [num_mels, frames] -> [size, num_mels] from ``mel_start``, past the end repeating the last frame."""
    columns = np.minimum(np.arange(mel_start, mel_start + size), spec.shape[1] - 1)
    return spec[:, columns].T


class OraclePredictor(object):
    """Face windows of the clips of ``splits`` -> their true mel windows [N, mel_step_size, num_mels]."""

    def __init__(self, data_dir, hp, splits=("test",)):
        self.hp = hp
        self._answers = {}
        for split in splits:
            for clip in dataset.ClipIndex(data_dir, split, hp).clips:
                self._learn(clip)

    def _learn(self, clip):
        hp = self.hp
        spec = dataset.load_mels(clip, hp)
        images = [crops.read(clip.path, number, hp.img_size, hp.crop_style) for number in range(clip.num_frames)]
        if any(image is None for image in images):
            raise ValueError("oracle needs every frame of clip %s" % clip.id)
        mel_per_frame = float(hp.sample_rate) / (hp.hop_size * hp.fps)
        for first in range(clip.num_frames):
            window = np.stack([images[min(first + t, clip.num_frames - 1)] for t in range(hp.T)])
            answer = true_mel_window(spec, int(round(first * mel_per_frame)), hp.mel_step_size)
            self._answers.setdefault(_key(window), []).append((clip.id, first, answer))

    def predict(self, windows):
        """windows float32 [N, T, S, S, 3] in [0, 1] -> true mels; KeyError for a window no clip has."""
        mels = []
        for window in np.asarray(windows):
            candidates = self._answers.get(_key(np.rint(window * 255.0).astype(np.uint8)))
            if not candidates:
                raise KeyError("the oracle has never seen this window (not a window of its clips)")
            answers = [answer for _, _, answer in candidates]
            if any(not np.array_equal(answers[0], other) for other in answers[1:]):
                raise KeyError("window is ambiguous: frames repeat at %s"
                               % [(clip, first) for clip, first, _ in candidates])
            mels.append(answers[0])
        return np.stack(mels).astype(np.float32)
