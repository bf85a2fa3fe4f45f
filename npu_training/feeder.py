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
import queue
import time

from common.data.feeding import KEYS, BackgroundFeeder
from common.tf_compat import tf

_POLL_SECONDS = 0.5  # how often a blocked get/put looks for stop() or a worker error


class Feeder(BackgroundFeeder):
    """Fills a queue.Queue from ``source`` on a background thread; see the module docstring."""

    thread_name = "npu-feeder"

    def __init__(self, source, hp, batch_size, capacity=8):
        super(Feeder, self).__init__(source, hp, batch_size)
        self._queue = queue.Queue(maxsize=capacity)
        with tf.name_scope("feeder"):
            self._placeholders = [tf.placeholder(tf.float32, shape=self._shapes[key], name=key) for key in KEYS]
        self.inputs, self.mel_targets, self.speaker_embeddings = self._placeholders

    def feed_dict(self):
        """Block (timed) for the next batch and return it keyed by placeholder."""
        began = time.monotonic()
        while True:
            self._check_usable()
            try:
                values = self._queue.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                continue
        self.wait_seconds += time.monotonic() - began
        self.batches_fed += 1
        return dict(zip(self._placeholders, values))

    def _deliver(self, values):
        while not self._stopping.is_set():
            try:
                self._queue.put(values, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False
