"""Evaluation: scoring, the mean-mel baseline, the report files, and bad inputs."""
import csv
import json
import os

import numpy as np
import pytest

from common.data import audio
from common.data import dataset
from export.apps import evaluate
from tests.conftest import error_line, run_entrypoint


def _cli(capsys, *args):
    return run_entrypoint(capsys, evaluate.main, *args)


def test_identical_audio_scores_top_marks_and_lengths_are_equalised(synthetic_data):
    wav = audio.load_wav(os.path.join(synthetic_data, "preprocessed", "clip000", "audio.wav"), 16000)
    scores = evaluate.score(wav, np.concatenate([wav, np.zeros(800, np.float32)]))
    assert scores["stoi"] > 0.99 and scores["estoi"] > 0.99 and scores["pesq"] > 4.0
    noise = np.random.RandomState(0).randn(len(wav)).astype(np.float32) * 0.1
    assert evaluate.score(wav, noise)["stoi"] < 0.3


def test_scores_are_the_libraries_own_with_reference_and_degraded_in_their_places():
    """pesq and pystoi called directly on a clean sound and a band-limited noisy copy of it. Both measures are
    asymmetric here (measured, then swapped: PESQ 1.25 vs 1.17, STOI 0.79 vs 0.56, ESTOI 0.48 vs 0.22) and STOI
    resamples from the rate it is told, so swapped arguments or a wrong rate cannot match."""
    from pesq import pesq
    from pystoi import stoi
    from scipy import signal
    from tests.test_audio import vowel_sequence
    rate = evaluate.SCORING_RATE
    reference = vowel_sequence(rate).astype(np.float64)
    degraded = signal.lfilter(*signal.butter(4, 1000.0 / (rate / 2.0)), reference)
    degraded = degraded + 0.05 * np.random.RandomState(3).randn(len(reference))
    expected = {"pesq": pesq(rate, reference, degraded, "nb"), "stoi": stoi(reference, degraded, rate, extended=False),
                "estoi": stoi(reference, degraded, rate, extended=True)}
    swapped = {"pesq": pesq(rate, degraded, reference, "nb"), "stoi": stoi(degraded, reference, rate, extended=False),
               "estoi": stoi(degraded, reference, rate, extended=True)}
    scores = evaluate.score(reference.astype(np.float32), degraded.astype(np.float32), rate)
    for metric in evaluate.METRICS:
        assert abs(expected[metric] - swapped[metric]) > 0.02, (metric, expected, swapped)
        assert scores[metric] == pytest.approx(expected[metric], abs=2e-3), (metric, scores, expected)
    assert evaluate.score(reference, degraded) == pytest.approx(scores, abs=1e-6)  # default: the scoring rate


def test_baseline_is_the_per_band_mean_of_every_training_frame(synthetic_data, synthetic_hp):
    index = dataset.ClipIndex(synthetic_data, "train", synthetic_hp)
    frames = np.concatenate([dataset.load_mels(c, synthetic_hp) for c in index.clips], axis=1)
    np.testing.assert_allclose(evaluate.mean_mel(synthetic_data, synthetic_hp), frames.mean(axis=1), atol=1e-5)


