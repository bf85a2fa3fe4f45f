"""common.synthetic.astronaut: a deterministic talking astronaut whose mouth predicts its audio."""
import os
import shutil
import sys

import cv2
import numpy as np
import pytest
import soundfile as sf

from common.data import audio
from common.data import crops
from common.prep import faces
from common.config import hparams
from common.synthetic import astronaut as synthetic


@pytest.fixture(scope="module")
def hp():
    return hparams.resolve("synthetic")


@pytest.fixture(scope="module")
def clip(hp):
    return synthetic.render_clip(7, hp, 4.0)


@pytest.fixture(scope="module")
def speaker(tmp_path_factory, hp):
    data_dir = str(tmp_path_factory.mktemp("speaker"))
    splits = synthetic.make_speaker(data_dir, hp, num_clips=6, seconds=2.0, seed=3)
    return data_dir, splits


def mouth_darkness(frames):
    """Mean darkness of the mouth area in each frame (grows as the mouth opens)."""
    cx, cy, width = synthetic.face_geometry()["mouth"]
    scale = frames.shape[1] / 512.0
    x0, x1 = int((cx - 0.3 * width) * scale), int(np.ceil((cx + 0.3 * width) * scale))
    y0, y1 = int((cy - 0.25 * width) * scale), int(np.ceil((cy + 0.25 * width) * scale))
    gray = frames[:, y0:y1, x0:x1].astype(np.float64).mean(axis=3)
    return 255.0 - gray.mean(axis=(1, 2))


def test_render_clip_shapes_and_alignment(clip, hp):
    frames, wav = clip
    size = synthetic.FRAME_SIZE
    assert frames.dtype == np.uint8 and frames.shape == (4 * hp.fps, size, size, 3)
    assert wav.dtype == np.float32 and len(wav) == 4 * hp.sample_rate
    assert abs(np.abs(wav).max() - hp.rescaling_max) < 1e-6
    odd_frames, odd_wav = synthetic.render_clip(1, hp, 0.5, frame_size=96)
    assert odd_frames.shape == (15, 96, 96, 3)
    assert len(odd_wav) == int(round(15 * hp.sample_rate / float(hp.fps)))


def test_render_clip_is_deterministic_per_seed(clip, hp):
    frames, wav = synthetic.render_clip(7, hp, 4.0)
    np.testing.assert_array_equal(frames, clip[0])
    np.testing.assert_array_equal(wav, clip[1])
    other_frames, other_wav = synthetic.render_clip(8, hp, 4.0)
    assert not np.array_equal(other_wav, wav)
    assert not np.array_equal(other_frames, frames)


