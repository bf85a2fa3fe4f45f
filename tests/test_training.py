import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.config import hparams
from common.data import dataset
from common.data import timing
from common.tf_compat import tf
from gpu_training import train as gpu_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, capsys=None):
    code = gpu_train.main(argv)
    return code, (capsys.readouterr().err if capsys else "")


def read_log(run_dir):
    with open(os.path.join(run_dir, "train_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def mean_mel_floor(data_dir, hp, split="train"):
    """Training loss term (MSE + L1 per mel) of always predicting the train split's mean mel, over every
    usable window of ``split``: the loss a model that ignores the video and the past frames would reach."""
    from export.apps.evaluate import mean_mel
    mean = mean_mel(data_dir, hp)
    squared, absolute = [], []
    for clip in dataset.ClipIndex(data_dir, split, hp).clips:
        spec = dataset.load_mels(clip, hp)
        for start in dataset.usable_starts(clip, hp):
            first = timing.mel_start(start, hp)
            error = spec[:, first:first + hp.mel_step_size].T - mean
            squared.append(np.mean(error ** 2))
            absolute.append(np.mean(np.abs(error)))
    return float(np.mean(squared) + np.mean(absolute))


def test_loss_falls_below_the_mean_mel_floor_on_the_synthetic_speaker(synthetic_data, synthetic_hp, tmp_path):
    run_dir = str(tmp_path / "run")
    code, _ = run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "60", "--log-every", "1",
                   "--checkpoint-every", "60", "--workers", "1"])
    assert code == 0
    log = read_log(run_dir)
    floor = mean_mel_floor(synthetic_data, synthetic_hp)
    # Measured (teacher-forced, last 5 of 60 steps): decoder 1.57 and postnet 1.19 against a floor of 2.50.
    decoder = np.mean([r["decoder_loss"] for r in log[-5:]])
    postnet = np.mean([r["postnet_loss"] for r in log[-5:]])
    assert decoder < 0.85 * floor and postnet < 0.7 * floor, (decoder, postnet, floor)
    for name in ("step-60-mel.png", "step-60-alignment.png", "loss.png"):
        assert os.path.getsize(os.path.join(run_dir, "plots", name)) > 0
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "model.ckpt-60.index"))
    summary = json.load(open(os.path.join(run_dir, "run_summary.json")))
    assert summary["target"] == "gpu" and summary["last_step"] == 60


def test_resume_continues_exactly_where_it_stopped(synthetic_data, tmp_path):
    common = ["--data", synthetic_data, "--log-every", "1", "--checkpoint-every", "3", "--workers", "1"]
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert run(common + ["--run-dir", straight, "--steps", "6"])[0] == 0
    assert run(common + ["--run-dir", split, "--steps", "3"])[0] == 0
    assert run(common + ["--run-dir", split, "--steps", "6"])[0] == 0
    uninterrupted, resumed = read_log(straight), read_log(split)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(uninterrupted[3:], resumed[3:]):
        assert a["learning_rate"] == b["learning_rate"]
        assert a["teacher_forcing_ratio"] == b["teacher_forcing_ratio"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def test_resume_refuses_conflicting_hparams(synthetic_data, tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    assert run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "1", "--workers", "1"])[0] == 0
    code, err = run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "2",
                     "--hparams", "decoder_lstm_units=64"], capsys)
    assert code == 2
    assert "was trained with other hyperparameters (decoder_lstm_units)" in err


@pytest.mark.parametrize("argv_tail, message", [
    (["--hparams", "bogus=1"], "unknown hyperparameter 'bogus'"),
    (["--hparams", "img_size=large"], "img_size='large' should be a int"),
    (["--preset", "nope"], "unknown preset 'nope'"),
])
def test_bad_hparams_fail_with_one_clear_line(synthetic_data, tmp_path, capsys, argv_tail, message):
    run_dir = str(tmp_path / "run")
    code, err = run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "1"] + argv_tail, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    assert not os.path.exists(os.path.join(run_dir, "checkpoints"))


@pytest.mark.parametrize("make_data", ["missing", "empty"])
def test_missing_or_empty_data_dir_fails_with_one_clear_line(tmp_path, capsys, make_data):
    data = tmp_path / "data"
    if make_data == "empty":
        data.mkdir()
    code, err = run(["--data", str(data), "--run-dir", str(tmp_path / "run"), "--steps", "1"], capsys)
    assert code == 2
    line = [l for l in err.splitlines() if l.startswith("error:")]
    assert len(line) == 1 and "common.synthetic" in line[0]
    assert not (tmp_path / "run").exists()


