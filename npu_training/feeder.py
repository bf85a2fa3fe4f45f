"""NPU feeder: each step takes the source's next batch into static placeholders.

The Ascend graph compiler supports no TF queue ops (FIFOQueue & co.), so unlike the GPU tree
nothing here is in the graph except three placeholders with fully static shapes.
``feed_dict()`` takes the next batch from the source (the wait is added to ``wait_seconds``) and
returns ``{placeholder: array}``. No thread of its own: the BatchSource already prefetches on its
workers, in the seed's batch order.

Loop contract (same in both trees)::

    feeder.start(sess)
    try:
        sess.run(train_op, feed_dict=feeder.feed_dict())   # raises the source's error
    finally:
        feeder.stop()
"""
import time

from common.data.feeding import KEYS, SourceFeeder
from common.tf_compat import tf


class Feeder(SourceFeeder):
    """Feeds the source's batches through placeholders; see the module docstring."""

    def __init__(self, source, hp, batch_size):
        super(Feeder, self).__init__(source, hp, batch_size)
        with tf.name_scope("feeder"):
            self._placeholders = [tf.placeholder(tf.float32, shape=self._shapes[key], name=key) for key in KEYS]
        self.inputs, self.mel_targets, self.speaker_embeddings = self._placeholders

    def feed_dict(self):
        """Take (timed) the next batch and return it keyed by placeholder."""
        self._check_usable()
        began = time.monotonic()
        values = self.next_values()
        self.wait_seconds += time.monotonic() - began
        self.batches_fed += 1
        return dict(zip(self._placeholders, values))
