"""What both device feeders agree on: the batch keys, their static shapes and the batch check.

The graph of either tree is built for exactly ``batch_shapes(hp, batch_size)``; a batch that does
not match fails here, in the feeder thread, with a message naming the fix, instead of deep in TF.
"""
import numpy as np

KEYS = ("inputs", "mel_targets", "speaker_embeddings")


class FeederError(RuntimeError):
    """The data feeder failed or was misused; the message names the fix."""


def batch_shapes(hp, batch_size):
    """Static shape of every batch key: the graph is built (or compiled) for exactly these."""
    return {
        "inputs": (batch_size, hp.T, hp.img_size, hp.img_size, 3),
        "mel_targets": (batch_size, hp.mel_step_size, hp.num_mels),
        "speaker_embeddings": (batch_size, hp.speaker_embedding_dim),
    }


def check_batch(batch, shapes):
    """Return the batch's arrays in KEYS order as contiguous float32, or raise naming the mismatch."""
    values = []
    for key in KEYS:
        if key not in batch:
            raise FeederError("batch has no key %r (keys: %s): the source must yield %s"
                              % (key, sorted(batch), ", ".join(KEYS)))
        value = np.ascontiguousarray(batch[key], dtype=np.float32)
        if value.shape != shapes[key]:
            raise FeederError("batch %r has shape %s, the graph expects %s: build the source and the "
                              "feeder with the same hparams and batch size" % (key, value.shape, shapes[key]))
        values.append(value)
    return values
