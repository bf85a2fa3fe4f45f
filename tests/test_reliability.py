"""Training and export under what clusters do: signals, moved runs, damaged checkpoints, full disks, bad data.

Real files, real signals (subprocess + os.kill) and, where this process may mount, a real small tmpfs
for the full disk. Runs use the synthetic speaker with batch 2 and a handful of steps.
"""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common import atomic
from common.config import hparams
from common.data import crops
from common.data import dataset
from common.tf_compat import tf
from common.training import checkpoints
from common.training import rundir
from export import freeze
from export import graph
from gpu_training import train as gpu_train
from tests.conftest import error_line, run_entrypoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--hparams", "tacotron_batch_size=2", "--workers", "1", "--log-every", "1"]


def train_argv(data, run_dir, steps, checkpoint_every, *extra):
    return (["--data", data, "--run-dir", str(run_dir), "--steps", str(steps),
             "--checkpoint-every", str(checkpoint_every)] + SMALL + list(extra))


def logged_steps(run_dir):
    with open(os.path.join(str(run_dir), "train_log.jsonl")) as f:
        return [json.loads(line)["step"] for line in f]


def summary(run_dir):
    with open(os.path.join(str(run_dir), "run_summary.json")) as f:
        return json.load(f)


def steps_on_disk(run_dir):
    return [rundir.checkpoint_step(p) for p in rundir.list_checkpoints(os.path.join(str(run_dir), "checkpoints"))]


def leftovers(folder):
    """Temp files of atomic writes and of TensorFlow's Saver anywhere under ``folder``."""
    found = []
    for parent, dirs, files in os.walk(str(folder)):
        found += [os.path.join(parent, n) for n in dirs + files if n.startswith(".tmp-") or "_temp" in n]
    return found


