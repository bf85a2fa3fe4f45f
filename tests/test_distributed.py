"""Data-parallel training for real: two CPU processes per target (GPU: horovodrun; NPU emulation: our launcher with
Horovod over Gloo), on the synthetic speaker, a few steps each. Skipped where Horovod is not installed (.ci/run
installs it)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.config import hparams
from common.tf_compat import tf
from containers import launch

pytest.importorskip("horovod.tensorflow", reason="Horovod is not installed: .ci/run builds and installs it "
                                                 "(HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
# Tolerance of the one-step check: float32 all-reduce sums in another order than numpy's mean, and Adam's
# first update is lr * g / (|g| + eps) ~ 2e-3 per weight; a rank that skipped averaging is off by up to 4e-3.
STATE_ATOL = 2e-6
DEAD_RANK_BOUND_SECONDS = 60


def _npu_ranks(run_dir, command, devices=(0, 1)):
    """Start one emulated NPU rank per device through the launcher (rank table, process envs, Gloo)."""
    os.makedirs(run_dir, exist_ok=True)
    table = launch.write_rank_table(run_dir, launch.rank_table(list(devices), "127.0.0.1",
                                                               dict((d, "127.0.0.1") for d in devices)))
    envs = [dict(env, LIP2WAV_EMULATE="1") for env in launch.process_envs("npu", list(devices), table)]
    return launch.run_ranks(command, envs, emulate=True, cwd=ROOT)


def _gpu_ranks(command, **popen):
    """Run ``command`` (horovodrun's, as built by the launcher) on the CPU."""
    env = dict(os.environ, LIP2WAV_EMULATE="1", PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    return subprocess.Popen(command, cwd=ROOT, env=env, **popen)


def _worker(target, data, out):
    return [sys.executable, "-m", "tests.dp_worker", "--target", target, "--data", data, "--out", str(out),
            "--steps", "3"]


def _train_args(data, run_dir, *flags):
    return ["--data", data, "--run-dir", str(run_dir), "--workers", "1"] + list(flags)


def _train(target, data, run_dir, *flags):
    return launch.train_command(target, [0], _train_args(data, run_dir, *flags), python=sys.executable)


def _load_rank(out, rank):
    arrays = np.load(os.path.join(str(out), "rank%d.npz" % rank))
    with open(os.path.join(str(out), "rank%d.json" % rank)) as f:
        meta = json.load(f)
    count = len(meta["variables"])
    state = dict((key, [arrays["%s/%d" % (key, i)] for i in range(count)])
                 for key in ("before_broadcast", "initial", "local_gradients", "reduced_gradients", "after_one",
                             "final"))
    state.update(meta, learning_rate=float(arrays["learning_rate"]), grad_norm=float(arrays["grad_norm"]))
    return state


def _adam_step(hp, weights, gradients, learning_rate):
    """One update of the training graph's optimizer (global-norm clip, then Adam) from fresh slots."""
    with tf.Graph().as_default():
        variables = [tf.Variable(w) for w in weights]
        clipped, _ = tf.clip_by_global_norm([tf.constant(g) for g in gradients], hp.tacotron_clip_norm)
        optimizer = tf.train.AdamOptimizer(learning_rate, hp.tacotron_adam_beta1, hp.tacotron_adam_beta2,
                                           hp.tacotron_adam_epsilon)
        update = optimizer.apply_gradients(zip(clipped, variables))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(update)
            return sess.run(variables)


def _max_difference(a, b):
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def _check_data_parallel_step(out):
    hp = hparams.resolve("synthetic")
    ranks = [_load_rank(out, r) for r in (0, 1)]
    assert [r["size"] for r in ranks] == [2, 2]
    assert _max_difference(ranks[0]["before_broadcast"], ranks[1]["before_broadcast"]) > 1e-3, \
        "the worker seeds ranks differently, so only the broadcast can make them equal"
    assert _max_difference(ranks[0]["initial"], ranks[1]["initial"]) == 0.0
    mean = [(a + b) / 2.0 for a, b in zip(ranks[0]["local_gradients"], ranks[1]["local_gradients"])]
    assert _max_difference(ranks[0]["local_gradients"], ranks[1]["local_gradients"]) > 1e-4
    _check_reduced_gradients_are_the_mean(hp, ranks, mean)
    expected = _adam_step(hp, ranks[0]["initial"], mean, ranks[0]["learning_rate"])
    for rank in ranks:
        assert _max_difference(rank["after_one"], expected) < STATE_ATOL
    assert _max_difference(ranks[0]["final"], ranks[1]["final"]) < STATE_ATOL
    assert _max_difference(ranks[0]["final"], ranks[0]["after_one"]) > 1e-4
    windows = [set(tuple(w) for w in r["windows"]) for r in ranks]
    assert windows[0] and windows[1] and not windows[0] & windows[1]
    assert all(start % 2 == rank for rank in (0, 1) for _, start in windows[rank])


def _check_reduced_gradients_are_the_mean(hp, ranks, mean):
    """What clipping receives after the all-reduce is the MEAN of the ranks' gradients, not their sum. The
    Adam step above cannot tell: clipping to tacotron_clip_norm and Adam's first update both undo a factor of 2."""
    norm = float(np.sqrt(sum(np.sum(np.square(g.astype(np.float64))) for g in mean)))
    assert norm > 2 * hp.tacotron_clip_norm, "clipping must be active for this check to mean something"
    scale = max(float(np.max(np.abs(g))) for g in mean)
    for rank in ranks:
        assert [g.shape for g in rank["reduced_gradients"]] == [g.shape for g in mean]
        assert _max_difference(rank["reduced_gradients"], mean) < 1e-5 * scale
        assert rank["grad_norm"] == pytest.approx(norm, rel=1e-4)


def test_npu_ranks_average_gradients_share_weights_and_read_disjoint_windows(synthetic_data, tmp_path):
    assert _npu_ranks(str(tmp_path / "run"), _worker("npu", synthetic_data, tmp_path)) == 0
    _check_data_parallel_step(tmp_path)


def test_gpu_ranks_average_gradients_share_weights_and_read_disjoint_windows(synthetic_data, tmp_path):
    horovodrun = [os.path.join(BIN, "horovodrun"), "-np", "2", "-H", "localhost:2"]
    assert _gpu_ranks(horovodrun + _worker("gpu", synthetic_data, tmp_path)).wait(timeout=600) == 0
    _check_data_parallel_step(tmp_path)


def _steps(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f if line.strip()]


def test_two_rank_run_writes_only_chief_files_resumes_and_refuses_another_world_size(synthetic_data, tmp_path,
                                                                                      capfd):
    run = tmp_path / "run"
    flags = ("--log-every", "1", "--checkpoint-every", "2")
    assert _npu_ranks(str(run), _train("npu", synthetic_data, run, "--steps", "2", *flags)) == 0
    assert sorted(os.listdir(str(run))) == sorted([
        "checkpoints", "distribution.json", "hparams.json", "plots", "rank_table.json", "run_summary.json",
        "train_log.jsonl", "train_log.rank1.jsonl", [n for n in os.listdir(str(run)) if n.startswith("events.")][0]])
    assert _steps(str(run / "train_log.jsonl")) == [1, 2] and _steps(str(run / "train_log.rank1.jsonl")) == [1, 2]
    with open(str(run / "run_summary.json")) as f:
        summary = json.load(f)
    assert (summary["world_size"], summary["per_device_batch_size"], summary["global_batch_size"]) == (2, 8, 16)
    assert summary["samples_per_sec"] == pytest.approx(2 * summary["samples_per_sec_per_device"])

    assert _npu_ranks(str(run), _train("npu", synthetic_data, run, "--steps", "3", *flags)) == 0
    assert _steps(str(run / "train_log.jsonl")) == [1, 2, 3]
    assert _steps(str(run / "train_log.rank1.jsonl")) == [1, 2, 3]
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("model.ckpt-3")

    capfd.readouterr()
    single = subprocess.run(_train("npu", synthetic_data, run, "--steps", "4"), cwd=ROOT, stderr=subprocess.PIPE,
                            universal_newlines=True, env=dict(os.environ, LIP2WAV_EMULATE="1"))
    assert single.returncode == 2
    assert "trained by 2 process(es) (global batch 16) and this run has 1" in single.stderr


def _rank_pid(parent_pid, variable, value):
    """pid of the descendant of ``parent_pid`` whose environment has variable=value (a rank's Python process)."""
    import psutil

    for child in psutil.Process(parent_pid).children(recursive=True):
        try:
            if child.environ().get(variable) == value and "python" in os.path.basename(child.exe()):
                return child.pid
        except psutil.Error:
            continue
    return None


def _kill_rank_when_training(job, chief_log, variable):
    deadline = time.monotonic() + 300
    while not (os.path.isfile(chief_log) and os.path.getsize(chief_log)):
        assert job.poll() is None and time.monotonic() < deadline, "the job ended before training"
        time.sleep(0.5)
    pid = _rank_pid(job.pid, variable, "1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    job.wait(timeout=DEAD_RANK_BOUND_SECONDS + 30)
    return time.monotonic() - killed


def _checkpoints_whole(checkpoints):
    state = tf.train.get_checkpoint_state(checkpoints)
    for path in (state.all_model_checkpoint_paths if state else []):
        tf.train.load_checkpoint(path).get_variable_to_shape_map()


def test_killing_an_npu_rank_ends_the_job_with_one_line(synthetic_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    table = launch.write_rank_table(str(run), launch.rank_table([0, 1], "127.0.0.1", {0: "127.0.0.1", 1: "127.0.0.1"}))
    env = dict(os.environ, LIP2WAV_TARGET="npu", LIP2WAV_DEVICES="0,1", LIP2WAV_EMULATE="1", RANK_TABLE_FILE=table)
    with open(str(tmp_path / "stderr.txt"), "w") as log:
        job = subprocess.Popen([sys.executable, "-m", "containers.launch", "train"] +
                               _train_args(synthetic_data, run, "--steps", "1000", "--log-every", "1",
                                           "--checkpoint-every", "1"),
                               cwd=ROOT, env=env, stderr=log)
        seconds = _kill_rank_when_training(job, str(run / "train_log.jsonl"), "RANK_ID")
    stderr = (tmp_path / "stderr.txt").read_text()
    assert job.returncode != 0
    assert seconds < DEAD_RANK_BOUND_SECONDS
    lines = [line for line in stderr.splitlines() if "exited with status" in line]
    assert len(lines) == 1 and lines[0].startswith("rank 1 (pid ") and "status -9 (signal 9)" in lines[0], stderr
    _checkpoints_whole(str(run / "checkpoints"))


def test_killing_a_gpu_rank_ends_the_horovodrun_job(synthetic_data, tmp_path):
    run = tmp_path / "run"
    command = launch.train_command("gpu", [0, 1], _train_args(synthetic_data, run, "--steps", "1000", "--log-every",
                                                              "1", "--checkpoint-every", "1"), python=sys.executable)
    with open(str(tmp_path / "output.txt"), "w") as log:
        job = _gpu_ranks(command, stdout=log, stderr=subprocess.STDOUT)
        seconds = _kill_rank_when_training(job, str(run / "train_log.jsonl"), "HOROVOD_RANK")
    output = (tmp_path / "output.txt").read_text()
    assert job.returncode != 0
    assert seconds < DEAD_RANK_BOUND_SECONDS
    assert "Process 1 exit with status code" in output, output[-3000:]
    _checkpoints_whole(str(run / "checkpoints"))
