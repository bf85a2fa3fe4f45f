"""The inference graph, shared by synthesis, evaluation and export.

Inputs and outputs have fixed names and a fully static shape, so the same graph can be
frozen for TF serving or converted by ATC: ``face_windows`` [batch, T, S, S, 3] in [0, 1]
-> ``mel_outputs`` [batch, mel_step_size, num_mels] (and ``alignments``).
"""
import os

from common import devices
from common.config import hparams as hparams_lib
from common.data import windows
from common.model import network as model_lib
from common.tf_compat import tf
from export.batching import SessionRunner, run_in_batches
from common.training import checkpoints
from common.training import rundir
from common.training.checkpoints import CheckpointError
from export import targets

INPUT_NAME = "face_windows"
OUTPUT_NAME = "mel_outputs"
ALIGNMENT_NAME = "alignments"


def resolve_checkpoint(run_or_checkpoint):
    """A run directory (its newest intact checkpoint, wherever the run was trained) or a verified
    checkpoint prefix -> (hparams, checkpoint prefix)."""
    run_dir, checkpoint = checkpoints.resolve(run_or_checkpoint)
    hparams_path = os.path.join(run_dir, rundir.HPARAMS)
    if not os.path.isfile(hparams_path):
        raise CheckpointError("no hparams.json in %s; a checkpoint needs the run directory it was trained in"
                              % run_dir)
    return hparams_lib.load(hparams_path), checkpoint


# Windows per forward pass of synthesis and evaluation (the bench times inference at this batch too).
DEFAULT_BATCH_SIZE = 8


def add_checkpoint_arguments(parser):
    """The flags that pick what predicts: --checkpoint, --target (whose decode loop), --batch-size."""
    parser.add_argument("--checkpoint", required=True, help="Run directory or model.ckpt-N prefix.")
    parser.add_argument("--target", default="gpu", choices=devices.TARGETS,
                        help="Which target's decode loop runs the checkpoint (same weights either way).")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="Windows per forward pass.")


def build_inference_graph(hp, target="gpu", batch_size=1):
    """Placeholder -> mels with the target's decode loop; returns (input, mels, alignments)."""
    decode_loop = targets.backend(target).decode_loop
    inputs = tf.placeholder(tf.float32, [batch_size] + list(windows.window_shape(hp)), name=INPUT_NAME)
    speakers = tf.zeros([batch_size, hp.speaker_embedding_dim])
    outputs = model_lib.Lip2Wav(hp, decode_loop).build(inputs, speakers, is_training=False)
    # Both loops run exactly max_iters steps at inference; a reshape to that static shape says so in
    # the graph itself (for the dynamic loop too), so every consumer infers the manifest's shape.
    mels = tf.reshape(outputs.postnet_mels, [batch_size, hp.max_iters * hp.outputs_per_step, hp.num_mels],
                      name=OUTPUT_NAME)
    alignments = tf.identity(outputs.alignments, name=ALIGNMENT_NAME)
    return inputs, mels, alignments


class CheckpointPredictor(SessionRunner):
    """Face windows -> mel windows from a checkpoint, in fixed-size batches (the last one padded)."""

    def __init__(self, run_or_checkpoint, target="gpu", batch_size=4):
        self.hp, self.checkpoint = resolve_checkpoint(run_or_checkpoint)
        self.batch_size = batch_size
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.inputs, self.mels, self.alignments = build_inference_graph(self.hp, target, batch_size)
            saver = tf.train.Saver()
            self.session = tf.Session(graph=self.graph)
            try:
                saver.restore(self.session, self.checkpoint)
            except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as error:
                self.session.close()
                raise CheckpointError("checkpoint %s does not match its hparams.json (%s); use the run directory "
                                      "it was trained in" % (self.checkpoint, str(error).splitlines()[0]))

    def predict(self, windows, with_alignments=False):
        """windows [N, T, S, S, 3] -> mels [N, mel_step_size, num_mels] (and alignments)."""
        mels, alignments = run_in_batches(
            lambda batch: self.session.run([self.mels, self.alignments], {self.inputs: batch}),
            windows, self.batch_size)
        return (mels, alignments) if with_alignments else mels
