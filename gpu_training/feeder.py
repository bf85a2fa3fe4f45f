"""GPU feeder: a background thread fills an in-graph tf.FIFOQueue; the model reads its dequeue.

The queue lives on the CPU so the next batch is staged while the GPU computes the current
step. ``feed_dict()`` returns ``{}``; it only times how long the loop waits for an empty queue
and re-raises a worker error. The NPU tree cannot use TF queues (see npu_training/feeder.py).

Loop contract (same in both trees)::

    feeder.start(sess)
    try:
        sess.run(train_op, feed_dict=feeder.feed_dict())
    except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
        feeder.check()   # re-raises the worker's error (it closed the queue)
        raise
    finally:
        feeder.stop()    # while the session is still open
"""
import logging
import threading
import time

from common.data.feeding import KEYS, BackgroundFeeder
from common.tf_compat import tf

LOG = logging.getLogger(__name__)


class Feeder(BackgroundFeeder):
    """Fills a tf.FIFOQueue from ``source`` on a background thread; see the module docstring."""

    thread_name = "gpu-feeder"

    def __init__(self, source, hp, batch_size, capacity=8):
        super(Feeder, self).__init__(source, hp, batch_size)
        self._cond = threading.Condition()
        with tf.device("/cpu:0"), tf.name_scope("feeder"):
            self._placeholders = [tf.placeholder(tf.float32, shape=self._shapes[key], name=key) for key in KEYS]
            queue = tf.FIFOQueue(capacity, [tf.float32] * len(KEYS),
                                 shapes=[self._shapes[key] for key in KEYS], name="input_queue")
            self._enqueue_op = queue.enqueue(self._placeholders)
            self._close_op = queue.close(cancel_pending_enqueues=True)
            self.queue_size = queue.size()
            self.inputs, self.mel_targets, self.speaker_embeddings = queue.dequeue()

    def feed_dict(self):
        """Wait (timed) until the queue holds a batch, then return {} for the step's sess.run."""
        began = time.monotonic()
        with self._cond:
            while True:
                self._check_usable()
                generation = self._delivered
                if self._sess.run(self.queue_size) > 0:
                    break
                while self._delivered == generation and self._error is None and not self._stopping.is_set():
                    self._cond.wait(timeout=1.0)
        self.wait_seconds += time.monotonic() - began
        self.batches_fed += 1
        return {}

    def _deliver(self, values):
        self._sess.run(self._enqueue_op, feed_dict=dict(zip(self._placeholders, values)))
        with self._cond:
            self._cond.notify_all()
        return True

    def _wake(self):
        """Wake a waiting feed_dict and close the queue, cancelling a blocked enqueue or dequeue."""
        with self._cond:
            self._cond.notify_all()
        try:
            self._sess.run(self._close_op)
        except (RuntimeError, tf.errors.OpError) as error:
            LOG.debug("closing the input queue: %s", error)
