"""The inference graph, shared by synthesis, evaluation and export.

Inputs and outputs have fixed names and a fully static shape, so the same graph can be
frozen for TF serving or converted by ATC: ``face_windows`` [batch, T, S, S, 3] in [0, 1]
-> ``mel_outputs`` [batch, mel_step_size, num_mels] (and ``alignments``).
"""
import os

from common.config import hparams as hparams_lib
from common.model import network as model_lib
from common.tf_compat import tf
from export.batching import run_in_batches
from gpu_training.decoder import dynamic_decode_loop
from npu_training.decoder import static_decode_loop
from common.errors import Lip2WavError

INPUT_NAME = "face_windows"
OUTPUT_NAME = "mel_outputs"
ALIGNMENT_NAME = "alignments"
DECODE_LOOPS = {"gpu": dynamic_decode_loop, "npu": static_decode_loop}


class CheckpointError(Lip2WavError, ValueError):
    """A checkpoint that is missing or does not fit; the message names the fix."""


def resolve_checkpoint(run_or_checkpoint):
    """A run directory or a checkpoint prefix -> (hparams, checkpoint prefix)."""
    path = run_or_checkpoint.rstrip("/")
    if os.path.isdir(path):
        run_dir = path
        checkpoint = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
        if checkpoint is None:
            raise CheckpointError("%s holds no checkpoint; train first (invoke train) or pass a "
                                  "model.ckpt-N prefix" % path)
    else:
        if not os.path.isfile(path + ".index"):
            raise CheckpointError("checkpoint %s does not exist; pass a run directory or a model.ckpt-N prefix"
                                  % path)
        checkpoint = path
        run_dir = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    hparams_path = os.path.join(run_dir, "hparams.json")
    if not os.path.isfile(hparams_path):
        raise CheckpointError("no hparams.json in %s; a checkpoint needs the run directory it was trained in"
                              % run_dir)
    return hparams_lib.load(hparams_path), checkpoint


def build_inference_graph(hp, target="gpu", batch_size=1):
    """Placeholder -> mels with the target tree's decode loop; returns (input, mels, alignments)."""
    if target not in DECODE_LOOPS:
        raise ValueError("target must be one of %s" % ", ".join(sorted(DECODE_LOOPS)))
    inputs = tf.placeholder(tf.float32, [batch_size, hp.T, hp.img_size, hp.img_size, 3], name=INPUT_NAME)
    speakers = tf.zeros([batch_size, hp.speaker_embedding_dim])
    outputs = model_lib.Lip2Wav(hp, DECODE_LOOPS[target]).build(inputs, speakers, is_training=False)
    # Both loops run exactly max_iters steps at inference; a reshape to that static shape says so in
    # the graph itself (for the dynamic loop too), so every consumer infers the manifest's shape.
    mels = tf.reshape(outputs.postnet_mels, [batch_size, hp.max_iters * hp.outputs_per_step, hp.num_mels],
                      name=OUTPUT_NAME)
    alignments = tf.identity(outputs.alignments, name=ALIGNMENT_NAME)
    return inputs, mels, alignments


class CheckpointPredictor(object):
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

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
