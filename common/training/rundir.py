"""Where a training run keeps what (read without TensorFlow, so host tools can use it too)."""
import os

CHECKPOINTS = "checkpoints"
HPARAMS = "hparams.json"


def run_dir_of(run_or_checkpoint):
    """The run directory of a run directory or of a checkpoint prefix ``RUN/checkpoints/model.ckpt-N``."""
    path = str(run_or_checkpoint).rstrip("/")
    if os.path.isdir(path):
        return path
    return os.path.dirname(os.path.dirname(os.path.abspath(path)))
