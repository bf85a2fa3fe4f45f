import json
import os

import pytest

from gpu_training import train as gpu_train


def run(argv, capsys=None):
    code = gpu_train.main(argv)
    return code, (capsys.readouterr().err if capsys else "")


def read_log(run_dir):
    with open(os.path.join(run_dir, "train_log.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_loss_falls_clearly_on_the_synthetic_speaker(synthetic_data, tmp_path):
    run_dir = str(tmp_path / "run")
    code, _ = run(["--data", synthetic_data, "--run-dir", run_dir, "--steps", "60", "--log-every", "1",
                   "--checkpoint-every", "60", "--workers", "1"])
    assert code == 0
    losses = [r["loss"] for r in read_log(run_dir)]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.75 * first, (first, last)
    for name in ("step-60-mel.png", "step-60-alignment.png", "loss.png"):
        assert os.path.getsize(os.path.join(run_dir, "plots", name)) > 0
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "model.ckpt-60.index"))
    summary = json.load(open(os.path.join(run_dir, "run_summary.json")))
    assert summary["device_tree"] == "gpu" and summary["last_step"] == 60


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