def test_resume_without_flags_keeps_the_first_runs_hparams(synthetic_data, tmp_path):
    run_dir = str(tmp_path / "run")
    overrides = "tacotron_batch_size=4,decoder_lstm_units=64"
    assert run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "1", "--workers", "1",
                "--hparams", overrides])[0] == 0
    assert run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "2", "--workers", "1"])[0] == 0
    with open(os.path.join(run_dir, "run_summary.json")) as f:
        summary = json.load(f)
    assert (summary["first_step"], summary["last_step"]) == (1, 2)
    assert [(s["first_step"], s["last_step"]) for s in summary["segments"]] == [(1, 1), (2, 2)]
    assert summary["batch_size"] == 4
    saved = hparams.load(os.path.join(run_dir, "hparams.json"))
    assert (saved.tacotron_batch_size, saved.decoder_lstm_units) == (4, 64)


def test_a_start_that_failed_before_its_first_checkpoint_does_not_pin_its_hparams(synthetic_data, tmp_path,
                                                                                    capsys, caplog):
    """The first start dies on its data after writing hparams.json; the next one trains with what it asks for,
    and once a checkpoint exists a different ask is refused as before."""
    broken, run_dir = str(tmp_path / "broken"), str(tmp_path / "run")
    shutil.copytree(synthetic_data, broken)
    for clip in dataset.ClipIndex(broken, "train", hparams.resolve("synthetic")).clips:
        spec = np.load(os.path.join(clip.path, "mels.npz"))["spec"]
        np.savez(os.path.join(clip.path, "mels.npz"), spec=np.full_like(spec, np.nan))
    common = ["--run-dir", run_dir, "--steps", "1", "--workers", "1"]
    code, err = run(["--data", broken, "--hparams", "tacotron_batch_size=8"] + common, capsys)
    assert code == 2 and "corrupt" in err, err
    assert hparams.load(os.path.join(run_dir, "hparams.json")).tacotron_batch_size == 8
    assert not [n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.endswith(".index")]
    code, err = run(["--data", synthetic_data, "--hparams", "tacotron_batch_size=2"] + common, capsys)
    assert code == 0, err
    assert "no checkpoint yet: the hyperparameters asked for replace its hparams.json (tacotron_batch_size)" in \
        caplog.text
    with open(os.path.join(run_dir, "run_summary.json")) as f:
        assert json.load(f)["batch_size"] == 2
    assert hparams.load(os.path.join(run_dir, "hparams.json")).tacotron_batch_size == 2
    code, err = run(["--data", synthetic_data, "--hparams", "tacotron_batch_size=8", "--run-dir", run_dir,
                     "--steps", "2"], capsys)
    assert code == 2 and "was trained with other hyperparameters (tacotron_batch_size)" in err


def _wait_for_logged_step(run_dir, proc, step, timeout):
    deadline = time.time() + timeout
    path = os.path.join(run_dir, "train_log.jsonl")
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        if os.path.isfile(path) and len(read_log(run_dir)) >= step:
            return read_log(run_dir)[-1]["step"]
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("no step %d logged within %d s" % (step, timeout))


