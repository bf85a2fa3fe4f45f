"""Synthesis: window stitching (pure), and the CLI on good and bad inputs with a random-weight checkpoint."""
import os

import numpy as np
import pytest

from common.data import audio
from common.data import dataset
from common.data import timing
from common.data import windows as windowing
from common.config import hparams
from common.synthetic import astronaut as synthetic
from export.apps import synthesize
from tests.conftest import error_line, run_entrypoint


def _starts(hp, num_frames):
    return [timing.mel_start(s, hp) for s in windowing.window_starts(num_frames, hp)]


@pytest.mark.parametrize("preset", ["synthetic", "default"])
@pytest.mark.parametrize("seconds", [0.2, 1.0, 2.0, 4.0, 7.3, 30.0])
def test_constant_windows_stitch_to_a_constant_of_the_clip_length(preset, seconds):
    hp = hparams.resolve(preset)
    num_frames = int(round(seconds * hp.fps))
    starts = _starts(hp, num_frames)
    total = timing.mel_frames(num_frames, hp)
    windows = np.full((len(starts), hp.mel_step_size, 3), -1.5, np.float32)
    mel = windowing.stitch(windows, starts, total, hp.mel_overlap)
    assert mel.shape == (total, 3)
    np.testing.assert_allclose(mel, -1.5, rtol=0, atol=1e-6)


def test_stitch_crossfades_linearly_over_mel_overlap():
    windows = np.stack([np.zeros((10, 1)), np.ones((10, 1))]).astype(np.float32)
    mel = windowing.stitch(windows, [0, 6], 16, 4)[:, 0]
    np.testing.assert_allclose(mel[:6], 0.0)
    np.testing.assert_allclose(mel[6:10], [0.2, 0.4, 0.6, 0.8], atol=1e-6)
    np.testing.assert_allclose(mel[10:], 1.0)


def test_stitch_centres_a_short_crossfade_in_a_longer_overlap():
    windows = np.stack([np.zeros((10, 1)), np.ones((10, 1))]).astype(np.float32)
    mel = windowing.stitch(windows, [0, 4], 14, 2)[:, 0]
    np.testing.assert_allclose(mel, [0] * 6 + [1 / 3.0, 2 / 3.0] + [1] * 6, atol=1e-6)


def test_stitch_keeps_each_window_where_it_is_alone_and_pads_or_trims_the_end():
    rng = np.random.RandomState(0)
    windows = rng.randn(3, 8, 2).astype(np.float32)
    mel = windowing.stitch(windows, [0, 6, 12], 22, 2)
    np.testing.assert_allclose(mel[:6], windows[0, :6])
    np.testing.assert_allclose(mel[8:12], windows[1, 2:6])
    np.testing.assert_allclose(mel[14:20], windows[2, 2:])
    np.testing.assert_allclose(mel[20:], np.repeat(windows[2, -1:], 2, axis=0))
    assert windowing.stitch(windows[:1], [0], 5, 2).shape == (5, 2)


def test_stitch_joins_abutting_windows_and_rejects_gaps():
    windows = np.stack([np.zeros((4, 1)), np.ones((4, 1))]).astype(np.float32)
    np.testing.assert_allclose(windowing.stitch(windows, [0, 4], 8, 2)[:, 0], [0] * 4 + [1] * 4)
    with pytest.raises(ValueError):
        windowing.stitch(windows, [0, 5], 9, 2)


def _cli(capsys, *args):
    return run_entrypoint(capsys, synthesize.main, *args)


def test_clip_folder_gives_a_wav_of_the_clip_duration_and_a_plot(untrained_run, synthetic_data, synthetic_hp, tmp_path):
    clip = os.path.join(synthetic_data, "preprocessed", "clip009")
    out = str(tmp_path / "out" / "speech.wav")
    written = synthesize.synthesize(untrained_run, clip, out, batch_size=2, plot=True)
    assert sorted(written) == sorted([out, str(tmp_path / "out" / "speech.png")])
    expected = len(audio.load_wav(os.path.join(clip, "audio.wav"), 16000, rescaling_max=None))
    assert len(audio.load_wav(out, 16000, rescaling_max=None)) == expected


