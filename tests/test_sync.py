"""Audio-video sync: the offset estimator, --fix-sync / --max-offset in preprocessing, the dataset-report
histogram and the aligned evaluation scores, on astronaut clips shifted by known offsets."""
import json
import os
import shutil

import numpy as np
import pytest

from common.config import hparams
from common.data import audio
from common.prep import build_clip
from common.prep import preprocess
from common.prep import reports
from common.prep import sync
from common.prep import video
from common.synthetic import astronaut as synthetic

SECONDS = 4.0


@pytest.fixture(scope="module")
def hp():
    return hparams.resolve("synthetic")


@pytest.fixture(scope="module")
def clips(hp):
    """Two rendered clips as (face crops, wav), cut with the known face box."""
    size = synthetic.frame_size_for(hp)
    out = []
    for seed in (0, 1):
        frames, wav = synthetic.render_clip(seed, hp, SECONDS, size)
        out.append((synthetic.crop_face(frames, hp), wav))
    return out


def late(wav, frames, hp):
    """``wav`` made to lag the video by ``frames`` frames (lead when negative), same length."""
    return sync.shift_audio(wav, -frames, hp.sample_rate / float(hp.fps), len(wav))


def test_shifted_clips_are_recovered_within_one_frame(clips, hp):
    errors = []
    for crops, wav in clips:
        for offset in range(-8, 9):
            found = sync.estimate(crops, late(wav, offset, hp), hp.sample_rate, hp.fps)
            assert found.offset is not None, (offset, found)
            errors.append(abs(found.offset - offset))
    assert max(errors) <= 1, errors


def test_unshifted_clip_says_zero(clips, hp):
    for crops, wav in clips:
        found = sync.estimate(crops, wav, hp.sample_rate, hp.fps)
        assert found.offset == 0 and found.confidence >= sync.MIN_CONFIDENCE, found


def test_still_face_is_unsure_instead_of_a_number(clips, hp):
    crops, wav = clips[0]
    still = np.repeat(crops[:1], len(crops), axis=0)
    found = sync.estimate(still, wav, hp.sample_rate, hp.fps)
    assert found.offset is None and found.confidence < sync.MIN_CONFIDENCE and found.reason == "still mouth"
    noisy = np.clip(still + np.random.RandomState(0).randn(*still.shape) * 2, 0, 255).astype(np.uint8)
    found = sync.estimate(noisy, wav, hp.sample_rate, hp.fps)
    assert found.offset is None and found.confidence < sync.MIN_CONFIDENCE, found


def test_shift_audio_moves_by_whole_frames_and_keeps_the_length():
    wav = np.arange(10, dtype=np.float32) + 1
    np.testing.assert_array_equal(sync.shift_audio(wav, 1, 2, 10), [3, 4, 5, 6, 7, 8, 9, 10, 0, 0])
    np.testing.assert_array_equal(sync.shift_audio(wav, -2, 2, 8), [0, 0, 0, 0, 1, 2, 3, 4])


@pytest.fixture(scope="module")
def shifted_videos(tmp_path_factory, hp):
    """The same astronaut clip as a video in sync and as one whose audio lags by 5 frames (6 s: the
    estimate after the fix, with 5 frames of silence, stays confident)."""
    root = tmp_path_factory.mktemp("sync_raw")
    frames, wav = synthetic.render_clip(7, hp, 6.0)
    paths = {}
    for name, offset in (("clean", 0), ("late", 5)):
        paths[name] = str(root / (name + ".mp4"))
        video.write_video(frames, late(wav, offset, hp), hp.fps, paths[name], hp.sample_rate)
    return paths


def _mels(data_dir, clip_id):
    return np.load(os.path.join(data_dir, "preprocessed", clip_id, "mels.npz"))["spec"]


def test_fix_sync_restores_a_shifted_clips_mels(shifted_videos, hp, tmp_path):
    clips = [("clean", shifted_videos["clean"]), ("late", shifted_videos["late"])]
    report = preprocess.run(clips, str(tmp_path), hp, build_clip.default_options(hp, fix_sync=True), workers=1)
    assert report["kept"]["clean"]["sync"]["offset"] == 0 and "shifted" not in report["kept"]["clean"]["sync"]
    record = report["kept"]["late"]["sync"]
    assert record["offset"] == 5 and record["shifted"] == 5 and record["residual"] == 0, record
    assert report["sync"]["shifted"] == 1 and report["sync"]["histogram"] == {"0": 1, "5": 1}
    edge = int(np.ceil(5 * 80.0 / hp.fps)) + 2  # the fixed clip's last 5 frames have silence, not speech
    clean, fixed = _mels(str(tmp_path), "clean")[:, :-edge], _mels(str(tmp_path), "late")[:, :-edge]
    shifted = audio.melspectrogram(late(audio.load_wav(os.path.join(str(tmp_path), "preprocessed", "clean",
                                                                     "audio.wav"), hp.sample_rate, hp.rescaling_max),
                                        5, hp), hp)[:, :-edge]
    assert np.abs(fixed - clean).mean() < 0.1 * np.abs(shifted - clean).mean()
    assert np.abs(fixed - clean).mean() < 0.15
    assert "1 shifted back" in preprocess.format_report(report)


