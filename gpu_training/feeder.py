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

from common.feeding import KEYS, FeederError, batch_shapes, check_batch
from common.tf_compat import tf

LOG = logging.getLogger(__name__)


class Feeder(object):
    """Fills a tf.FIFOQueue from ``source`` on a background thread; see the module docstring."""

    def __init__(self, source, hp, batch_size, capacity=8):
        self._source = source
        self._shapes = batch_shapes(hp, batch_size)
        self.wait_seconds = 0.0
        self.batches_fed = 0
        self._sess = None
        self._thread = None
        self._error = None
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._enqueued = 0
        with tf.device("/cpu:0"), tf.name_scope("feeder"):
            self._placeholders = [tf.placeholder(tf.float32, shape=self._shapes[key], name=key) for key in KEYS]
            queue = tf.FIFOQueue(capacity, [tf.float32] * len(KEYS),
                                 shapes=[self._shapes[key] for key in KEYS], name="input_queue")
            self._enqueue_op = queue.enqueue(self._placeholders)
            self._close_op = queue.close(cancel_pending_enqueues=True)
            self.queue_size = queue.size()
            self.inputs, self.mel_targets, self.speaker_embeddings = queue.dequeue()

    def start(self, sess):
        """Start the enqueue thread; ``sess`` must stay open until stop()."""
        if self._thread is not None:
            raise FeederError("feeder already started: create one Feeder per training run")
        self._sess = sess
        self._thread = threading.Thread(target=self._work, name="gpu-feeder", daemon=True)
        self._thread.start()

    def feed_dict(self):
        """Wait (timed) until the queue holds a batch, then return {} for the step's sess.run."""
        if self._sess is None:
            raise FeederError("feed_dict() called before start(sess): start the feeder first")
        began = time.monotonic()
        with self._cond:
            while True:
                self.check()
                if self._stopping.is_set():
                    raise FeederError("feed_dict() called after stop(): the feeder is shut down")
                generation = self._enqueued
                if self._sess.run(self.queue_size) > 0:
                    break
                while self._enqueued == generation and self._error is None and not self._stopping.is_set():
                    self._cond.wait(timeout=1.0)
        self.wait_seconds += time.monotonic() - began
        self.batches_fed += 1
        return {}

    def check(self):
        """Re-raise the worker thread's error (e.g. a DatasetError); call it when a dequeue fails."""
        if self._error is not None:
            raise self._error

    def stop(self, timeout=30.0):
        """Close the queue (cancelling a blocked enqueue), join the thread, close the source."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None:
            self._close_queue()
            self._thread.join(timeout)
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                LOG.warning("feeder thread still blocked in the data source after %.0f s; leaving it (daemon)",
                            2 * timeout)

    def _close_queue(self):
        try:
            self._sess.run(self._close_op)
        except (RuntimeError, tf.errors.OpError) as error:
            LOG.debug("closing the input queue: %s", error)

    def _work(self):
        try:
            batches = iter(self._source)
            while not self._stopping.is_set():
                try:
                    batch = next(batches)
                except StopIteration:
                    raise FeederError("the data source ended after %d batches: it must iterate forever"
                                      % self._enqueued)
                values = check_batch(batch, self._shapes)
                self._sess.run(self._enqueue_op, feed_dict=dict(zip(self._placeholders, values)))
                with self._cond:
                    self._enqueued += 1
                    self._cond.notify_all()
        except Exception as error:  # re-raised in the training loop by feed_dict()/check()
            if self._stopping.is_set():
                LOG.debug("feeder thread stopped: %s", error)
                return
            LOG.error("feeder worker failed", exc_info=True)
            with self._cond:
                self._error = error
                self._cond.notify_all()
            self._close_queue()
