"""Checkpoints and frozen graphs across runtimes: TF 1.15 (the images) and TF 2.x (workstations).

A checkpoint trained on one runtime, frozen and run on the other, gives the mels that freezing and
running it on its own runtime give, to 1e-5, both ways. Runs where a second runtime is at hand:
LIP2WAV_OTHER_TF_PYTHON names its interpreter (.ci/tf115 passes the workstation venv's).
"""
import json
import os
import subprocess

import numpy as np
import pytest

from common.tf_compat import tf
from export import freeze
from export.infer import FrozenGraphRunner
from gpu_training import train as gpu_train

OTHER_ENV = "LIP2WAV_OTHER_TF_PYTHON"
OTHER = os.environ.get(OTHER_ENV)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ("encoder_lstm_units=16,decoder_lstm_units=32,postnet_channels=16,attention_dim=16,tacotron_batch_size=2,"
        "enc_conv_num_blocks=2,postnet_num_layers=2,decoder_layers=1")
TARGET = "npu"  # the graph ATC converts; the GPU tree shares every layer and differs only in its loop
TOLERANCE = 1e-5
# Freeze RUN into OUT with this runtime, run the frozen graph on WINDOWS, save the mels to MELS; print the TF version.
OTHER_SIDE = """
import sys
import numpy as np
from common.tf_compat import tf
from export import freeze
from export.infer import FrozenGraphRunner
run, out, windows, mels = sys.argv[1:]
manifest = freeze.freeze(run, out, "%s", batch_size=2)
with FrozenGraphRunner(out + "/" + manifest["graph"]) as runner:
    np.save(mels, runner.predict(np.load(windows)))
print(tf.version.VERSION)
""" % TARGET

pytestmark = pytest.mark.skipif(not OTHER, reason="needs a second TensorFlow runtime: set %s" % OTHER_ENV)


def other(*args):
    proc = subprocess.run([OTHER] + list(args), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def here_freeze_and_run(run, out, windows):
    manifest = freeze.freeze(run, out, TARGET, batch_size=2)
    with FrozenGraphRunner(os.path.join(out, manifest["graph"])) as runner:
        return runner.predict(windows)


def there_freeze_and_run(run, out, windows, tmp_path):
    np.save(str(tmp_path / "windows.npy"), windows)
    version = other("-c", OTHER_SIDE, run, out, str(tmp_path / "windows.npy"), str(tmp_path / "mels.npy"))
    with open(os.path.join(out, "lip2wav_%s.json" % TARGET)) as f:
        assert json.load(f)["tf_version"] == version.strip() != tf.version.VERSION
    return np.load(str(tmp_path / "mels.npy"))


@pytest.mark.parametrize("trained", ["here", "there"])
def test_a_checkpoint_from_either_runtime_freezes_to_the_same_mels_on_both(synthetic_data, tmp_path, trained):
    run = str(tmp_path / "run")
    train = ["--data", synthetic_data, "--run-dir", run, "--steps", "2", "--checkpoint-every", "2", "--workers", "1",
             "--hparams", TINY]
    if trained == "here":
        assert gpu_train.main(train) == 0
    else:
        other("-m", "gpu_training.train", *train)
    with open(os.path.join(run, "hparams.json")) as f:
        hp = json.load(f)
    windows = np.random.RandomState(0).rand(3, hp["T"], hp["img_size"], hp["img_size"], 3).astype(np.float32)
    here = here_freeze_and_run(run, str(tmp_path / "here"), windows)
    there = there_freeze_and_run(run, str(tmp_path / "there"), windows, tmp_path)
    assert np.abs(here).max() > 0
    np.testing.assert_allclose(here, there, atol=TOLERANCE, rtol=0)
