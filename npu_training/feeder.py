"""NPU feeder: a background thread fills a Python queue; batches enter through static placeholders.

The Ascend graph compiler supports no TF queue ops (FIFOQueue & co.), so unlike the GPU tree
nothing here is in the graph except three placeholders with fully static shapes.
``feed_dict()`` blocks on the Python queue (the wait is added to ``wait_seconds``) and returns
``{placeholder: array}``. One worker is enough: the BatchSource already decodes in parallel,
and a single consumer keeps the source's batch order.

Loop contract (same in both trees)::

    feeder.start(sess)
    try:
        sess.run(train_op, feed_dict=feeder.feed_dict())   # re-raises the worker's error
    finally:
        feeder.stop()
"""
import logging
import queue
import threading
import time

from common.feeding import KEYS, FeederError, batch_shapes, check_batch
from common.tf_compat import tf

LOG = logging.getLogger(__name__)
_POLL_SECONDS = 0.5  # how often a blocked get/put looks for stop() or a worker error


class Feeder(object):
    """Fills a queue.Queue from ``source`` on a background thread; see the module docstring."""

    def __init__(self, source, hp, batch_size, capacity=8):
        self._source = source
        self._shapes = batch_shapes(hp, batch_size)
        self._queue = queue.Queue(maxsize=capacity)
        self.wait_seconds = 0.0
        self.batches_fed = 0
        self._thread = None
        self._error = None
        self._stopping = threading.Event()
        with tf.name_scope("feeder"):
            self._placeholders = [tf.placeholder(tf.float32, shape=self._shapes[key], name=key) for key in KEYS]
        self.inputs, self.mel_targets, self.speaker_embeddings = self._placeholders

    def start(self, sess):
        """Start the worker thread (``sess`` is unused: the signature matches the GPU feeder)."""
        del sess
        if self._thread is not None:
            raise FeederError("feeder already started: create one Feeder per training run")
        self._thread = threading.Thread(target=self._work, name="npu-feeder", daemon=True)
        self._thread.start()

    def feed_dict(self):
        """Block (timed) for the next batch and return it keyed by placeholder."""
        if self._thread is None:
            raise FeederError("feed_dict() called before start(sess): start the feeder first")
        began = time.monotonic()
        while True:
            self.check()
            if self._stopping.is_set():
                raise FeederError("feed_dict() called after stop(): the feeder is shut down")
            try:
                values = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                continue
        self.wait_seconds += time.monotonic() - began
        self.batches_fed += 1
        return dict(zip(self._placeholders, values))

    def check(self):
        """Re-raise the worker thread's error (e.g. a DatasetError) in the training loop."""
        if self._error is not None:
            raise self._error

    def stop(self, timeout=30.0):
        """Stop and join the worker, then close the source."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning("feeder thread still blocked in the data source after %.0f s; leaving it (daemon)",
                            2 * timeout)

    def _work(self):
        produced = 0
        try:
            batches = iter(self._source)
            while not self._stopping.is_set():
                try:
                    batch = next(batches)
                except StopIteration:
                    raise FeederError("the data source ended after %d batches: it must iterate forever" % produced)
                values = check_batch(batch, self._shapes)
                while not self._stopping.is_set():
                    try:
                        self._queue.put(values, timeout=_POLL_SECONDS)
                        produced += 1
                        break
                    except queue.Full:
                        continue
        except Exception as error:  # re-raised in the training loop by feed_dict()
            if self._stopping.is_set():
                LOG.debug("feeder thread stopped: %s", error)
                return
            LOG.error("feeder worker failed", exc_info=True)
            self._error = error

