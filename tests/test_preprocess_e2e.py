"""End to end: synthetic raw videos -> `python -m common.prep.preprocess` (2 workers) -> dataset batches.

Checks the crops are the face (IoU with the renderer's known box), frames and audio stay aligned
(frame count vs audio length within one frame, and the stored mels line up with the rendered
speech at zero lag), and that BatchSource and the dataset report read the result.
"""
import os

import numpy as np
import soundfile

from common.data import audio
from common.data import dataset
from common.prep import faces
from common.config import hparams
from common.prep import preprocess
from common.prep import reports
from common.synthetic import astronaut as synthetic
from tests import synthetic_raw

CLIPS = 3
SECONDS = 3.0


def best_lag(reference, test, max_lag=4):
    """Mel-frame shift of ``test`` against ``reference`` that correlates best."""
    n = min(reference.shape[1], test.shape[1]) - 2 * max_lag
    ref = reference[:, max_lag:max_lag + n].ravel()
    scores = {}
    for lag in range(-max_lag, max_lag + 1):
        scores[lag] = np.corrcoef(ref, test[:, max_lag + lag:max_lag + lag + n].ravel())[0, 1]
    return max(scores, key=scores.get), scores


def test_raw_video_to_batches(tmp_path, capsys):
    hp = hparams.resolve("synthetic")
    raw = tmp_path / "raw"
    data = tmp_path / "data"
    synthetic_raw.make_raw_speaker(str(raw), hp, num_clips=CLIPS, seconds=SECONDS, seed=0)
    code = preprocess.main(["--videos", str(raw / "videos"), "--data", str(data), "--split", "train",
                            "--workers", "2", "--preset", "synthetic"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 kept" in out
    ids = (data / "train.txt").read_text().split()
    assert ids == ["clip%03d" % i for i in range(CLIPS)]

    truth = np.array(synthetic.face_box(synthetic.FRAME_SIZE, hp.crop_style), np.float64)
    frame_seconds = 1.0 / hp.fps
    for i, clip_id in enumerate(ids):
        folder = str(data / "preprocessed" / clip_id)
        frames = sorted(int(n[:-4]) for n in os.listdir(folder) if n.endswith(".jpg"))
        assert frames == list(range(int(SECONDS * hp.fps)))
        boxes = np.load(os.path.join(folder, "boxes.npy"))
        ious = [faces.iou(b[:4], truth) for b in boxes]
        # The synthetic crop convention is preprocessing's: measured IoU mean 0.96, min 0.88.
        assert min(ious) >= 0.8 and np.mean(ious) >= 0.9, (clip_id, min(ious), np.mean(ious))
        wav, _ = soundfile.read(os.path.join(folder, "audio.wav"))
        assert abs(len(wav) / float(hp.sample_rate) - len(frames) * frame_seconds) <= frame_seconds
        stored = np.load(os.path.join(folder, "mels.npz"))["spec"]
        _, rendered = synthetic.render_clip(i, hp, SECONDS)
        lag, scores = best_lag(audio.melspectrogram(rendered, hp), stored)
        assert lag == 0 and scores[0] > 0.9, scores

    source = dataset.BatchSource(str(data), "train", hp, batch_size=2, seed=1, workers=1)
    try:
        batch = next(source)
    finally:
        source.close()
    assert batch["inputs"].shape == (2, hp.T, hp.img_size, hp.img_size, 3)
    assert batch["mel_targets"].shape == (2, hp.mel_step_size, hp.num_mels)
    assert 0.0 <= batch["inputs"].min() and batch["inputs"].max() <= 1.0

    report = reports.dataset_report(str(data), hp)
    assert "train" in report and "last preprocessing run: 3 clips kept, 0 dropped" in report
