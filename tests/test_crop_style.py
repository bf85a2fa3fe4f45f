"""Crop styles and stitching: the original Lip2Wav's data preparation (the default) and ours, one flag apart.

Expected values come from outside the code: cv2 called directly as the original's preprocess.py and
feeder.py call it, the original's mel input (librosa.load of audio.wav, no rescaling), and the
original's concatenation of evaluation windows worked out by hand.
"""
import json
import os

import cv2
import librosa
import numpy as np
import pytest

from common.config import hparams
from common.data import audio
from common.data import crops
from common.data import dataset
from common.data import windows
from common.prep import preprocess
from common.prep import video
from common.synthetic import astronaut as synthetic
from tests import test_dataset

HP = hparams.resolve("synthetic")


def _frame():
    """An RGB frame whose three channels differ, so a swapped channel order shows."""
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([150 + x, y * 5, np.full_like(x, 40)], axis=-1).astype(np.uint8)


def test_defaults_are_the_original_and_the_crossfade():
    assert (HP.crop_style, HP.stitch) == ("original", "crossfade")
    with pytest.raises(hparams.HParamsError, match="crop_style"):
        HP.replace(crop_style="square")
    with pytest.raises(hparams.HParamsError, match="stitch"):
        HP.replace(stitch="average")


def test_a_run_recorded_before_crop_styles_reads_square_margin_crops(tmp_path):
    path = str(tmp_path / "hparams.json")
    HP.save(path)
    with open(path) as f:
        saved = json.load(f)
    assert saved["crop_style"] == "original"
    del saved["crop_style"]
    with open(path, "w") as f:
        json.dump(saved, f)
    assert hparams.load(path).crop_style == "square-margin"


def test_original_crop_is_the_tight_int_box_written_as_cut_and_read_by_cv2_in_bgr(tmp_path):
    frame = _frame()
    box = crops.crop_boxes([[3.7, -2.0, 20.9, 15.5]], crops.ORIGINAL, 64, 48)[0]
    # The original: np.clip(box, 0, None), int() of each corner, frame[y1:y2, x1:x2].
    assert list(box) == [3, 0, 20, 15]
    cut = crops.cut(frame, box, 16, crops.ORIGINAL)
    np.testing.assert_array_equal(cut, frame[0:15, 3:20])
    crops.write(str(tmp_path), 0, cut)
    stored = cv2.imread(os.path.join(str(tmp_path), "0.jpg"))
    assert stored.shape == (15, 17, 3)
    # The JPEG holds a normal image: decoded to RGB it is the crop (up to JPEG loss).
    assert np.abs(cv2.cvtColor(stored, cv2.COLOR_BGR2RGB).astype(int) - cut).mean() < 3
    got = crops.read(str(tmp_path), 0, 16, crops.ORIGINAL)
    # The original's feeder: cv2.imread (BGR), cv2.resize with its default interpolation.
    np.testing.assert_array_equal(got, cv2.resize(cv2.imread(os.path.join(str(tmp_path), "0.jpg")), (16, 16)))
    assert got[..., 0].mean() < 60 < 140 < got[..., 2].mean()  # BGR: blue (40) first, red (150 + x) last


def test_square_margin_crop_is_square_grown_and_rgb(tmp_path):
    frame = _frame()
    box = crops.crop_boxes([[10.0, 10.0, 30.0, 30.0]], crops.SQUARE_MARGIN, 64, 48)[0]
    assert list(box) == [8, 8, 32, 32]  # side 20 * 1.2 = 24 around the centre (20, 20)
    cut = crops.cut(frame, box, 12, crops.SQUARE_MARGIN)
    np.testing.assert_array_equal(cut, cv2.resize(frame[8:32, 8:32], (12, 12), interpolation=cv2.INTER_AREA))
    crops.write(str(tmp_path), 0, cut)
    got = crops.read(str(tmp_path), 0, 12, crops.SQUARE_MARGIN)
    np.testing.assert_array_equal(got, cv2.cvtColor(cv2.imread(os.path.join(str(tmp_path), "0.jpg")), cv2.COLOR_BGR2RGB))


def test_concat_windows_and_stitch_are_the_originals():
    hp = HP.replace(stitch="concat")
    # complete_test_generate.py: i = 0; while i + T <= len: window at i; i += T - overlap (T=30, overlap=5).
    assert windows.window_starts(105, hp) == [0, 25, 50, 75]
    assert windows.window_starts(104, hp) == [0, 25, 50]
    assert windows.window_starts(105, HP) == [0, 25, 50, 75]
    assert windows.window_starts(106, HP) == [0, 25, 50, 75, 100]
    # mel = first window, then np.concatenate((mel, s[:, mel_overlap:])) per later window (mel_overlap 2).
    wins = np.array([[[1.0], [2.0], [3.0], [4.0]], [[5.0], [6.0], [7.0], [8.0]], [[9.0], [10.0], [11.0], [12.0]]])
    expected = np.array([1, 2, 3, 4, 7, 8, 11, 12], np.float32)[:, None]
    np.testing.assert_array_equal(windows.join(wins, [0, 2, 4], 9, hp.replace(mel_overlap=2)), expected)
    crossfaded = windows.join(wins, [0, 2, 4], 9, HP.replace(mel_overlap=2))
    assert crossfaded.shape == (9, 1) and not np.array_equal(crossfaded[:8], expected)


