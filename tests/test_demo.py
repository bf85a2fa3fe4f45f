"""Demo smoke test: every stage of `invoke demo` on a shrunk speaker with a handful of steps.

The full demo (about ten minutes) is not run here; this proves the stages connect and the
summary points at files that exist. Whether the model beats the baseline is the full demo's job.
"""
import json
import os
import subprocess
import sys

from export.apps import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shrunk_demo_runs_every_stage_and_summarises(tmp_path):
    out = str(tmp_path / "demo")
    summary = demo.run_demo(out, steps=2, clips=5, seconds=1.5, checkpoint_every=2, speaker="astronaut")
    for key in ("wavs", "plots", "scores_csv", "scores_json", "run", "data", "report"):
        assert os.path.exists(summary[key]), key
    assert sorted(os.listdir(summary["wavs"])) == ["clip003.baseline.wav", "clip003.ceiling.wav", "clip003.wav",
                                                   "clip004.baseline.wav", "clip004.ceiling.wav", "clip004.wav"]
    assert set(summary["model"]) == {"pesq", "stoi", "estoi"}
    for path in summary["exported"].values():
        assert os.path.isfile(path)
    with open(os.path.join(out, "demo_summary.json")) as f:
        assert json.load(f)["steps"] == 2
    text = demo.format_summary(summary)
    assert "mean-mel baseline STOI" in text and summary["wavs"] in text and summary["report"] in text


def test_unwritable_out_is_one_error_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "export.apps.demo", "--out", str(blocker / "demo"), "--steps", "1"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "writable" in errors[0], proc.stderr
