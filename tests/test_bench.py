"""`python -m export.tools.bench` paths the README documents, run as a user types them (subprocesses)."""
import json
import os
import subprocess
import sys

from tensorflow.python.util import _pywrap_util_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_bench(*args):
    return subprocess.run([sys.executable, "-m", "export.tools.bench"] + list(args), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)


def test_inference_bench_times_both_paths_of_both_targets(tmp_path):
    out = tmp_path / "bench.json"
    result = run_bench("--inference", "--presets", "synthetic", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    with open(str(out)) as f:
        rows = json.load(f)["rows"]
    assert sorted((r["target"], r["batch_size"], r["path"]) for r in rows) == sorted(
        (target, batch, path) for target in ("gpu", "npu") for batch in (1, 8) for path in ("checkpoint", "frozen"))
    assert all(r["windows_per_second"] > 0 for r in rows)
    assert "windows/s" in result.stdout
    assert_names_the_kernels(result.stdout, str(out))


def assert_names_the_kernels(stdout, out):
    """The bench says which kernels ran: TensorFlow's own answer in a process with this environment."""
    expected = "oneDNN" if _pywrap_util_port.IsMklEnabled() else "Eigen"
    assert "TensorFlow CPU kernels: %s on " % expected in stdout
    with open(out) as f:
        assert json.load(f)["kernels"]["kernels"] == expected