def start_training(argv, env=None):
    """The image's entrypoint (exec -> containers.launch -> exec trainer), as `docker run` starts it."""
    environ = dict(os.environ, LIP2WAV_TARGET="gpu", PYTHONPATH=ROOT,
                   PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""), **(env or {}))
    return subprocess.Popen(["sh", os.path.join(ROOT, "containers", "entrypoint.sh"), "train"] + argv, cwd=ROOT,
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def wait_for_logged_step(proc, run_dir, step, timeout=300):
    deadline = time.time() + timeout
    path = os.path.join(str(run_dir), "train_log.jsonl")
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if os.path.isfile(path) and len(open(path).read().splitlines()) >= step:
            return
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("training did not reach step %d in %d s" % (step, timeout))


def test_sigterm_through_the_entrypoint_saves_a_checkpoint_and_exits_143(synthetic_data, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_training(train_argv(synthetic_data, run_dir, 1000, 1000))
    wait_for_logged_step(proc, run_dir, 2)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    line = error_line(err)
    step = logged_steps(run_dir)[-1]
    assert "stopped by SIGTERM at step %d; checkpoint saved" % step in line
    assert steps_on_disk(run_dir) == [step]
    assert summary(run_dir)["segments"][-1]["ended"] == "stopped by SIGTERM"


def test_sigkill_then_resume_keeps_one_history(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "run"
    # Checkpoints at 10, 20, ...; killed once step 11 is logged. A step takes ~0.1 s here, so the kill lands before
    # the next checkpoint even when a loaded machine notices the log line a second late (with checkpoints every
    # 3 steps, a cold CI run once killed just after the step-6 checkpoint, leaving no lost steps to test).
    proc = start_training(train_argv(synthetic_data, run_dir, 1000, 10))
    wait_for_logged_step(proc, run_dir, 11)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    survived = steps_on_disk(run_dir)[-1]
    killed_at = logged_steps(run_dir)[-1]
    assert killed_at > survived
    code, _, err = run_entrypoint(capsys, gpu_train.main, *train_argv(synthetic_data, run_dir, survived + 1, 10))
    assert code == 0, err
    assert logged_steps(run_dir) == list(range(1, survived + 2))
    segments = summary(run_dir)["segments"]
    assert [(s["first_step"], s["last_step"]) for s in segments] == [(1, survived), (survived + 1, survived + 1)]
    assert segments[0]["ended"].startswith("killed") and segments[1]["ended"] == "finished"
    assert summary(run_dir)["first_step"] == 1 and summary(run_dir)["last_step"] == survived + 1


def test_moved_run_with_container_paths_skips_a_damaged_checkpoint_on_resume(synthetic_data, tmp_path, capsys,
                                                                            caplog):
    first = tmp_path / "trained-at-workspace"
    code, _, err = run_entrypoint(capsys, gpu_train.main, *train_argv(synthetic_data, first, 4, 2))
    assert code == 0, err
    state = first / "checkpoints" / "checkpoint"
    assert "/" not in state.read_text()
    state.write_text('model_checkpoint_path: "/workspace/run/checkpoints/model.ckpt-4"\n')
    moved = tmp_path / "moved"
    shutil.move(str(first), str(moved))
    data = moved / "checkpoints" / "model.ckpt-4.data-00000-of-00001"
    payload = bytearray(data.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    data.write_bytes(bytes(payload))
    with caplog.at_level(logging.WARNING):
        code, _, err = run_entrypoint(capsys, gpu_train.main, *train_argv(synthetic_data, moved, 5, 2))
    assert code == 0, err
    skipped = [r.getMessage() for r in caplog.records if "skipped damaged checkpoint" in r.getMessage()]
    assert len(skipped) == 1 and "model.ckpt-4" in skipped[0] and "Checksum" in skipped[0]
    assert (moved / "checkpoints" / "corrupt" / "model.ckpt-4.index").is_file()
    assert steps_on_disk(moved) == [2, 4, 5]
    assert logged_steps(moved) == [1, 2, 3, 4, 5]
    assert graph.resolve_checkpoint(str(moved))[1] == str(moved / "checkpoints" / "model.ckpt-5")


def copy_run_with_two_checkpoints(untrained_run, tmp_path):
    """untrained_run (step 1) copied, plus its checkpoint again as step 2, with container-absolute paths."""
    run = tmp_path / "run"
    shutil.copytree(untrained_run, str(run))
    folder = run / "checkpoints"
    for path in list(folder.iterdir()):
        if path.name.startswith("model.ckpt-1."):
            shutil.copy(str(path), str(folder / path.name.replace("-1.", "-2.")))
    (folder / "checkpoint").write_text('model_checkpoint_path: "/workspace/run/checkpoints/model.ckpt-2"\n')
    return run


def test_export_uses_the_newest_intact_checkpoint_of_a_moved_run(untrained_run, tmp_path, capsys, caplog):
    run = copy_run_with_two_checkpoints(untrained_run, tmp_path)
    assert graph.resolve_checkpoint(str(run))[1] == str(run / "checkpoints" / "model.ckpt-2")
    data = run / "checkpoints" / "model.ckpt-2.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 3])
    with caplog.at_level(logging.WARNING):
        code, out, err = run_entrypoint(capsys, freeze.main, "--checkpoint", str(run), "--out", str(tmp_path / "f"),
                                       "--target", "gpu")
    assert code == 0, err
    assert any("skipped damaged checkpoint" in r.getMessage() and "model.ckpt-2" in r.getMessage()
               for r in caplog.records)
    manifest = json.loads((tmp_path / "f" / "lip2wav_gpu.json").read_text())
    assert manifest["checkpoint"].endswith("model.ckpt-1")
    code, _, err = run_entrypoint(capsys, freeze.main, "--checkpoint", str(data).split(".data")[0],
                                  "--out", str(tmp_path / "g"))
    assert code == 2 and "is damaged" in error_line(err) and "pass the run directory" in error_line(err)


def save_tiny_checkpoints(folder, steps, keep, size=1000):
    with tf.Graph().as_default():
        tf.get_variable("weights", [size])
        saver = tf.train.Saver(max_to_keep=None)
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            for step in steps:
                checkpoints.save(saver, session, str(folder), step, keep=keep, estimate_bytes=4 * size)


def test_retention_counts_checkpoints_written_by_earlier_processes(tmp_path):
    save_tiny_checkpoints(tmp_path, [1, 2, 3], keep=5)
    save_tiny_checkpoints(tmp_path, [4, 5, 6], keep=2)
    names = sorted(os.listdir(str(tmp_path)))
    assert [n for n in names if n.endswith(".index")] == ["model.ckpt-5.index", "model.ckpt-6.index"]
    assert (tmp_path / "checkpoint").read_text().splitlines()[0] == 'model_checkpoint_path: "model.ckpt-6"'


@pytest.fixture
def small_disk(tmp_path):
    """A real 3 MiB tmpfs (this process must be allowed to mount; skipped otherwise)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs to fill (%s); run as root to test a real full disk" % result.stderr.strip())
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_full_disk_leaves_no_temp_files_and_says_what_the_next_checkpoint_needs(small_disk):
    folder = small_disk / "checkpoints"
    folder.mkdir()
    save_tiny_checkpoints(folder, [1], keep=5, size=300 * 1000)
    data_bytes = (folder / "model.ckpt-1.data-00000-of-00001").stat().st_size
    # Room for the next data shard but not its index: TensorFlow itself leaves the shard behind there.
    filler = shutil.disk_usage(str(small_disk)).free - data_bytes - 4096
    (small_disk / "filler").write_bytes(b"\0" * filler)
    with pytest.raises(checkpoints.DiskFullError, match=r"the next checkpoint needs about 1\.\d MB"):
        save_tiny_checkpoints(folder, [2], keep=5, size=300 * 1000)
    assert sorted(os.listdir(str(folder))) == ["checkpoint", "model.ckpt-1.data-00000-of-00001",
                                               "model.ckpt-1.index", "model.ckpt-1.meta"]
    assert leftovers(small_disk) == []
    (small_disk / "filler").unlink()
    with pytest.raises(OSError):
        atomic.write_text(str(small_disk / "big.txt"), "x" * 4 * 1000 * 1000)
    assert leftovers(small_disk) == [] and not (small_disk / "big.txt").exists()


def test_training_on_a_full_disk_ends_in_one_line_and_the_same_command_resumes(synthetic_data, tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs to fill; run as root to test a real full disk")
    try:
        argv = train_argv(synthetic_data, disk / "run", 4, 2)
        code, _, err = run_entrypoint(capsys, gpu_train.main, *argv)
        assert code == 2
        assert leftovers(disk) == [] and steps_on_disk(disk / "run") == [2]
        # The step-2 checkpoint's files as the disk holds them (about 11 MB on TF 2.15, 12 MB on TF 1.15).
        folder = disk / "run" / "checkpoints"
        written = sum(os.path.getsize(str(folder / name)) for name in os.listdir(str(folder))
                      if name.startswith("model.ckpt-2."))
        assert "disk full under" in error_line(err)
        assert "the next checkpoint needs about %.1f MB" % (written / 1e6) in error_line(err)
        hparams_written = os.stat(str(disk / "run" / "hparams.json")).st_mtime_ns
        subprocess.run(["mount", "-o", "remount,size=60m", str(disk)], check=True)
        code, _, err = run_entrypoint(capsys, gpu_train.main, *argv)
        assert code == 0, err
        assert os.stat(str(disk / "run" / "hparams.json")).st_mtime_ns == hparams_written
        assert logged_steps(disk / "run") == [1, 2, 3, 4]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


@pytest.mark.parametrize("flag, value, message", [
    ("--steps", "-1", "--steps -1 must be >= 0"),
    ("--checkpoint-every", "0", "--checkpoint-every 0 must be >= 1"),
    ("--log-every", "0", "--log-every 0 must be >= 1"),
    ("--workers", "0", "--workers 0 must be >= 1"),
    ("--keep-checkpoints", "0", "--keep-checkpoints 0 must be >= 1"),
    ("--max-bad-share", "0", "--max-bad-share 0.0 must be > 0"),
    ("--max-bad-share", "1.5", "--max-bad-share 1.5 must be at most 1"),
])
def test_numeric_flags_out_of_range_fail_in_one_line(synthetic_data, tmp_path, capsys, flag, value, message):
    code, _, err = run_entrypoint(capsys, gpu_train.main, "--data", synthetic_data, "--run-dir",
                                  str(tmp_path / "run"), flag, value)
    assert code == 2 and message in error_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides, message", [
    ("tacotron_batch_size=0", "tacotron_batch_size=0 is outside [1, inf)"),
    ("T=-5", "T=-5 is outside [1, inf)"),
    ("dropout_rate=1.5", "dropout_rate=1.5 is outside [0, 1)"),
    ("tacotron_initial_learning_rate=0", "tacotron_initial_learning_rate=0.0 is outside (0, inf)"),
    ("overlap=30", "overlap must be smaller than T"),
    ("img_size=4", "img_size must be at least 2**enc_conv_num_blocks"),
])
def test_hyperparameters_out_of_range_fail_in_one_line(synthetic_data, tmp_path, capsys, overrides, message):
    code, _, err = run_entrypoint(capsys, gpu_train.main, "--data", synthetic_data, "--run-dir",
                                  str(tmp_path / "run"), "--hparams", overrides)
    assert code == 2 and message in error_line(err)


def test_every_declared_limit_accepts_its_default():
    for key in hparams.DECLARED:
        allowed = hparams.limit(key)
        assert allowed is None or allowed.contains(hparams.declared_default(key)), key


def test_damaged_files_and_unusable_run_dirs_fail_in_one_line_naming_the_path(synthetic_data, untrained_run,
                                                                           tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(untrained_run, str(damaged))
    (damaged / "hparams.json").write_text('{"T": 30,')
    code, _, err = run_entrypoint(capsys, gpu_train.main, "--data", synthetic_data, "--run-dir", str(damaged))
    assert code == 2 and "%s is not valid JSON" % (damaged / "hparams.json") in error_line(err)
    assert "start a new run directory" in error_line(err)
    overrides = tmp_path / "overrides.json"
    overrides.write_text("T=30")
    code, _, err = run_entrypoint(capsys, gpu_train.main, "--data", synthetic_data, "--run-dir",
                                  str(tmp_path / "new"), "--hparams-json", str(overrides))
    assert code == 2 and "%s is not valid JSON" % overrides in error_line(err)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    code, _, err = run_entrypoint(capsys, gpu_train.main, "--data", synthetic_data, "--run-dir", str(a_file))
    assert code == 2 and "--run-dir %s is a file" % a_file in error_line(err)


def test_run_dirs_of_the_old_architecture_are_refused_in_one_line(synthetic_data, untrained_run, tmp_path, capsys):
    """A run written before the original's network (its hparams.json has no architecture) neither resumes nor loads."""
    old = tmp_path / "old"
    shutil.copytree(untrained_run, str(old))
    values = json.loads((old / "hparams.json").read_text())
    assert values.pop("architecture") == "lip2wav-original-v1"
    (old / "hparams.json").write_text(json.dumps(values))
    before = sorted(os.listdir(str(old)))
    code, _, err = run_entrypoint(capsys, gpu_train.main, "--data", synthetic_data, "--run-dir", str(old))
    assert code == 2 and "is of the network before the original's architecture" in error_line(err)
    assert "start a new run directory" in error_line(err) and sorted(os.listdir(str(old))) == before
    with pytest.raises(hparams.HParamsError, match="import an original checkpoint"):
        graph.resolve_checkpoint(str(old))


def test_read_only_run_dir_fails_in_one_line(synthetic_data, tmp_path, capsys):
    run_dir = tmp_path / "readonly"
    run_dir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(run_dir)],
                             capture_output=True)
    if mounted.returncode != 0:
        run_dir.chmod(0o555)
        if os.access(str(run_dir), os.W_OK):
            pytest.skip("neither a read-only mount nor a read-only mode stops this user from writing")
    try:
        code, _, err = run_entrypoint(capsys, gpu_train.main, "--data", synthetic_data, "--run-dir", str(run_dir),
                                      "--steps", "1")
        assert code == 2 and "cannot write %s (" % run_dir in error_line(err)
        assert "make the run directory writable or pass another --run-dir" in error_line(err)
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", "-l", str(run_dir)], check=True)


def damage_clips(data_dir):
    """Three clips of a copied synthetic speaker, each broken in one way; returns their ids."""
    with open(os.path.join(data_dir, "train.txt")) as f:
        ids = [line.strip() for line in f if line.strip()]
    root = os.path.join(data_dir, "preprocessed")
    payload_id, nan_id, jpeg_id = ids[:3]
    mels = os.path.join(root, payload_id, "mels.npz")
    raw = bytearray(open(mels, "rb").read())
    for i in range(len(raw) // 3, len(raw) // 3 + 64):
        raw[i] ^= 0x5A
    open(mels, "wb").write(bytes(raw))
    spec = np.load(os.path.join(root, nan_id, "mels.npz"))["spec"]
    np.savez(os.path.join(root, nan_id, "mels.npz"), spec=np.full_like(spec, np.nan))
    for name in os.listdir(os.path.join(root, jpeg_id)):
        if name.endswith(".jpg"):
            path = os.path.join(root, jpeg_id, name)
            data = open(path, "rb").read()
            open(path, "wb").write(data[:len(data) // 2])
    return payload_id, nan_id, jpeg_id


def test_corrupt_clips_are_quarantined_counted_and_named(synthetic_data, synthetic_hp, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(synthetic_data, data)
    bad = damage_clips(data)
    index = dataset.ClipIndex(data, "train", synthetic_hp)
    assert set(bad) <= set(clip.id for clip in index.clips)  # headers are intact: only reading finds the damage
    with dataset.BatchSource(data, "train", synthetic_hp, batch_size=8, seed=0, workers=1,
                             max_bad_share=1.0) as source:
        for _ in range(10):
            batch = next(source)
            assert np.isfinite(batch["mel_targets"]).all()
        stats = source.stats
    assert sorted(stats["quarantined_clips"]) == sorted(bad)
    assert "non-finite" in stats["quarantined_clips"][bad[1]] and "truncated" in stats["quarantined_clips"][bad[2]]
    assert stats["windows_skipped"]["corrupt_clip"] > 0
    with dataset.BatchSource(data, "train", synthetic_hp, batch_size=8, seed=0, workers=1,
                             max_bad_share=0.05) as source:
        with pytest.raises(dataset.DatasetError, match="fell on corrupt clips of split train, more than the allowed 5%"):
            for _ in range(40):
                next(source)


def test_a_run_trains_past_corrupt_clips_and_names_them_in_its_summary(synthetic_data, tmp_path, capsys):
    data = str(tmp_path / "data")
    shutil.copytree(synthetic_data, data)
    bad = damage_clips(data)
    run_dir = tmp_path / "run"
    code, _, err = run_entrypoint(capsys, gpu_train.main, *train_argv(data, run_dir, 3, 3, "--max-bad-share", "0.9"))
    assert code == 0, err
    quarantined = summary(run_dir)["quarantined_clips"]
    assert quarantined and set(quarantined) <= set(bad)
    assert summary(run_dir)["windows_skipped"]["corrupt_clip"] > 0


def test_truncated_jpeg_is_detected_not_decoded_partially(synthetic_data, synthetic_hp, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(synthetic_data, data)
    jpeg_clip = damage_clips(data)[2]
    clip = [c for c in dataset.ClipIndex(data, "train", synthetic_hp).clips if c.id == jpeg_clip][0]
    with pytest.raises(dataset.CorruptClipError, match="0.jpg is truncated"):
        dataset.read_training_crop(clip, 0, synthetic_hp)
    assert crops.read(clip.path, 0, synthetic_hp.img_size, synthetic_hp.crop_style) is None