def test_ctrl_c_saves_a_checkpoint_and_the_rerun_resumes_there(synthetic_data, tmp_path):
    run_dir = str(tmp_path / "run")
    argv = [sys.executable, "-m", "gpu_training.train", "--data", synthetic_data, "--run-dir", run_dir,
            "--log-every", "1", "--checkpoint-every", "100000", "--workers", "1",
            "--hparams", "tacotron_batch_size=2"]
    proc = subprocess.Popen(argv + ["--steps", "100000"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    logged = _wait_for_logged_step(run_dir, proc, 3, timeout=300)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("still running 300 s after SIGINT:\n" + proc.communicate()[1][-3000:])
    assert proc.returncode != 0, stderr[-3000:]
    saved = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    assert saved is not None, stderr[-3000:]
    k = int(saved.rsplit("-", 1)[1])
    assert k >= logged, (k, logged)
    before = len(read_log(run_dir))
    rerun = subprocess.run(argv + ["--steps", str(k + 2)], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [r["step"] for r in read_log(run_dir)[before:]] == [k + 1, k + 2]


def test_mixed_precision_trains_a_step_on_the_cpu_with_dynamic_loss_scaling(synthetic_data, tmp_path):
    run_dir = str(tmp_path / "run")
    code, _ = run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "1", "--log-every", "1",
                   "--workers", "1", "--hparams", "tacotron_batch_size=2", "--mixed-precision"])
    assert code == 0
    (record,) = read_log(run_dir)
    assert record["step"] == 1 and 0 < record["loss"] < 100
    saved = [name for name, _ in tf.train.list_variables(os.path.join(run_dir, "checkpoints", "model.ckpt-1"))]
    assert "current_loss_scale" in saved and "good_steps" in saved


def test_xla_compiles_and_trains_a_step_on_the_cpu(synthetic_data, tmp_path):
    built_with_xla = getattr(tf.test, "is_built_with_xla", None)  # TF 2 only; TF 1.15's wheel has XLA on the CPU
    if built_with_xla is not None and not built_with_xla():
        pytest.skip("this TensorFlow build has no XLA")
    run_dir = str(tmp_path / "run")
    # --xla sets the session's global JIT level; on the CPU, TensorFlow clusters for XLA only with this flag.
    env = dict(os.environ, TF_XLA_FLAGS="--tf_xla_cpu_global_jit", TF_CPP_MIN_LOG_LEVEL="0")
    proc = subprocess.run([sys.executable, "-m", "gpu_training.train", "--data", synthetic_data, "--run-dir", run_dir,
                           "--steps", "1", "--log-every", "1", "--workers", "1", "--hparams", "tacotron_batch_size=2",
                           "--xla"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Compiled cluster using XLA" in proc.stderr
    (record,) = read_log(run_dir)
    assert record["step"] == 1 and 0 < record["loss"] < 100


def _copy_with_shuffled_frames(data_dir, out):
    """The dataset with each clip's face crops in a random order: the audio no longer matches the lips."""
    shutil.copytree(data_dir, out)
    rng = np.random.RandomState(0)
    for clip in dataset.ClipIndex(out, "train", hparams.resolve("synthetic")).clips:
        names = sorted(n for n in os.listdir(clip.path) if n.endswith(".jpg"))
        contents = [open(os.path.join(clip.path, n), "rb").read() for n in names]
        for name, source in zip(names, rng.permutation(len(names))):
            with open(os.path.join(clip.path, name), "wb") as f:
                f.write(contents[source])
    return out


def free_running_mse(run_dir, data_dir, hp, split="test"):
    """(model MSE, mean-mel MSE) over the whole windows of ``split``, the model decoding from its own output."""
    from export import graph
    from export.apps.evaluate import mean_mel
    windows, targets = [], []
    for clip in dataset.ClipIndex(data_dir, split, hp).clips:
        frames, starts = dataset.windows_for_clip(clip, hp)
        spec = dataset.load_mels(clip, hp)
        for frame_window, first in zip(frames, starts):
            if first + hp.mel_step_size <= spec.shape[1]:
                windows.append(frame_window)
                targets.append(spec[:, first:first + hp.mel_step_size].T)
    targets = np.stack(targets)
    with graph.CheckpointPredictor(run_dir, "gpu", 8) as predictor:
        predicted = predictor.predict(np.stack(windows))
    floor = np.mean((targets - mean_mel(data_dir, hp)) ** 2)
    return float(np.mean((predicted - targets) ** 2)), float(floor)


@pytest.mark.slow
def test_free_running_model_beats_the_floor_only_when_it_sees_the_true_frames(synthetic_data, synthetic_hp,
                                                                               tmp_path):
    shuffled = _copy_with_shuffled_frames(synthetic_data, str(tmp_path / "shuffled"))
    common = ["--steps", "600", "--checkpoint-every", "600", "--log-every", "50", "--workers", "1"]
    assert run(["--data", synthetic_data, "--run-dir", str(tmp_path / "true")] + common)[0] == 0
    assert run(["--data", shuffled, "--run-dir", str(tmp_path / "shuffled_run")] + common)[0] == 0
    true_mse, floor = free_running_mse(str(tmp_path / "true"), synthetic_data, synthetic_hp)
    shuffled_mse, _ = free_running_mse(str(tmp_path / "shuffled_run"), synthetic_data, synthetic_hp)
    # Measured on the held-out test windows after 600 steps (teacher forcing fully decayed at 500):
    # true frames 1.15, shuffled frames 1.93, mean mel 2.15.
    assert true_mse < 0.75 * floor, (true_mse, floor)
    assert shuffled_mse > 1.3 * true_mse, (shuffled_mse, true_mse)
