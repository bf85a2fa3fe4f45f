"""What both device feeders agree on: the batch keys, their static shapes and the batch check.

The graph of either tree is built for exactly ``batch_shapes(hp, batch_size)``; a batch that does
not match fails here, in the feeder thread, with a message naming the fix, instead of deep in TF.
"""
import logging
import threading

import numpy as np
from common.data import windows
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

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


class BackgroundFeeder(object):
    """The worker-thread life cycle both feeders share; subclasses only move batches.

    A subclass builds ``inputs``, ``mel_targets`` and ``speaker_embeddings`` with the static
    ``self._shapes``, implements ``_deliver(values)`` (hand one checked batch to the graph's
    side; return False when stop() interrupted it) and ``feed_dict()``, and may override
    ``_wake()`` (unblock a waiting feed_dict or deliver on stop or error).
    """

    thread_name = "feeder"

    def __init__(self, source, hp, batch_size):
        self._source = source
        self._shapes = batch_shapes(hp, batch_size)
        self.wait_seconds = 0.0
        self.batches_fed = 0
        self._sess = None
        self._thread = None
        self._error = None
        self._delivered = 0
        self._stopping = threading.Event()

    def start(self, sess):
        """Start the worker thread; ``sess`` must stay open until stop()."""
        if self._thread is not None:
            raise FeederError("feeder already started: create one Feeder per training run")
        self._sess = sess
        self._thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
        self._thread.start()

    def check(self):
        """Re-raise the worker thread's error (e.g. a DatasetError) in the training loop."""
        if self._error is not None:
            raise self._error

    def _check_usable(self):
        if self._thread is None:
            raise FeederError("feed_dict() called before start(sess): start the feeder first")
        self.check()
        if self._stopping.is_set():
            raise FeederError("feed_dict() called after stop(): the feeder is shut down")

    def stop(self, timeout=30.0):
        """Stop the worker (unblocking it), join it, then close the source."""
        self._stopping.set()
        if self._thread is not None:
            self._wake()
            self._thread.join(timeout)
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning("feeder thread still blocked in the data source after %.0f s; leaving it (daemon)",
                            2 * timeout)

    def _wake(self):
        """Unblock whoever waits on the transport; the base transport needs nothing."""

    def _work(self):
        try:
            batches = iter(self._source)
            while not self._stopping.is_set():
                try:
                    batch = next(batches)
                except StopIteration:
                    raise FeederError("the data source ended after %d batches: it must iterate forever"
                                      % self._delivered)
                if not self._deliver(check_batch(batch, self._shapes)):
                    return
                self._delivered += 1
        except Exception as error:  # re-raised in the training loop by feed_dict()/check()
            if self._stopping.is_set():
                LOG.debug("feeder thread stopped: %s", error)
                return
            LOG.error("feeder worker failed", exc_info=True)
            self._error = error
            self._wake()
