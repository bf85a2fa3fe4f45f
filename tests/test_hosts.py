"""Several hosts for real: two hosts on this machine (tests/hosts.py: network namespaces, sshd, one file system),
the GPU tree started by the README's `invoke train --hosts` (horovodrun over ssh, Gloo). A host lost mid-run and
the checks before a start: tests/test_hosts_faults.py. Needs root and Horovod (as in .ci/run)."""
import os
import subprocess
import time

import pytest

from common.training import rundir
from tests import hosts as hosts_lib

pytest.importorskip("horovod.tensorflow", reason="Horovod is not installed: .ci/run builds and installs it")
if hosts_lib.unavailable():
    pytest.skip(hosts_lib.unavailable(), allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHIEF_FILES = ["checkpoints", "distribution.json", "hparams.json", "plots", "run_summary.json", "train_log.jsonl",
               "train_log.rank1.jsonl"]


def _losses(run):
    return [(row["step"], row["loss"]) for name in ("train_log.jsonl", "train_log.rank1.jsonl")
            for row in _log(run, name)]


def _checkpoints_whole(run):
    from common.tf_compat import tf

    state = tf.train.get_checkpoint_state(os.path.join(str(run), "checkpoints"))
    for path in state.all_model_checkpoint_paths:
        tf.train.load_checkpoint(path).get_variable_to_shape_map()
    return int(state.model_checkpoint_path.rsplit("-", 1)[1])


def test_gpu_two_hosts_train_like_one_host_with_two_ranks(two_hosts, synthetic_data, tmp_path):
    """The README's launch on h1 (rank 0) and h2 (rank 1): same losses as 1 host x 2 ranks, chief-only files."""
    run, reference = tmp_path / "run", tmp_path / "reference"
    flags = ("--steps", "2", "--checkpoint-every", "2")
    began = time.monotonic()
    result = two_hosts.run(0, hosts_lib.train_command("gpu", synthetic_data, run, "--hosts", "h1:1,h2:1", *flags), cwd=ROOT)
    print("2 hosts x 1 rank, 2 steps: %.0f s" % (time.monotonic() - began))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--gloo --network-interface %s" % hosts_lib.IFACE in result.stderr
    subprocess.run(hosts_lib.train_command("gpu", synthetic_data, reference, "--devices", "0,1", *flags), cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = [name for name in os.listdir(str(run)) if name.startswith("events.")]
    assert sorted(os.listdir(str(run))) == sorted(CHIEF_FILES + events)
    assert len(events) == 1 and events[0].endswith("." + hosts_lib.HOSTNAMES[0]), "TensorBoard names the writer's host"
    assert _losses(run) == pytest.approx(_losses(reference), rel=1e-6)
    assert [step for step, _ in _losses(run)] == [2, 2], "each rank logs the last step (--log-every)"
    assert _log(run)[0]["loss"] != _log(run, "train_log.rank1.jsonl")[0]["loss"], "each rank reads its own shard"


def _log(run, name=rundir.TRAIN_LOG):
    return rundir.read_jsonl(os.path.join(str(run), name))
