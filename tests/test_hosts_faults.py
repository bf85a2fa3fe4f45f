"""Faults across two hosts (tests/hosts.py): a host lost mid-run, and the checks before a multi-host start.

A lost host (its ranks killed with kill -9, or its link taken down) ends the whole job within a minute with one
line naming the host and its rank; the run directory holds nothing half-written; the next start resumes from the
last checkpoint. A host that refuses ssh, or lacks the repository or the Python at this host's paths, is one line
and exit 2 before anything is written. Needs root and Horovod (as in .ci/run).
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from common.training import rundir
from tests import hosts as hosts_lib

pytest.importorskip("horovod.tensorflow", reason="Horovod is not installed: .ci/run builds and installs it")
if hosts_lib.unavailable():
    pytest.skip(hosts_lib.unavailable(), allow_module_level=True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOST_BOUND_SECONDS = 60
HOSTS = ("--hosts", "h1:1,h2:1")
CHECKPOINT_EVERY = 2  # at most CHECKPOINT_EVERY - 1 finished steps (and the one in flight) are lost


def _rank_pids(two_hosts, host):
    found = []
    for pid in two_hosts.pids(host):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if b"gpu_training.train" in argv and os.path.basename(argv[0].decode()).startswith("python"):
            found.append(pid)
    return found


def _wait_for_log(job, run, lines, deadline_seconds=300):
    deadline = time.monotonic() + deadline_seconds
    log = os.path.join(str(run), "train_log.jsonl")
    while not (os.path.isfile(log) and len(_log(run)) >= lines):
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before logging"
        time.sleep(0.2)


def _one_line(stderr, start):
    lines = [line for line in stderr.splitlines() if line.startswith(start)]
    assert len(lines) == 1, stderr[-4000:]
    return lines[0]


def _nothing_half_written(run):
    """No temp file or folder anywhere; the `checkpoint` state file names whole checkpoints only; every log line is
    JSON. Returns the step of the state file's checkpoint."""
    from common.tf_compat import tf

    for folder, dirs, files in os.walk(str(run)):
        temps = [name for name in dirs + files if name.startswith(".tmp-") or "_temp" in name]
        assert not temps, "left half-written in %s: %s" % (folder, temps)
    state = tf.train.get_checkpoint_state(os.path.join(str(run), "checkpoints"))
    for path in state.all_model_checkpoint_paths:
        tf.train.load_checkpoint(path).get_variable_to_shape_map()
    for name in ("train_log.jsonl", "train_log.rank1.jsonl"):
        _log(run, name)
    return int(state.model_checkpoint_path.rsplit("-", 1)[1])


