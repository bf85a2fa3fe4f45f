"""Building blocks of the network: seeded stateless randomness, zoneout LSTM, conv stacks.

All randomness is drawn with stateless ops keyed by (seed, salt): once per sequence, before
any loop, so the loops hold no random op and read their step's slice. The GPU and NPU
decode loops therefore use the same numbers for the same step, which is what makes
their outputs comparable to 1e-5 and a checkpoint portable between them.
"""
from common.tf_compat import tf


class Noise(object):
    """Stateless uniform noise; ``seed`` is an int32 scalar (the global step in training)."""

    def __init__(self, seed):
        self.seed = tf.cast(seed, tf.int32)

    def uniform(self, shape, salt):
        key = tf.stack([self.seed, tf.constant(salt * 100003, tf.int32)])
        # The raw op is the one TF 1.15 has; TF 2.x's stateless_uniform emits V2 ops that
        # a graph frozen on a workstation could not carry into a TF 1.15 image or ATC.
        return tf.raw_ops.StatelessRandomUniform(shape=shape, seed=key, dtype=tf.float32)


def keep_mask(uniform, rate):
    """1.0 where ``uniform`` >= ``rate``, else 0.0: a dropout or zoneout mask, computed before any loop."""
    return tf.cast(uniform >= rate, tf.float32)


def dropout(x, rate, keep):
    """Inverted dropout with a precomputed ``keep`` mask (kept on at inference, as in Tacotron-2's prenet)."""
    return x * keep / (1.0 - rate)


class ZoneoutLSTMCell(tf.nn.rnn_cell.RNNCell):
    """LSTM cell with zoneout (Krueger et al. 2016).

    In training the input is a pair (input, keep mask): the mask has two blocks of ``units``
    (cell and hidden state), is drawn before the loop, so the cell holds no random op and works
    inside any loop (dynamic_rnn passes the pair through). At inference zoneout is the
    expectation: a fixed blend.
    """

    def __init__(self, units, zoneout_rate, is_training, name):
        super(ZoneoutLSTMCell, self).__init__(name=name)
        self._units = units
        self._rate = zoneout_rate
        self._is_training = is_training
        self._cell = tf.nn.rnn_cell.LSTMCell(units, name=name)

    @property
    def state_size(self):
        return self._cell.state_size

    @property
    def output_size(self):
        return self._units

    def __call__(self, inputs, state, scope=None):
        if self._is_training:
            inputs, keep = inputs
            keep_c, keep_h = tf.split(keep, 2, axis=-1)
        _, new_state = self._cell(inputs, state)
        prev_c, prev_h = state
        new_c, new_h = new_state
        if self._is_training:
            c = prev_c + keep_c * (new_c - prev_c)
            h = prev_h + keep_h * (new_h - prev_h)
        else:
            c = (1.0 - self._rate) * new_c + self._rate * prev_c
            h = (1.0 - self._rate) * new_h + self._rate * prev_h
        return h, tf.nn.rnn_cell.LSTMStateTuple(c, h)


def conv3d_bn_relu(x, filters, kernel_size, strides, is_training, name):
    with tf.variable_scope(name):
        x = tf.layers.conv3d(x, filters, kernel_size, strides=strides, padding="same", use_bias=False)
        x = tf.layers.batch_normalization(x, training=is_training)
        return tf.nn.relu(x)


def conv1d_bn(x, filters, kernel_size, activation, is_training, name):
    with tf.variable_scope(name):
        x = tf.layers.conv1d(x, filters, kernel_size, padding="same", use_bias=False)
        x = tf.layers.batch_normalization(x, training=is_training)
        return activation(x) if activation is not None else x