def test_input_shorter_than_one_window_is_padded_then_trimmed(untrained_run, synthetic_hp, tmp_path):
    frames, wav = synthetic.render_clip(3, synthetic_hp, seconds=0.5)
    clip = tmp_path / "short"
    clip.mkdir()
    synthetic.write_clip(str(clip), frames, wav, synthetic_hp)
    assert len(frames) < synthetic_hp.T
    out = str(tmp_path / "short.wav")
    synthesize.synthesize(untrained_run, str(clip), out)
    assert len(audio.load_wav(out, 16000, rescaling_max=None)) == len(wav)


def test_video_input_with_mux(untrained_run, synthetic_hp, tmp_path, capsys):
    from tests import synthetic_raw
    (path,) = synthetic_raw.make_raw_speaker(str(tmp_path / "raw"), synthetic_hp, num_clips=1, seconds=1.2)
    code, _, stderr = _cli(capsys, "--checkpoint", untrained_run, "--video", path, "--out", str(tmp_path / "v.wav"),
                           "--mux")
    assert code == 0, stderr
    assert len(audio.load_wav(str(tmp_path / "v.wav"), 16000)) == 19200
    assert os.path.getsize(str(tmp_path / "v.mp4")) > 0


def test_silent_video_is_cropped_like_training_and_gives_its_duration(untrained_run, synthetic_hp, tmp_path):
    from common.prep import video
    frames, _ = synthetic.render_clip(5, synthetic_hp, seconds=1.0)
    path = str(tmp_path / "silent.mp4")
    video.write_video(frames, None, synthetic_hp.fps, path)
    out = str(tmp_path / "silent.wav")
    synthesize.synthesize(untrained_run, path, out, plot=True)
    assert len(audio.load_wav(out, 16000, rescaling_max=None)) == 16000
    assert os.path.isfile(str(tmp_path / "silent.png"))


def test_folder_of_videos_gives_one_wav_each(untrained_run, synthetic_hp, tmp_path):
    from tests import synthetic_raw
    synthetic_raw.make_raw_speaker(str(tmp_path / "raw"), synthetic_hp, num_clips=2, seconds=1.0)
    written = synthesize.synthesize(untrained_run, str(tmp_path / "raw"), str(tmp_path / "wavs"))
    assert sorted(os.path.relpath(p, str(tmp_path / "wavs")) for p in written) == [
        os.path.join("videos", "clip000.wav"), os.path.join("videos", "clip001.wav")]


def test_missing_checkpoint_is_one_error_line(tmp_path, synthetic_data, capsys):
    out = tmp_path / "x.wav"
    code, _, stderr = _cli(capsys, "--checkpoint", str(tmp_path / "nope"), "--video",
                           os.path.join(synthetic_data, "preprocessed", "clip009"), "--out", str(out))
    assert code == 2
    assert "does not exist" in error_line(stderr)
    assert not out.exists()


def test_checkpoint_that_does_not_match_its_hparams_is_one_error_line(untrained_run, synthetic_data, tmp_path,
                                                                     capsys):
    bad = tmp_path / "bad_run"
    os.makedirs(str(bad / "checkpoints"))
    for name in os.listdir(os.path.join(untrained_run, "checkpoints")):
        with open(os.path.join(untrained_run, "checkpoints", name), "rb") as src:
            (bad / "checkpoints" / name).write_bytes(src.read())
    with open(str(bad / "checkpoints" / "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "model.ckpt-1"\n')
    hparams.resolve("synthetic", overrides="encoder_lstm_units=32").save(str(bad / "hparams.json"))
    out = tmp_path / "x.wav"
    code, _, stderr = _cli(capsys, "--checkpoint", str(bad), "--video",
                           os.path.join(synthetic_data, "preprocessed", "clip009"), "--out", str(out))
    assert code == 2
    assert "does not match" in error_line(stderr)
    assert not out.exists()


def test_video_without_a_face_is_one_error_line(untrained_run, synthetic_hp, tmp_path, capsys):
    from common.prep import video
    frames = np.full((20, 96, 96, 3), 128, np.uint8)
    path = str(tmp_path / "noface.mp4")
    video.write_video(frames, np.zeros(int(16000 * 20 / 30.0), np.float32), 30, path)
    out = tmp_path / "x.wav"
    code, _, stderr = _cli(capsys, "--checkpoint", untrained_run, "--video", path, "--out", str(out))
    assert code == 2
    assert "no face" in error_line(stderr)
    assert not out.exists()
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".tmp")]


@pytest.mark.parametrize("content", [b"", b"not a video at all"])
def test_video_without_frames_is_one_error_line(untrained_run, tmp_path, content, capsys):
    path = tmp_path / "empty.mp4"
    path.write_bytes(content)
    out = tmp_path / "x.wav"
    code, _, stderr = _cli(capsys, "--checkpoint", untrained_run, "--video", str(path), "--out", str(out))
    assert code == 2
    error_line(stderr)
    assert not out.exists()


