"""What both device feeders agree on: the batch keys, their static shapes, the batch check and the loop contract.

The graph of either tree is built for exactly ``batch_shapes(hp, batch_size)``; a batch that does
not match fails here, before the graph, with a message naming the fix, instead of deep in TF.
"""
import threading

import numpy as np
from common.data import windows
from common.errors import Lip2WavError

KEYS = ("inputs", "mel_targets", "speaker_embeddings")


class FeederError(Lip2WavError, RuntimeError):
    """The data feeder failed or was misused; the message names the fix."""


def batch_shapes(hp, batch_size):
    """Static shape of every batch key: the graph is built (or compiled) for exactly these."""
    return {
        "inputs": (batch_size,) + windows.window_shape(hp),
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


class SourceFeeder(object):
    """What both feeders share: the batch source (the one producer) and the loop contract.

    start(sess), feed_dict() per step, check() (re-raise a transport error), stop() (closes the source).
    A subclass builds ``inputs``, ``mel_targets`` and ``speaker_embeddings`` with the static ``self._shapes``
    and takes each checked batch from next_values(); the source's own worker threads do the decoding.
    """

    def __init__(self, source, hp, batch_size):
        self._source = source
        self._shapes = batch_shapes(hp, batch_size)
        self.wait_seconds = 0.0
        self.batches_fed = 0
        self._sess = None
        self._batches = None
        self._error = None
        self._taken = 0
        self._stopping = threading.Event()

    def start(self, sess):
        """Begin feeding from ``sess``, which must stay open until stop()."""
        if self._sess is not None:
            raise FeederError("feeder already started: create one Feeder per training run")
        self._sess = sess
        self._batches = iter(self._source)

    def check(self):
        """Re-raise the error that stopped the feeding (e.g. a DatasetError) in the training loop."""
        if self._error is not None:
            raise self._error

    def _check_usable(self):
        if self._sess is None:
            raise FeederError("feed_dict() called before start(sess): start the feeder first")
        self.check()
        if self._stopping.is_set():
            raise FeederError("feed_dict() called after stop(): the feeder is shut down")

    def next_values(self):
        """The source's next batch, checked against the graph's shapes, as arrays in KEYS order."""
        try:
            batch = next(self._batches)
        except StopIteration:
            raise FeederError("the data source ended after %d batches: it must iterate forever"
                              % self._taken) from None
        self._taken += 1
        return check_batch(batch, self._shapes)

    def stop(self, timeout=30.0):
        """Stop feeding, then close the source (which joins its workers); ``timeout`` bounds a subclass's join."""
        self._stopping.set()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
