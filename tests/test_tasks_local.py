"""`invoke train --local` runs either tree on this host (no container), as a user would type it."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("target, extra", [("npu", []), ("npu", ["--emulate"]), ("gpu", [])])
def test_invoke_train_local_trains_two_steps(synthetic_data, tmp_path, target, extra):
    run_dir = tmp_path / "run"
    invoke = os.path.join(os.path.dirname(sys.executable), "invoke")
    argv = [invoke, "train", "--target", target, "--local", "--data", synthetic_data, "--run-dir", str(run_dir),
            "--steps", "2", "--hparams", "tacotron_batch_size=2"] + extra
    result = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "-m %s_training.train" % target in result.stderr
    if target == "npu":
        reason = "LIP2WAV_EMULATE=1" if extra else "npu_bridge not importable"
        assert "%s: emulating the NPU graph on the CPU" % reason in result.stderr
    with open(str(run_dir / "run_summary.json")) as f:
        summary = json.load(f)
    assert summary["device_tree"] == target and summary["last_step"] == 2 and summary["batch_size"] == 2
    assert (run_dir / "checkpoints" / "model.ckpt-2.index").is_file()