def test_evaluate_writes_csv_json_and_prints_the_reference_rows(untrained_run, synthetic_data, tmp_path, capsys):
    out = str(tmp_path / "eval")
    code, stdout, stderr = _cli(capsys, "--checkpoint", untrained_run, "--data", synthetic_data, "--split", "test",
                                "--out", out)
    assert code == 0, stderr
    with open(os.path.join(out, "scores.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["clip"] for r in rows] == ["clip008", "clip009"]
    assert set(rows[0]) >= {"model_pesq", "model_stoi", "model_estoi", "baseline_pesq", "baseline_stoi",
                            "baseline_estoi"}
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["clips"] == 2 and set(summary["model"]) == {"pesq", "stoi", "estoi"}
    assert summary["reference"]["paper (chess)"] == {"pesq": 1.400, "stoi": 0.418, "estoi": 0.290}
    for name in ("mean-mel baseline", "paper (chess)", "public checkpoint 324k (chess)", "NPU port 360k (chess)",
                 "Prajwal et al.", "CVPR 2020", "github.com/Ascend-Huawei/Lip2Wav"):
        assert name in stdout
    assert summary["reference_source"] in stdout and "/work/" not in json.dumps(summary["reference_source"])
    assert sorted(os.listdir(os.path.join(out, "wavs"))) == [
        "clip008.baseline.wav", "clip008.wav", "clip009.baseline.wav", "clip009.wav"]


def test_missing_checkpoint_is_one_error_line(synthetic_data, tmp_path, capsys):
    code, _, stderr = _cli(capsys, "--checkpoint", str(tmp_path / "none"), "--data", synthetic_data,
                           "--out", str(tmp_path / "eval"))
    assert code == 2
    assert "does not exist" in error_line(stderr)
    assert not (tmp_path / "eval").exists()


def test_missing_split_is_one_error_line(untrained_run, synthetic_data, tmp_path, capsys):
    code, _, stderr = _cli(capsys, "--checkpoint", untrained_run, "--data", synthetic_data, "--split", "nosuch",
                           "--out", str(tmp_path / "eval"))
    assert code == 2
    assert "nosuch.txt" in error_line(stderr)


def test_unwritable_output_is_one_error_line(untrained_run, synthetic_data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = _cli(capsys, "--checkpoint", untrained_run, "--data", synthetic_data,
                           "--out", str(blocker / "eval"))
    assert code == 2
    assert "cannot write" in error_line(stderr)


def test_vocoder_ceiling_is_scored_and_beats_an_untrained_model(untrained_run, synthetic_data, tmp_path, capsys):
    """The true mel through Griffin-Lim is the most any model can reach here; an untrained one is far below."""
    out = str(tmp_path / "eval")
    code, stdout, stderr = _cli(capsys, "--checkpoint", untrained_run, "--data", synthetic_data, "--out", out,
                                "--ceiling", "--no-wavs")
    assert code == 0, stderr
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert summary["ceiling"]["stoi"] > summary["model"]["stoi"] + 0.2
    assert summary["pesq_failed"]["ceiling"] == 0 and "through the vocoder" in stdout


def _scores_of(system_wavs, hp):
    """Per-metric means over clips of score(true wav, system wav), computed here without evaluate's loop."""
    rows = [evaluate.score(true_wav, wav, hp.sample_rate) for true_wav, wav in system_wavs]
    return {m: float(np.mean([r[m] for r in rows])) for m in evaluate.METRICS}


def _saved_at_the_level_of(path, true_wav):
    """The saved speech of the true mels (the oracle's) is the clip's audio level within 3 dB, nothing clipped
    (measured: 0.5-1 dB below; Griffin-Lim alone is 5-7 dB above with peaks of 2-3)."""
    import soundfile
    saved = soundfile.read(path, dtype="float64")[0]
    rms_db = [10 * np.log10(np.mean(np.square(np.asarray(w, np.float64)))) for w in (saved, true_wav)]
    assert abs(rms_db[0] - rms_db[1]) < 3.0, (path, rms_db)
    assert np.sum(np.abs(saved) >= 32767 / 32768.0) <= 1, path


def test_oracle_model_row_is_the_vocoder_ceiling_and_beats_the_baseline(synthetic_data, synthetic_hp, tmp_path):
    from export.apps import synthesize
    from tests.oracle import OraclePredictor
    hp = synthetic_hp
    summary = evaluate.evaluate("oracle", synthetic_data, "test", str(tmp_path / "eval"),
                                predictor=OraclePredictor(synthetic_data, hp))
    ceiling, baseline = [], []
    mean = evaluate.mean_mel(synthetic_data, hp)
    for clip in dataset.ClipIndex(synthetic_data, "test", hp).clips:
        _, true_wav = synthesize.ground_truth(clip, hp)
        _saved_at_the_level_of(os.path.join(tmp_path, "eval", "wavs", clip.id + ".wav"), true_wav)
        spec = dataset.load_mels(clip, hp)
        ceiling.append((true_wav, synthesize.vocode(spec.T, hp, len(true_wav))))
        frames = audio.num_frames(len(true_wav), hp)
        baseline.append((true_wav, synthesize.vocode(np.tile(mean, (frames, 1)), hp, len(true_wav))))
    ceiling, baseline = _scores_of(ceiling, hp), _scores_of(baseline, hp)
    # Measured: the oracle's row equals the ceiling to 1e-6 (PESQ 3.530, STOI 0.908, ESTOI 0.775) and the
    # baseline row its own recomputation (PESQ 1.929, STOI 0.303, ESTOI 0.030).
    for metric, tolerance in (("pesq", 0.05), ("stoi", 0.01), ("estoi", 0.01)):
        assert summary["model"][metric] == pytest.approx(ceiling[metric], abs=tolerance), (metric, summary)
        assert summary["baseline"][metric] == pytest.approx(baseline[metric], abs=tolerance), (metric, summary)
    assert summary["model"]["stoi"] > summary["baseline"]["stoi"] + 0.3
    assert summary["model"]["pesq"] > summary["baseline"]["pesq"] + 0.5
    with open(summary["csv"]) as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        assert float(row["model_stoi"]) > float(row["baseline_stoi"]) + 0.3, row