@pytest.mark.parametrize("fault", ["kill", "link"])
def test_gpu_lost_host_ends_the_job_with_one_line_and_the_next_start_resumes(two_hosts, synthetic_data, tmp_path,
                                                                             fault):
    run = tmp_path / "run"
    train = hosts_lib.train_command("gpu", synthetic_data, run, *HOSTS, "--checkpoint-every", str(CHECKPOINT_EVERY))
    began = time.monotonic()
    job = two_hosts.popen(0, train + ["--steps", "1000"], cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, universal_newlines=True)
    try:
        _wait_for_log(job, run, 1)  # the first log line (step 10): checkpoints exist
        if fault == "kill":
            for pid in _rank_pids(two_hosts, 1):
                os.kill(pid, signal.SIGKILL)
        else:
            two_hosts.link_down(1)
        lost = time.monotonic()
        _, stderr = job.communicate(timeout=LOST_BOUND_SECONDS + 60)
        seconds = time.monotonic() - lost
    finally:
        if job.poll() is None:
            job.kill()
    line = _one_line(stderr, "lost host ")
    step = _nothing_half_written(run)
    print("\n%s: %s | job ended %.1f s after the fault | resumes from step %d" % (fault, line, seconds, step))
    assert job.returncode != 0 and seconds < LOST_BOUND_SECONDS
    assert line.startswith("lost host h2 (rank 1): "), line
    assert ("no longer reachable by ssh" if fault == "link" else "rank 1 exited first") in line
    if fault == "link":  # h2's rank, cut off, gives up on its own (the Gloo timeout); then the link comes back
        while _rank_pids(two_hosts, 1):
            assert time.monotonic() - lost < LOST_BOUND_SECONDS + 30, "h2's rank outlived its lost link"
            time.sleep(0.5)
        print("link: h2's own rank exited %.1f s after the fault" % (time.monotonic() - lost))
        two_hosts.ip(two_hosts.names[1], "link", "set", hosts_lib.IFACE, "up")
        assert _nothing_half_written(run) == step
    assert step >= 10
    result = two_hosts.run(0, train + ["--steps", str(step + 2)], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from %s" % os.path.join(str(run), "checkpoints", "model.ckpt-%d" % step) in result.stderr, \
        result.stderr[-3000:]
    expected = sorted(set(range(10, step + 3, 10)) | {step + 2})  # logged every 10 steps and at the last
    assert [row["step"] for row in _log(run)] == expected, "the log is cut back to the checkpoint, then continues"
    assert [row["step"] for row in _log(run, "train_log.rank1.jsonl")] == expected
    _nothing_half_written(run)
    print("%s: whole test %.0f s" % (fault, time.monotonic() - began))


def _refused_before_start(two_hosts, argv, tmp_path, cwd=ROOT):
    run = tmp_path / "never"
    began = time.monotonic()
    result = two_hosts.run(0, argv(run), cwd=cwd)
    print("\nrefused in %.1f s: %s" % (time.monotonic() - began, result.stderr.strip()))
    assert result.returncode == 2, result.stderr[-3000:]
    assert not run.exists(), "nothing is written before the checks pass"
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr.strip()


def test_gpu_host_refusing_ssh_is_one_line_before_anything_starts(two_hosts, synthetic_data, tmp_path):
    with two_hosts.sshd_stopped(1):
        line = _refused_before_start(two_hosts, lambda run: hosts_lib.train_command("gpu", synthetic_data, run, *HOSTS), tmp_path)
    assert line.startswith("host h2 is not reachable by ssh ("), line
    assert "Connection refused" in line and "`ssh h2 true` must work from this host without a prompt" in line


def test_gpu_host_lacking_the_repository_is_one_line_before_anything_starts(two_hosts, synthetic_data, tmp_path):
    copy = os.path.join(two_hosts.only_on_h1, "repo")  # this path is empty on h2
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "__pycache__", ".venv", "runs"))
    try:
        line = _refused_before_start(two_hosts, lambda run: hosts_lib.train_command("gpu", synthetic_data, run, *HOSTS), tmp_path,
                                     cwd=copy)
    finally:
        shutil.rmtree(copy)
    assert line == "host h2 has no %s: put the repository at the same path on every host" % copy


def test_gpu_host_lacking_the_python_is_one_line_before_anything_starts(two_hosts, synthetic_data, tmp_path):
    venv = os.path.join(two_hosts.only_on_h1, "venv")  # a virtualenv only h1 has: this one's, linked
    real = os.path.dirname(os.path.dirname(sys.executable))
    os.makedirs(os.path.join(venv, "bin"))
    shutil.copy(os.path.join(real, "pyvenv.cfg"), venv)
    os.symlink(os.path.realpath(sys.executable), os.path.join(venv, "bin", "python"))
    os.symlink(os.path.join(real, "lib"), os.path.join(venv, "lib"))
    python = os.path.join(venv, "bin", "python")
    try:
        line = _refused_before_start(
            two_hosts, lambda run: [python, "-m", "invoke"] + hosts_lib.train_command("gpu", synthetic_data, run, *HOSTS)[1:], tmp_path)
    finally:
        shutil.rmtree(venv)
    assert line == "host h2 has no %s: install the same virtualenv at the same path on every host" % python


def _log(run, name=rundir.TRAIN_LOG):
    return rundir.read_jsonl(os.path.join(str(run), name))
