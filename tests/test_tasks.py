"""Every invoke task users type, parsed by invoke itself and run in-process on tiny inputs.

Covered elsewhere: train (tests/test_tasks_local.py, a subprocess per target), lint-npu
(tests/test_lint_graphs.py, a subprocess), demo (tests/test_demo.py), build-npu/build-gpu
(tests/test_containers.py, needs a Docker engine).
"""
import json
import os

import pytest

from common.data import audio
from tests.conftest import run_invoke


@pytest.mark.parametrize("target, files", [
    ("gpu", ["lip2wav_gpu.json", "lip2wav_gpu.pb", "lip2wav_gpu.pbtxt"]),
    ("npu", ["atc_command.sh", "lip2wav_npu.json", "lip2wav_npu.pb", "lip2wav_npu.pbtxt"]),
])
def test_invoke_export(untrained_run, tmp_path, capsys, target, files):
    out = tmp_path / "export"
    code, _, stderr = run_invoke(capsys, "export", "--checkpoint", untrained_run, "--target", target,
                                 "--out", str(out))
    assert code == 0, stderr
    assert sorted(os.listdir(str(out))) == files


def test_invoke_synthesize(untrained_run, synthetic_data, tmp_path, capsys):
    clip = os.path.join(synthetic_data, "preprocessed", "clip009")
    out = str(tmp_path / "speech.wav")
    code, stdout, stderr = run_invoke(capsys, "synthesize", "--checkpoint", untrained_run, "--video", clip,
                                      "--out", out, "--batch-size", "2", "--plot")
    assert code == 0, stderr
    assert stdout.split() == [out, str(tmp_path / "speech.png")]
    assert len(audio.load_wav(out, 16000, rescaling_max=None)) == 32000


def test_invoke_evaluate(untrained_run, synthetic_data, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, stderr = run_invoke(capsys, "evaluate", "--checkpoint", untrained_run, "--data", synthetic_data,
                                      "--split", "val", "--out", str(out))
    assert code == 0, stderr
    with open(str(out / "summary.json")) as f:
        summary = json.load(f)
    assert summary["split"] == "val" and summary["clips"] == 2
    assert "mean-mel baseline" in stdout


def test_invoke_download_from_a_file_url(tmp_path, capsys):
    from common.prep import video
    from tests.test_download import FPS, pattern_frames, tone
    served = tmp_path / "served"
    served.mkdir()
    video.write_video(pattern_frames(40), tone(40 / float(FPS)), FPS, str(served / "QhTuW5M2t6c.mp4"))
    data = tmp_path / "data"
    code, _, stderr = run_invoke(capsys, "download", "--speaker", "eh", "--split", "val", "--data", str(data),
                                      "--url-template", "file://%s/{id}.mp4" % served)
    assert code == 0, stderr
    assert os.listdir(str(data / "eh" / "intervals" / "QhTuW5M2t6c"))


def test_invoke_preprocess_then_dataset_report(synthetic_hp, tmp_path, capsys):
    from tests import synthetic_raw
    synthetic_raw.make_raw_speaker(str(tmp_path / "raw"), synthetic_hp, num_clips=1, seconds=1.5)
    data = tmp_path / "data"
    code, _, stderr = run_invoke(capsys, "preprocess", "--videos", str(tmp_path / "raw"), "--data", str(data),
                                 "--preset", "synthetic", "--workers", "1", "--split", "test")
    assert code == 0, stderr
    (clip_id,) = (data / "test.txt").read_text().split()
    assert (data / "preprocessed" / clip_id / "mels.npz").is_file()
    code, stdout, stderr = run_invoke(capsys, "dataset-report", "--data", str(data), "--preset", "synthetic")
    assert code == 0, stderr
    test_row = [line.split() for line in stdout.splitlines() if line.startswith("test ")]
    assert test_row and test_row[0][1] == "1", stdout
    assert "last preprocessing run: 1 clips kept, 0 dropped" in stdout


def test_invoke_bench_one_step_per_target(tmp_path, capsys):
    """The training rows only: --world-sizes '' skips the data-parallel runs (a dozen TensorFlow processes
    with Horovod) whose figures this test does not read; tests/test_distributed.py tests that training."""
    out = tmp_path / "bench.json"
    code, stdout, stderr = run_invoke(capsys, "bench", "--presets", "synthetic", "--steps", "1", "--out", str(out),
                                      "--world-sizes", "")
    assert code == 0, stderr
    with open(str(out)) as f:
        results = json.load(f)
    assert [(r["preset"], r["target"], r["timed_steps"]) for r in results["rows"]] == [
        ("synthetic", "gpu", 1), ("synthetic", "npu", 1)]
    assert all(r["sec_per_step"] > 0 for r in results["rows"])
    assert "npu/gpu" in stdout and results["scaling"] == []
