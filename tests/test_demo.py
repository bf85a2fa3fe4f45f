"""The demo: every stage on a shrunk speaker (regular suite), and the full demo's headline (slow).

A shrunk demo trains two steps, so the mean-mel baseline wins and the demo must say so and fail;
the full demo (about ten minutes on an idle 2-core machine) must beat the baseline by a margin.
"""
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import error_line, run_invoke

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shrunk_invoke_demo_runs_every_stage_and_fails_when_the_baseline_wins(tmp_path, capsys):
    out = str(tmp_path / "demo")
    code, stdout, stderr = run_invoke(capsys, "demo", "--out", out, "--steps", "2", "--clips", "5", "--seconds", "1.5",
                                      "--speaker", "astronaut")
    with open(os.path.join(out, "demo_summary.json")) as f:
        summary = json.load(f)
    for key in ("wavs", "plots", "scores_csv", "scores_json", "run", "data", "report"):
        assert os.path.exists(summary[key]), key
    assert sorted(os.listdir(summary["wavs"])) == ["clip003.baseline.wav", "clip003.ceiling.wav", "clip003.wav",
                                                   "clip004.baseline.wav", "clip004.ceiling.wav", "clip004.wav"]
    assert set(summary["model"]) == {"pesq", "stoi", "estoi"} and summary["steps"] == 2
    assert sorted(summary["exported"]) == ["gpu", "npu"]
    for path in summary["exported"].values():
        assert os.path.isfile(path)
    assert "mean-mel baseline STOI" in stdout and summary["wavs"] in stdout
    # Two steps from random weights: measured model STOI below the baseline's on both clips.
    assert summary["model"]["stoi"] < summary["baseline"]["stoi"] and not summary["beats_baseline_stoi"]
    assert code == 2
    assert "did not beat the mean-mel baseline" in error_line(stderr)


@pytest.mark.slow
def test_full_demo_beats_the_baseline_by_a_margin(tmp_path):
    out = str(tmp_path / "demo")
    proc = subprocess.run([sys.executable, "-m", "export.apps.demo", "--out", out], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "demo_summary.json")) as f:
        summary = json.load(f)
    # The default speaker is GRID's (measured at 1000 steps: WER 0.33 vs the baseline's 1.00, STOI 0.545 vs 0.438).
    assert summary["speaker"] == "grid"
    assert summary["words"]["model"]["wer"] < summary["words"]["baseline"]["wer"] - 0.3, summary
    assert summary["model"]["stoi"] > summary["baseline"]["stoi"], summary
    assert "model wins" in proc.stdout


def test_unwritable_out_is_one_error_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "export.apps.demo", "--out", str(blocker / "demo"), "--steps", "1"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "writable" in errors[0], proc.stderr