def test_unwritable_output_is_one_error_line(untrained_run, synthetic_data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "speech.wav"
    code, _, stderr = _cli(capsys, "--checkpoint", untrained_run, "--video",
                           os.path.join(synthetic_data, "preprocessed", "clip009"), "--out", str(out))
    assert code == 2
    assert "cannot write" in error_line(stderr)
    assert blocker.read_text() == "x"


# Measured with the oracle on the synthetic test clips (3 windows each): correlation 1.0, max |error| 0.0.
ORACLE_MIN_CORRELATION = 0.999
ORACLE_MAX_ABS_ERROR = 1e-4


def _matches_true_mel(mel, spec):
    """(correlation, max |error|) of a stitched mel against mels.npz; both must pass the oracle bounds."""
    length = min(len(mel), spec.shape[1])
    predicted, true = mel[:length], spec[:, :length].T
    correlation = float(np.corrcoef(predicted.ravel(), true.ravel())[0, 1])
    error = float(np.abs(predicted - true).max())
    return correlation >= ORACLE_MIN_CORRELATION and error <= ORACLE_MAX_ABS_ERROR, (correlation, error)


def test_oracle_windows_stitch_back_to_the_clips_mels(synthetic_data, synthetic_hp):
    from tests.oracle import OraclePredictor
    oracle = OraclePredictor(synthetic_data, synthetic_hp)
    synth = synthesize.Synthesizer("oracle", predictor=oracle)
    for clip in dataset.ClipIndex(synthetic_data, "test", synthetic_hp).clips:
        windows, starts = dataset.windows_for_clip(clip, synthetic_hp)
        assert len(starts) >= 3, "the check needs a video of several windows"
        mel = synth.predict_mel(clip, progress=False)
        spec = dataset.load_mels(clip, synthetic_hp)
        assert len(mel) == timing.mel_frames(clip.num_frames, synthetic_hp)
        ok, figures = _matches_true_mel(mel, spec)
        assert ok, (clip.id, figures)
        # The bounds have teeth: the same windows with any two swapped do not pass them.
        true_windows = oracle.predict(windows)
        for i in range(len(starts)):
            for j in range(i + 1, len(starts)):
                swapped = true_windows.copy()
                swapped[[i, j]] = swapped[[j, i]]
                total = len(mel)
                assert not _matches_true_mel(
                    windowing.stitch(swapped, starts, total, synthetic_hp.mel_overlap), spec)[0], (i, j)


def test_oracle_synthesis_of_a_clip_folder_writes_the_true_mels_speech(synthetic_data, synthetic_hp, tmp_path):
    from tests.oracle import OraclePredictor
    clip = dataset.ClipIndex(synthetic_data, "test", synthetic_hp).clips[0]
    with synthesize.Synthesizer("oracle", predictor=OraclePredictor(synthetic_data, synthetic_hp)) as synth:
        result = synth.synthesize_path(clip.path, str(tmp_path))
    spec = dataset.load_mels(clip, synthetic_hp)
    expected = synthesize.vocode(spec.T, synthetic_hp, len(result.target_wav))
    np.testing.assert_allclose(result.wav, expected, atol=1e-4)


def test_concat_keeps_full_windows_and_the_wav_follows_the_shorter_mel(synthetic_data, synthetic_hp):
    from tests.oracle import OraclePredictor
    hp = synthetic_hp.replace(stitch="concat")
    clip = dataset.ClipIndex(synthetic_data, "test", hp).clips[0]
    # 2 s at 30 fps: full windows of T=30 every 25 frames start at 0 and 25 (50 + 30 > 60).
    assert clip.num_frames == 60 and windowing.window_starts(clip.num_frames, hp) == [0, 25]
    with synthesize.Synthesizer("oracle", predictor=OraclePredictor(synthetic_data, hp)) as synth:
        result = synth.synthesize_clip(clip, progress=False)
    assert len(result.mel) == 80 + (80 - 12)
    spec = dataset.load_mels(clip, hp)
    np.testing.assert_allclose(result.mel[:80], spec[:, :80].T, atol=ORACLE_MAX_ABS_ERROR)
    assert len(result.wav) == len(result.mel) * hp.hop_size < timing.num_samples(clip.num_frames, hp)