def _clip_folder(root, rgb, num_frames):
    folder = os.path.join(root, "preprocessed", "clip")
    os.makedirs(folder)
    for i in range(num_frames):
        crops.write(folder, i, np.full((20, 14, 3), rgb, np.uint8))
    return dataset.Clip("clip", folder, num_frames, 1000, ())


def test_the_network_gets_the_styles_channel_order(tmp_path):
    clip = _clip_folder(str(tmp_path), (250, 20, 10), HP.T)
    original, _ = dataset.windows_for_clip(clip, HP)
    ours, _ = dataset.windows_for_clip(clip, HP.replace(crop_style="square-margin"))
    assert original.shape == ours.shape == (1, HP.T, HP.img_size, HP.img_size, 3)
    assert original[..., 2].mean() > 0.9 > 0.2 > original[..., 0].mean()
    assert ours[..., 0].mean() > 0.9 > 0.2 > ours[..., 2].mean()


def test_a_data_directory_of_another_style_is_refused(tmp_path):
    data = str(tmp_path)
    test_dataset.make_clip(data, "clip", 20)
    test_dataset.write_split(data, "train", ["clip"])
    crops.record_style(data, "square-margin")
    assert len(dataset.ClipIndex(data, "train", test_dataset.HP.replace(crop_style="square-margin")).clips) == 1
    with pytest.raises(crops.CropStyleError, match="crop_style square-margin but this run reads original; use a run "
                                                   "with --hparams crop_style=square-margin"):
        dataset.ClipIndex(data, "train", test_dataset.HP)
    with pytest.raises(crops.CropStyleError, match="preprocess with --crop-style square-margin"):
        crops.record_style(data, "original")


@pytest.fixture(scope="module")
def quiet_video(tmp_path_factory):
    """A 1.5 s astronaut clip whose audio peaks at 0.3, far from rescaling_max."""
    frames, wav = synthetic.render_clip(5, HP, 1.5)
    path = str(tmp_path_factory.mktemp("quiet") / "quiet.mp4")
    video.write_video(frames, wav / np.abs(wav).max() * 0.3, HP.fps, path, HP.sample_rate)
    return path


@pytest.mark.workstation  # ffmpeg from imageio-ffmpeg
@pytest.mark.parametrize("style", ["original", "square-margin"])
def test_preprocessing_mels_and_crops_follow_the_style(quiet_video, tmp_path, style):
    hp = HP.replace(crop_style=style)
    data = str(tmp_path)
    preprocess.run([("clip", quiet_video)], data, hp, workers=1)
    with open(os.path.join(data, "crop_style.txt")) as f:
        assert f.read().strip() == style
    folder = os.path.join(data, "preprocessed", "clip")
    # The original's process_audio_file: audio.load_wav (librosa.core.load, no rescaling), then the mel.
    wav = librosa.core.load(os.path.join(folder, "audio.wav"), sr=hp.sample_rate)[0]
    assert 0.2 < np.abs(wav).max() < 0.4
    if style == "square-margin":
        wav = wav / np.abs(wav).max() * hp.rescaling_max
    np.testing.assert_allclose(np.load(os.path.join(folder, "mels.npz"))["spec"], audio.melspectrogram(wav, hp),
                               atol=1e-4)
    boxes = np.load(os.path.join(folder, "boxes.npy"))
    first = cv2.imread(os.path.join(folder, "0.jpg"))
    x0, y0, x1, y1 = boxes[0, :4].astype(int)
    assert first.shape == ((y1 - y0, x1 - x0, 3) if style == "original" else (hp.img_size, hp.img_size, 3))
    with pytest.raises(crops.CropStyleError):
        preprocess.run([("clip", quiet_video)], data, hp.replace(crop_style=({"original", "square-margin"} - {style}).pop()),
                       workers=1)


def test_import_checkpoint_writes_original_style_runs_only(tmp_path):
    from export.apps import import_checkpoint
    with pytest.raises(import_checkpoint.CheckpointImportError, match="crop_style=square-margin"):
        import_checkpoint.import_checkpoint(str(tmp_path / "nothing"), str(tmp_path / "run"),
                                            HP.replace(crop_style="square-margin"))
    assert not (tmp_path / "run").exists()
