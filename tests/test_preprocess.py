"""common.prep.preprocess on small synthetic raw videos: layout, alignment and every bad-input path."""
import os

import numpy as np
import pytest
import soundfile

from common.data import audio
from common.data import crops
from common.prep import faces
from common.config import hparams
from common.prep import build_clip
from common.prep import preprocess
from common.synthetic import astronaut as synthetic
from tests import synthetic_raw
from common.prep import video


@pytest.fixture(scope="module")
def hp():
    return hparams.resolve("synthetic")


@pytest.fixture(scope="module")
def raw(tmp_path_factory, hp):
    """Two 1.5 s astronaut clips plus the bad inputs, in one folder."""
    root = tmp_path_factory.mktemp("raw")
    paths = synthetic_raw.make_raw_speaker(str(root), hp, num_clips=2, seconds=1.5)
    good = paths[0]
    data = open(good, "rb").read()
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000))
    (bad / "truncated.mp4").write_bytes(data[:len(data) // 3])
    frames, wav = synthetic.render_clip(3, hp, 1.5)
    video.write_video(frames, None, hp.fps, str(bad / "silent.mp4"))
    grey = np.full_like(frames, 128)
    video.write_video(grey, wav, hp.fps, str(bad / "noface.mp4"))
    # Variable frame rate: drop frames 10-24 and keep the others' timestamps (a 0.5 s hold).
    video.run_ffmpeg(["-i", good, "-vf", "select='not(between(n,10,24))'", "-vsync", "vfr", "-c:v", "libx264",
                      "-c:a", "copy", str(root / "vfr.mp4")])
    return root, paths


def known_box(hp):
    return np.array(synthetic.face_box(synthetic.FRAME_SIZE, hp.crop_style), np.float64)


def run_one(path, out_root, hp, clip_id="clip"):
    return preprocess.run([(clip_id, path)], str(out_root), hp, workers=1)


def check_clip(folder, hp, min_iou=0.8):
    names = os.listdir(folder)
    frames = sorted(int(n[:-4]) for n in names if n.endswith(".jpg"))
    assert frames == list(range(len(frames)))
    wav, rate = soundfile.read(os.path.join(folder, "audio.wav"))
    assert rate == hp.sample_rate
    assert abs(len(wav) - len(frames) * hp.sample_rate / float(hp.fps)) <= hp.sample_rate / float(hp.fps)
    mel = np.load(os.path.join(folder, "mels.npz"))["spec"]
    assert mel.shape == (hp.num_mels, audio.num_frames(len(wav), hp))
    boxes = np.load(os.path.join(folder, "boxes.npy"))
    assert min(faces.iou(c, known_box(hp)) for c in boxes[:, :4]) >= min_iou
    return len(frames)


def test_good_clip_layout_alignment_and_face(raw, hp, tmp_path):
    _, paths = raw
    report = run_one(paths[0], tmp_path, hp)
    assert list(report["kept"]) == ["clip"] and not report["dropped"]
    assert check_clip(str(tmp_path / "preprocessed" / "clip"), hp) == 45
    assert (tmp_path / "preprocess_report.json").is_file()
    assert not (tmp_path / "preprocessed" / ".tmp").exists()
    again = run_one(paths[0], tmp_path, hp)
    assert again["already_done"] == 1 and not again["kept"]


def test_variable_frame_rate_becomes_constant(raw, hp, tmp_path):
    root, _ = raw
    assert video.count_frames(str(root / "vfr.mp4")) == 30  # 15 of 45 frames are held, not stored
    report = run_one(str(root / "vfr.mp4"), tmp_path, hp)
    assert report["kept"]["clip"]["frames"] in (44, 45, 46)
    check_clip(str(tmp_path / "preprocessed" / "clip"), hp)


def test_bad_clips_are_dropped_and_the_run_continues(raw, hp, tmp_path):
    root, paths = raw
    expected = {"corrupt": "unreadable", "truncated": "unreadable", "silent": "no_audio", "noface": "no_face"}
    clips = [(name, str(root / "bad" / (name + ".mp4"))) for name in sorted(expected)] + [("good", paths[1])]
    report = preprocess.run(clips, str(tmp_path), hp, workers=1)
    assert dict((k, v["reason"]) for k, v in report["dropped"].items()) == expected
    assert list(report["kept"]) == ["good"]
    assert sorted(os.listdir(str(tmp_path / "preprocessed"))) == ["good"]
    summary = preprocess.format_report(report)
    assert "no_audio=1" in summary and "unreadable=2" in summary and "no_face=1" in summary


def test_silent_video_gives_crops_only_when_audio_is_optional(raw, hp, tmp_path):
    root, _ = raw
    silent = str(root / "bad" / "silent.mp4")
    out = tmp_path / "preprocessed" / "silent"
    opts = build_clip.default_options(hp)
    with pytest.raises(build_clip.ClipFault) as info:
        build_clip.preprocess_clip(silent, str(out), hp, opts)
    assert info.value.reason == "no_audio" and not out.exists()
    stats = build_clip.preprocess_clip(silent, str(out), hp, opts, require_audio=False)
    assert stats["frames"] == 45
    names = set(os.listdir(str(out)))
    assert names == set("%d.jpg" % i for i in range(45)) | {"boxes.npy"}
    boxes = np.load(str(out / "boxes.npy"))
    assert min(faces.iou(c, known_box(hp)) for c in boxes[:, :4]) >= 0.8


def test_disk_failure_mid_clip_leaves_nothing(raw, hp, tmp_path, monkeypatch):
    _, paths = raw
    real = crops.write
    calls = []

    def failing(folder, number, rgb, quality):
        calls.append(number)
        if len(calls) == 10:
            raise OSError(28, "No space left on device")
        return real(folder, number, rgb, quality)

    monkeypatch.setattr(crops, "write", failing)
    report = preprocess.run([("a", paths[0]), ("b", paths[1])], str(tmp_path), hp, workers=1)
    assert report["dropped"]["a"]["reason"] == "write_failed"
    assert "No space left" in report["dropped"]["a"]["message"]
    assert list(report["kept"]) == ["b"]
    assert sorted(os.listdir(str(tmp_path / "preprocessed"))) == ["b"]


def test_all_dropped_is_a_run_level_error(raw, hp, tmp_path):
    root, _ = raw
    with pytest.raises(build_clip.PreprocessError, match="all 1 clips were dropped"):
        run_one(str(root / "bad" / "corrupt.mp4"), tmp_path, hp)


def test_run_level_faults_exit_2_with_one_line(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [(["--videos", str(tmp_path / "missing")], "does not exist"),
             (["--videos", str(empty)], "no video"),
             (["--speaker", "nobody"], "unknown"),
             (["--speaker", "chess"], "run `invoke download"),
             (["--videos", str(empty), "--detector", "s3fd"], "unknown detector")]
    for argv, text in cases:
        assert preprocess.main(argv + ["--data", str(tmp_path / "data")]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and text in err[0], (argv, err)


def test_fill_boxes_interpolates_short_gaps_and_rejects_long_ones(hp):
    opts = build_clip.default_options(hp, smooth_frames=1)
    boxes = np.tile(np.array([[10.0, 10.0, 30.0, 30.0]]), (30, 1))
    boxes[:, 0] += np.arange(30)
    boxes[5:8] = np.nan
    filled, missing = faces.fill_boxes(boxes, 30, opts)
    assert missing == 3 and np.allclose(filled[5:8, 0], [15, 16, 17])
    boxes[5:25] = np.nan
    with pytest.raises(faces.NoFaceError, match="no face in 20 of 30 frames"):
        faces.fill_boxes(boxes, 30, opts)
    smooth = faces.fill_boxes(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10.0],
                                             [0, 0, 10, 10]]), 30, build_clip.default_options(hp))[0]
    assert np.allclose(smooth[2], [0, 0, 10, 10])  # a one-frame outlier is removed by the median


def test_speaker_mode_reads_intervals_and_writes_split_lists(raw, hp, tmp_path):
    _, paths = raw
    from common.prep import download
    vid = download.speaker_ids("chess", "test")[0]
    cut_dir = tmp_path / "chess" / "intervals" / vid
    cut_dir.mkdir(parents=True)
    os.link(paths[0], str(cut_dir / "cut-0.mp4"))
    report = preprocess.preprocess_speaker("chess", str(tmp_path), hp, workers=1)
    assert list(report["kept"]) == [vid + "/cut-0"]
    assert report["splits"] == {"train": 0, "val": 0, "test": 1}
    assert (tmp_path / "chess" / "test.txt").read_text() == vid + "\n"
    assert (tmp_path / "chess" / "train.txt").read_text() == ""
    check_clip(str(tmp_path / "chess" / "preprocessed" / vid / "cut-0"), hp)
