"""The NPU graph lint on both targets' real graphs: the NPU target is clean, the GPU target is reported."""
import os
import subprocess
import sys

import pytest

from common.config import hparams
from export.tools import lint_graphs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def hp():
    return hparams.resolve("synthetic")


def test_npu_training_and_inference_graphs_lint_clean(hp):
    assert lint_graphs.lint_model_graphs(hp, "npu") == []


def test_gpu_graphs_are_reported(capsys):
    assert lint_graphs.main(["--preset", "synthetic", "--target", "gpu"]) == 1
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    flagged = {(row[0], row[2]) for row in rows}
    assert ("training", "FIFOQueueV2") in flagged and ("training", "QueueDequeueV2") in flagged
    for graph in ("training", "inference"):
        assert any(row[0] == graph and "dynamic_size" in row[3] for row in rows), graph
    assert any("static shapes" in row[3] for row in rows)


@pytest.mark.workstation  # invoke
def test_invoke_lint_npu_passes_for_the_npu_target():
    invoke = os.path.join(os.path.dirname(sys.executable), "invoke")
    result = subprocess.run([invoke, "lint-npu", "--preset", "synthetic", "--target", "npu"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ""
    assert "target npu, preset synthetic: 0 finding(s)" in result.stderr


def test_bad_preset_is_one_error_line(capsys):
    assert lint_graphs.main(["--preset", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown preset 'nope'")
