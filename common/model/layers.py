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
    """Inverted dropout with a precomputed ``keep`` mask."""
    return x * keep / (1.0 - rate)


def loop_kernel_probe(kernel, leading_shape, recorded):
    """Zeros ``leading_shape`` + [out] whose gradient w.r.t. ``kernel`` [in, out] is X^T dZ in one product.

    A while loop that multiplies by ``kernel`` makes TF1's backprop add a whole [in, out] gradient
    into an accumulator on every iteration, which for the decoder LSTMs is more memory traffic
    than arithmetic. A loop step instead multiplies by stop_gradient(kernel) and adds its slice of
    this probe, so backprop gathers every step's dZ into one tensor; ``recorded`` (a list, filled
    after the loop with the step inputs X, ``leading_shape`` + [in] in the same order) turns it into
    the kernel's gradient with a single matrix product. Same sum, other order: equal to float rounding.
    """
    depth, out = [int(d) for d in kernel.shape]

    @tf.custom_gradient
    def probe(weights):
        def gradient(d_probe):
            inputs = tf.reshape(recorded[0], [-1, depth])
            return tf.matmul(inputs, tf.reshape(d_probe, [-1, out]), transpose_a=True)
        return tf.zeros(tf.concat([leading_shape, [out]], axis=0)), gradient
    return probe(kernel)


class ZoneoutLSTMCell(tf.nn.rnn_cell.RNNCell):
    """LSTM cell with zoneout (Krueger et al. 2016); the arithmetic and variables of tf.nn.rnn_cell.LSTMCell.

    As in the original's ZoneoutLSTMCell, the cell emits the plain LSTM output and zoneout acts
    only on the state it carries to the next step. In training the input is a pair (input, keep
    mask): the mask has two blocks of ``units`` (cell and hidden state), is drawn before the loop,
    so the cell holds no random op and works inside any loop (dynamic_rnn passes the pair through).
    At inference zoneout is the expectation: a fixed blend. ``step`` also takes a kernel probe (see loop_kernel_probe); under
    dynamic_rnn the input is then a triple (input, keep mask, probe) and, after
    ``record_kernel_inputs``, the output a pair (output, kernel input).
    """

    def __init__(self, units, zoneout_rate, is_training, name):
        super(ZoneoutLSTMCell, self).__init__(name=name)
        self._units = units
        self._rate = zoneout_rate
        self._is_training = is_training
        self._variable_name = name
        self.kernel = None
        self.bias = None
        self._recording = False

    @property
    def state_size(self):
        return tf.nn.rnn_cell.LSTMStateTuple(self._units, self._units)

    @property
    def output_size(self):
        if self._recording:
            return self._units, int(self.kernel.shape[0])
        return self._units

    def record_kernel_inputs(self):
        """Make the cell emit its kernel input beside its output (build_variables first)."""
        self._recording = True

    def build_variables(self, input_depth):
        """kernel [input + units, 4 units] and bias, named as LSTMCell names them (checkpoints load)."""
        if self.kernel is None:
            with tf.variable_scope(self._variable_name):
                self.kernel = tf.get_variable("kernel", [input_depth + self._units, 4 * self._units])
                self.bias = tf.get_variable("bias", [4 * self._units], initializer=tf.zeros_initializer())

    def __call__(self, inputs, state, scope=None):
        keep = probe = None
        if self._is_training and self._recording:
            inputs, keep, probe = inputs
        elif self._is_training:
            inputs, keep = inputs
        output, new_state, kernel_input = self.step(inputs, state, keep, probe)
        return ((output, kernel_input) if self._recording else output), new_state

    def step(self, inputs, state, keep=None, kernel_probe=None):
        """(plain LSTM output, zoned state, the kernel's input); with ``kernel_probe`` the kernel gets no per-step
        gradient."""
        self.build_variables(int(inputs.shape[-1]))
        prev_c, prev_h = state
        kernel_input = tf.concat([inputs, prev_h], axis=1)
        if kernel_probe is None:
            gates = tf.matmul(kernel_input, self.kernel)
        else:
            gates = tf.matmul(kernel_input, tf.stop_gradient(self.kernel)) + kernel_probe
        i, j, f, o = tf.split(tf.nn.bias_add(gates, self.bias), 4, axis=1)
        new_c = tf.sigmoid(f + 1.0) * prev_c + tf.sigmoid(i) * tf.tanh(j)
        new_h = tf.sigmoid(o) * tf.tanh(new_c)
        if keep is not None:
            keep_c, keep_h = tf.split(keep, 2, axis=-1)
            c = prev_c + keep_c * (new_c - prev_c)
            h = prev_h + keep_h * (new_h - prev_h)
        else:
            c = (1.0 - self._rate) * new_c + self._rate * prev_c
            h = (1.0 - self._rate) * new_h + self._rate * prev_h
        return new_h, tf.nn.rnn_cell.LSTMStateTuple(c, h), kernel_input


class Dense(object):
    """A dense layer whose variables exist from construction on, named as tf.layers.Dense names them under
    ``name``: a decode loop's body then only reads them, and the names are the original's wherever it runs."""

    def __init__(self, name, depth, units, use_bias=True, activation=None):
        with tf.variable_scope(name):
            self.kernel = tf.get_variable("kernel", [depth, units])
            self.bias = tf.get_variable("bias", [units], initializer=tf.zeros_initializer()) if use_bias else None
        self.activation = activation

    def __call__(self, x):
        y = tf.matmul(x, self.kernel) if x.shape.ndims == 2 else tf.tensordot(x, self.kernel, 1)
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        return self.activation(y) if self.activation is not None else y


def conv3d_bn_relu(x, filters, kernel_size, strides, is_training, name, residual=False):
    """The original's encoder conv: conv3d (with bias) -> batch norm (-> + input) -> ReLU."""
    with tf.variable_scope(name):
        y = tf.layers.conv3d(x, filters, kernel_size, strides=strides, padding="same")
        y = tf.layers.batch_normalization(y, training=is_training)
        return tf.nn.relu(y + x if residual else y)


def conv1d_bn(x, filters, kernel_size, activation, is_training, name):
    """The original's postnet conv: conv1d (with bias) -> batch norm -> activation (dropout is the caller's)."""
    with tf.variable_scope(name):
        x = tf.layers.conv1d(x, filters, kernel_size, padding="same")
        x = tf.layers.batch_normalization(x, training=is_training)
        return activation(x) if activation is not None else x