def test_mouth_moves_and_audio_energy_follows_it(clip, hp):
    frames, wav = clip
    darkness = mouth_darkness(frames)
    assert darkness.max() - darkness.min() > 30
    hop = hp.sample_rate // hp.fps
    energy = np.array([np.sqrt(np.mean(wav[max(0, c - hop // 2):c + hop // 2] ** 2))
                       for c in (np.arange(len(frames)) * hp.sample_rate) // hp.fps])
    # Measured correlation 0.97 (seeds 1, 2, 3: 0.95, 0.92, 0.96).
    assert np.corrcoef(darkness, energy)[0, 1] > 0.7
    silent = energy < 1e-3
    assert silent.any() and (~silent).any()
    assert darkness[silent].mean() < darkness[~silent].mean()


def test_formants_follow_articulation(hp):
    track = synthetic.articulation(11, 4.0)
    assert set(track) == {"f1", "f2", "f3", "opening", "spread"}
    assert track["opening"].min() == 0.0 and track["opening"].max() > 0.5
    voiced = track["opening"] > 0.2
    assert np.corrcoef(track["opening"][voiced], track["f1"][voiced])[0, 1] > 0.5
    assert np.corrcoef(track["spread"][voiced], track["f2"][voiced])[0, 1] > 0.5


def test_haar_cascade_finds_the_face_in_rendered_frames(clip, hp):
    frames = clip[0]
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    x0, y0, x1, y1 = synthetic.face_box(frames.shape[1], hp.crop_style)
    x, y, side = x0, y0, max(x1 - x0, y1 - y0)
    hits = 0
    for frame in frames:
        found = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.05, 3, minSize=(20, 20))
        for fx, fy, fw, fh in found:
            if abs(fx + fw / 2.0 - (x + side / 2.0)) < side / 4.0 and abs(fy + fh / 2.0 - (y + side / 2.0)) < side / 4.0:
                hits += 1
                break
    # Measured 120 of 120 frames at the default 320 px (seeds 1, 2: 120, 120); at 160 px it missed ~39%.
    assert hits >= 0.95 * len(frames)
    assert side < frames.shape[1] / 3.0


@pytest.mark.parametrize("style", hparams.CROP_STYLES)
def test_face_box_is_the_preprocessing_crop_of_the_detected_face(clip, style):
    """Synthetic crops and crops preprocessed from raw synthetic video must show the same region."""
    frames = clip[0]
    boxes = faces.make_detector(faces.DEFAULT_DETECTOR).detect(frames)
    boxes = crops.crop_boxes(boxes[:, :4], style, frames.shape[2], frames.shape[1])
    box = synthetic.face_box(frames.shape[1], style)
    ious = [faces.iou(c, box) for c in boxes]
    # Measured IoU mean 0.94, min 0.83 (square-margin, unsmoothed boxes; the cascade-box crop it replaced gave 0.74).
    assert np.mean(ious) >= 0.9 and min(ious) >= 0.75
    small = synthetic.face_box(160, style)
    assert faces.iou([2 * v for v in small], box) >= 0.9


def test_crop_face_uses_img_size(clip, hp):
    hp = hp.replace(crop_style="square-margin")
    crops = synthetic.crop_face(clip[0][:5], hp)
    assert crops.dtype == np.uint8 and crops.shape == (5, hp.img_size, hp.img_size, 3)
    large = synthetic.crop_face(clip[0][:2], hp.replace(img_size=96))
    assert large.shape == (2, 96, 96, 3)


def test_make_speaker_layout(speaker, hp):
    data_dir, splits = speaker
    root = os.path.join(data_dir, "preprocessed")
    assert sorted(os.listdir(root)) == ["clip%03d" % i for i in range(6)]
    listed = {}
    for name in ("train", "val", "test"):
        with open(os.path.join(data_dir, name + ".txt")) as f:
            listed[name] = f.read().split()
        assert listed[name] == splits[name]
    assert len(listed["val"]) >= 2 and len(listed["test"]) >= 2 and len(listed["train"]) >= 1
    assert sorted(sum(listed.values(), [])) == sorted(os.listdir(root))
    with open(os.path.join(data_dir, "crop_style.txt")) as f:
        assert f.read() == hp.crop_style + "\n"
    # The original's crops are stored as cut: the face box of the rendered frame size.
    x0, y0, x1, y1 = synthetic.face_box(synthetic.frame_size_for(hp), "original")
    for clip_id in os.listdir(root):
        folder = os.path.join(root, clip_id)
        jpgs = sorted(int(n[:-4]) for n in os.listdir(folder) if n.endswith(".jpg"))
        assert jpgs == list(range(2 * hp.fps))
        image = cv2.imread(os.path.join(folder, "0.jpg"))
        assert hp.crop_style == "original" and image.shape == (y1 - y0, x1 - x0, 3)
        info = sf.info(os.path.join(folder, "audio.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (hp.sample_rate, 1, "PCM_16")
        spec = np.load(os.path.join(folder, "mels.npz"))["spec"]
        assert spec.dtype == np.float32 and spec.shape[0] == hp.num_mels
        assert spec.shape[1] == audio.num_frames(info.frames, hp)
        assert abs(spec.shape[1] * hp.fps / hp.mel_frames_per_second - len(jpgs)) <= 1


def test_make_speaker_is_deterministic_and_resumable(speaker, hp, tmp_path):
    data_dir, _ = speaker
    again = str(tmp_path / "again")
    synthetic.make_speaker(again, hp, num_clips=6, seconds=2.0, seed=3)
    for clip_id in ("clip000", "clip005"):
        for name in ("mels.npz", "audio.wav", "0.jpg", "59.jpg"):
            a, b = (os.path.join(d, "preprocessed", clip_id, name) for d in (data_dir, again))
            if name.endswith(".npz"):
                assert np.load(a)["spec"].tobytes() == np.load(b)["spec"].tobytes()
            else:
                with open(a, "rb") as fa, open(b, "rb") as fb:
                    assert fa.read() == fb.read()
    root = os.path.join(again, "preprocessed")
    kept = os.path.join(root, "clip001", "mels.npz")
    stamp = os.stat(kept).st_mtime_ns
    shutil.rmtree(os.path.join(root, "clip002"))
    os.makedirs(os.path.join(root, ".tmp", "clip004.%d" % os.getpid(), "junk"))  # a killed run's half clip
    shutil.rmtree(os.path.join(root, "clip004"))
    synthetic.make_speaker(again, hp, num_clips=6, seconds=2.0, seed=3)
    assert os.stat(kept).st_mtime_ns == stamp
    assert sorted(os.listdir(root)) == ["clip%03d" % i for i in range(6)]
    for clip_id in ("clip002", "clip004"):
        a, b = (np.load(os.path.join(d, "preprocessed", clip_id, "mels.npz"))["spec"] for d in (data_dir, again))
        assert a.tobytes() == b.tobytes()
    assert not os.path.exists(os.path.join(root, "clip004", "junk"))


def test_cli(tmp_path, capsys):
    from common.synthetic import speakers
    out = str(tmp_path / "cli")
    assert speakers.main(["--out", out, "--clips", "5", "--seconds", "1", "--seed", "2"]) == 0
    assert len(os.listdir(os.path.join(out, "preprocessed"))) == 5
    assert speakers.main(["--out", out, "--clips", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert speakers.main(["--out", out, "--preset", "nope"]) == 2


def test_demo_without_scikit_image_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    from export.apps import demo
    monkeypatch.setitem(sys.modules, "skimage", None)  # what `import skimage` meets when absent
    synthetic._astronaut.cache_clear()
    try:
        code = demo.main(["--out", str(tmp_path / "demo"), "--speaker", "astronaut", "--clips", "2", "--steps", "1"])
    finally:
        synthetic._astronaut.cache_clear()
    err = capsys.readouterr().err
    assert code == 2
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "scikit-image is not installed" in line and "pip install scikit-image" in line
    assert "Traceback" not in err
