"""Several hosts for real: two hosts on this machine (tests/hosts.py: network namespaces, sshd, one file system),
the GPU tree started by the README's `invoke train --hosts` (horovodrun over ssh, Gloo), the NPU tree's
several-server launch in emulation, and a host lost mid-run. Needs root and Horovod (as in .ci/run)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import hosts as hosts_lib

pytest.importorskip("horovod.tensorflow", reason="Horovod is not installed: .ci/run builds and installs it")
if hosts_lib.unavailable():
    pytest.skip(hosts_lib.unavailable(), allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVOKE = os.path.join(os.path.dirname(sys.executable), "invoke")
LOST_BOUND_SECONDS = 60
CHIEF_FILES = ["checkpoints", "distribution.json", "hparams.json", "plots", "run_summary.json", "train_log.jsonl",
               "train_log.rank1.jsonl"]


@pytest.fixture(scope="module")
def two_hosts():
    made = hosts_lib.Hosts()
    try:
        yield made
    finally:
        made.close()


def _gpu_train(data, run, *flags):
    return [INVOKE, "train", "--target", "gpu", "--local", "--data", data, "--run-dir", str(run)] + list(flags)


def _log(run, name="train_log.jsonl"):
    with open(os.path.join(str(run), name)) as handle:
        return [json.loads(line) for line in handle if line.strip()]


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
    result = two_hosts.run(0, _gpu_train(synthetic_data, run, "--hosts", "h1:1,h2:1", *flags), cwd=ROOT)
    print("2 hosts x 1 rank, 2 steps: %.0f s" % (time.monotonic() - began))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--gloo --network-interface %s" % hosts_lib.IFACE in result.stderr
    subprocess.run(_gpu_train(synthetic_data, reference, "--devices", "0,1", *flags), cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = [name for name in os.listdir(str(run)) if name.startswith("events.")]
    assert sorted(os.listdir(str(run))) == sorted(CHIEF_FILES + events)
    assert len(events) == 1 and events[0].endswith("." + hosts_lib.HOSTNAMES[0]), "TensorBoard names the writer's host"
    assert _losses(run) == pytest.approx(_losses(reference), rel=1e-6)
    assert [step for step, _ in _losses(run)] == [2, 2], "each rank logs the last step (--log-every)"
    assert _log(run)[0]["loss"] != _log(run, "train_log.rank1.jsonl")[0]["loss"], "each rank reads its own shard"


def _rank_pids(two_hosts, host, module):
    found = []
    for pid in two_hosts.pids(host):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv and os.path.basename(argv[0].decode()).startswith("python"):
            found.append(pid)
    return found


def _wait_for_log(job, run, lines, deadline_seconds=300):
    deadline = time.monotonic() + deadline_seconds
    log = os.path.join(str(run), "train_log.jsonl")
    while not (os.path.isfile(log) and len(_log(run)) >= lines):
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before logging"
        time.sleep(0.5)


def _lose_host(job, fault):
    fault()
    lost = time.monotonic()
    _, stderr = job.communicate(timeout=LOST_BOUND_SECONDS + 60)
    return time.monotonic() - lost, stderr


def _one_line(stderr, start):
    lines = [line for line in stderr.splitlines() if line.startswith(start)]
    assert len(lines) == 1, stderr[-4000:]
    return lines[0]


@pytest.mark.parametrize("fault", ["kill", "link"])
def test_gpu_lost_host_ends_the_job_with_one_line_and_the_next_start_resumes(two_hosts, synthetic_data, tmp_path,
                                                                             fault):
    run = tmp_path / "run"
    train = _gpu_train(synthetic_data, run, "--hosts", "h1:1,h2:1", "--checkpoint-every", "1")
    job = two_hosts.popen(0, train + ["--steps", "1000"], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, universal_newlines=True)
    try:
        _wait_for_log(job, run, 1)  # the first log line (step 10): checkpoints exist
        if fault == "kill":
            seconds, stderr = _lose_host(job, lambda: [os.kill(pid, signal.SIGKILL)
                                                       for pid in _rank_pids(two_hosts, 1, "gpu_training.train")])
        else:
            seconds, stderr = _lose_host(job, lambda: two_hosts.link_down(1))
    finally:
        if job.poll() is None:
            job.kill()
    print("%s: job ended %.1f s after the fault" % (fault, seconds))
    assert job.returncode != 0 and seconds < LOST_BOUND_SECONDS
    line = _one_line(stderr, "lost host ")
    assert line.startswith("lost host h2 (rank 1): "), line
    assert ("no longer reachable by ssh" if fault == "link" else "rank 1 exited first") in line
    if fault == "link":
        two_hosts.ip(two_hosts.names[1], "link", "set", hosts_lib.IFACE, "up")
    step = _checkpoints_whole(run)
    assert step >= 10
    result = two_hosts.run(0, train + ["--steps", str(step + 1)], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from %s" % os.path.join(str(run), "checkpoints", "model.ckpt-%d" % step) in result.stderr, \
        result.stderr[-3000:]
    expected = sorted(set(range(10, step + 2, 10)) | {step + 1})  # logged every 10 steps and at the last
    assert [row["step"] for row in _log(run)] == expected, "the log is cut back to the checkpoint, then continues"
    assert [row["step"] for row in _log(run, "train_log.rank1.jsonl")] == expected
