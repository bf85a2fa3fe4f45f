"""`invoke train --local` runs either tree on this host (no container), as a user would type it."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def invoke_train(target, data, run_dir, *flags):
    invoke = os.path.join(os.path.dirname(sys.executable), "invoke")
    argv = [invoke, "train", "--target", target, "--local", "--data", data, "--run-dir", str(run_dir)] + list(flags)
    result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "-m %s_training.train" % target in result.stderr
    return result


def summary_of(run_dir):
    with open(str(run_dir / "run_summary.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("target, extra", [("npu", []), ("npu", ["--emulate"])])
def test_invoke_train_local_trains_two_steps(synthetic_data, tmp_path, target, extra):
    run_dir = tmp_path / "run"
    result = invoke_train(target, synthetic_data, run_dir, "--steps", "2", "--hparams", "tacotron_batch_size=2", *extra)
    reason = "LIP2WAV_EMULATE=1" if extra else "npu_bridge not importable"
    assert "%s: emulating the NPU graph on the CPU" % reason in result.stderr
    summary = summary_of(run_dir)
    assert summary["target"] == target and summary["last_step"] == 2 and summary["batch_size"] == 2
    assert (run_dir / "checkpoints" / "model.ckpt-2.index").is_file()


def test_invoke_train_resumes_a_run_started_with_other_hyperparameters(synthetic_data, tmp_path):
    """The rerun names neither preset nor hparams: the task must not send the trainer's default preset,
    which differs from the run's saved hyperparameters and would be refused on resume."""
    run_dir = tmp_path / "run"
    invoke_train("gpu", synthetic_data, run_dir, "--steps", "2", "--hparams", "tacotron_batch_size=2")
    summary = summary_of(run_dir)
    assert summary["target"] == "gpu" and summary["last_step"] == 2 and summary["batch_size"] == 2
    assert (run_dir / "checkpoints" / "model.ckpt-2.index").is_file()
    invoke_train("gpu", synthetic_data, run_dir, "--steps", "3")
    summary = summary_of(run_dir)
    assert summary["last_step"] == 3 and summary["batch_size"] == 2
    assert [segment["last_step"] for segment in summary["segments"]] == [2, 3]
