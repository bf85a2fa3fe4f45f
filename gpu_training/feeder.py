"""GPU feeder: one thread runs the enqueue op of an in-graph tf.FIFOQueue; the model reads its dequeue.

The queue lives on the CPU so the next batch is staged while the GPU computes the current
step; the thread exists only because the enqueue blocks while the queue is full (the source's
own workers do the decoding). ``feed_dict()`` returns ``{}``; it only times how long the loop waits
for an empty queue and re-raises the enqueue thread's error. The NPU tree cannot use TF queues (see npu_training/feeder.py).

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

from common.data.feeding import KEYS, SourceFeeder
from common.tf_compat import tf

LOG = logging.getLogger(__name__)


class Feeder(SourceFeeder):
    """Fills a tf.FIFOQueue from ``source`` on its enqueue thread; see the module docstring."""

    def __init__(self, source, hp, batch_size, capacity=8):
        super(Feeder, self).__init__(source, hp, batch_size)
        self._thread = None
        self._delivered = 0
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

    def start(self, sess):
        """Start the enqueue thread; ``sess`` must stay open until stop()."""
        super(Feeder, self).start(sess)
        self._thread = threading.Thread(target=self._work, name="gpu-feeder", daemon=True)
        self._thread.start()

    def stop(self, timeout=30.0):
        """Stop the enqueue thread (closing the queue unblocks it), close the source, join the thread."""
        self._stopping.set()
        if self._thread is not None:
            self._wake()
            self._thread.join(timeout)
        super(Feeder, self).stop(timeout)
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning("feeder thread still blocked in the data source after %.0f s; leaving it (daemon)",
                            2 * timeout)

    def _work(self):
        try:
            while not self._stopping.is_set():
                values = self.next_values()
                self._sess.run(self._enqueue_op, feed_dict=dict(zip(self._placeholders, values)))
                with self._cond:
                    self._delivered += 1
                    self._cond.notify_all()
        except Exception as error:  # re-raised in the training loop by feed_dict()/check()
            if self._stopping.is_set():
                LOG.debug("feeder thread stopped: %s", error)
                return
            LOG.error("feeder worker failed", exc_info=True)
            self._error = error
            self._wake()

    def _wake(self):
        """Wake a waiting feed_dict and close the queue, cancelling a blocked enqueue or dequeue."""
        with self._cond:
            self._cond.notify_all()
        try:
            self._sess.run(self._close_op)
        except (RuntimeError, tf.errors.OpError) as error:
            LOG.debug("closing the input queue: %s", error)