def test_max_offset_drops_clips_that_stay_off(shifted_videos, hp, tmp_path):
    with pytest.raises(build_clip.PreprocessError, match="all 1 clips were dropped"):
        preprocess.run([("late", shifted_videos["late"])], str(tmp_path), hp,
                       build_clip.default_options(hp, max_offset=2), workers=1)
    with open(os.path.join(str(tmp_path), "preprocess_report.json")) as f:
        dropped = json.load(f)["dropped"]
    assert dropped["late"]["reason"] == "out_of_sync"
    assert dropped["late"]["message"].startswith("audio is +5 frames off the video")
    assert "--fix-sync would shift it back" in dropped["late"]["message"]


@pytest.fixture(scope="module")
def speaker(tmp_path_factory, hp):
    """The embedded speaker's preprocessed layout (no preprocessing report), 5 clips."""
    data = str(tmp_path_factory.mktemp("sync_speaker"))
    synthetic.make_speaker(data, hp, num_clips=5, seconds=SECONDS, seed=0)
    return data


def test_dataset_report_shows_the_offset_histogram_as_text_and_png(speaker, hp, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(speaker, data)
    text = reports.sync_report(data, hp)
    lines = text.splitlines()
    assert lines[0].startswith("audio-video offset") and "5 clips measured" in lines[0], text
    bars = [line.split() for line in lines[1:-1]]
    assert [bar[0] for bar in bars] == ["+0"] and int(bars[0][1]) == 5 - int(lines[0].split(", ")[1].split()[0])
    png = os.path.join(data, "sync_offsets.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_dataset_report_reads_offsets_from_the_preprocessing_report(speaker, hp, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(speaker, data)
    kept = {"clip%03d" % i: {"sync": {"offset": 3 if i < 4 else None, "lag": 3, "confidence": 9.0, "reason": ""}}
            for i in range(5)}
    kept["clip000"]["sync"].update(shifted=3, residual=0)
    with open(os.path.join(data, "preprocess_report.json"), "w") as f:
        json.dump({"kept": kept}, f)
    text = reports.sync_report(data, hp)
    assert "5 clips measured, 1 unsure" in text
    assert [line.split()[:2] for line in text.splitlines()[1:-1]] == [["+0", "1"], ["+3", "3"]]


def test_aligned_scores_take_out_a_constant_lag(clips, hp):
    from export.apps import evaluate
    wav = clips[0][1]
    delayed = np.concatenate([np.zeros(1600, np.float32), wav[:-1600]])  # 100 ms late
    unaligned = evaluate.score(wav, delayed)
    row = evaluate.aligned_scores(wav, delayed, hp.sample_rate, 200)
    assert abs(row["lag_ms"] - 100.0) <= 12.5
    assert row["aligned_stoi"] > 0.95 > unaligned["stoi"] + 0.2
    assert evaluate.aligned_scores(wav, wav, hp.sample_rate, 200)["lag_ms"] == 0


def test_evaluate_reports_aligned_and_unaligned_scores_side_by_side():
    from export.apps import evaluate
    rows = [{"model_" + m: 0.5 for m in evaluate.METRICS}, {"model_" + m: 0.3 for m in evaluate.METRICS}]
    for row, lag in zip(rows, (-50.0, 100.0)):
        row.update(("model_aligned_" + m, 0.7) for m in evaluate.METRICS)
        row["model_lag_ms"] = lag
    summary = {"split": "test", "clips": 2, "model": {m: 0.4 for m in evaluate.METRICS},
               "baseline": {m: 0.1 for m in evaluate.METRICS}, "reference": {}}
    summary.update(evaluate._aligned_summary(rows, 200))
    assert summary["model_aligned"]["stoi"] == pytest.approx(0.7) and summary["mean_abs_lag_ms"] == 75.0
    lines = evaluate.format_table(summary).splitlines()
    assert lines[1].split()[-3:] == ["0.400"] * 3
    assert lines[2].startswith("  aligned +-200 ms (|lag| 75 ms)") and lines[2].split()[-3:] == ["0.700"] * 3
