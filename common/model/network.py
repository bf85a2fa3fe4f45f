"""The Lip2Wav network, its losses and its optimisation schedule: the original's (github Rudrabha/Lip2Wav).

The decode loop is not here: each device tree passes its own (``decode_loop``), because
the loop's control flow is where GPUs and NPUs differ. Everything that owns variables
lives here, so variable names, and therefore checkpoints, are the same in both trees. The
names are the original's (``Tacotron_model/inference/...``), so its checkpoints restore by name;
``original_name`` gives the few optimizer names that differ.
"""
import collections
import math

from common.config.hparams import HParamsError
from common.model.layers import (Dense, Noise, ZoneoutLSTMCell, conv1d_bn, conv3d_bn_relu, dropout, keep_mask,
                                 loop_kernel_probe)
from common.tf_compat import tf

# conv_output: the 3-D conv stack's output [B, T, h, w, C]; encoder_output: the BiLSTM's [B, T, 2*lstm].
ModelOutputs = collections.namedtuple(
    "ModelOutputs", ["conv_output", "encoder_output", "decoder_mels", "postnet_mels", "alignments"])
Losses = collections.namedtuple(
    "Losses", ["total", "decoder", "postnet", "l1", "regularization"])
# kernel_inputs: in training, one TensorArray per LSTM layer recording each step's kernel input.
DecoderState = collections.namedtuple(
    "DecoderState", ["lstm", "context", "alignments", "cumulative_alignments", "kernel_inputs"])
# What a decode loop prepares before it starts, leading axis the decoder step: the randomness
# (prenet and zoneout keep masks [steps, B, width] per layer, teacher-forcing coins [steps]) and,
# in training, the LSTM kernel probes (TensorArrays of zeros, see layers.loop_kernel_probe).
DecoderSequence = collections.namedtuple("DecoderSequence", ["prenet", "zoneout", "coins", "kernel_probes"])

# The original's variable scopes: every model variable is under MODEL_SCOPE/inference/.
MODEL_SCOPE = "Tacotron_model"
# The original builds Adam inside MODEL_SCOPE, so its slots and beta powers carry that prefix once more.
ADAM_SLOT_SUFFIXES = ("/Adam", "/Adam_1")
BETA_POWERS = ("beta1_power", "beta2_power")
# Substrings that keep a variable out of the L2 term (the original's rule, models/tacotron.py): biases,
# projections (frame, postnet, attention v) and recurrent weights.
L2_EXCLUDED = ("bias", "Bias", "_projection", "inputs_embedding", "RNN", "LSTM")

# Salts that keep the random streams of different layers apart.
_SALT_PRENET = 10
_SALT_DECODER_ZONEOUT = 20
_SALT_TEACHER_COIN = 30
_SALT_ENCODER_ZONEOUT = 40
_SALT_POSTNET = 50


def original_name(name):
    """The name the original's training checkpoint stores our variable ``name`` (an op name) under.

    Model variables and global_step keep their names (the original's global_step is int32, ours int64:
    a cast, not a rename); Adam slots and beta powers gain the original's extra MODEL_SCOPE prefix.
    """
    if name.endswith(ADAM_SLOT_SUFFIXES) or name in BETA_POWERS:
        return MODEL_SCOPE + "/" + name
    return name


def model_variables():
    """The network's own variables in the current graph (weights and batch-norm statistics, no optimizer slots)."""
    return [v for v in tf.global_variables(MODEL_SCOPE + "/") if not v.op.name.endswith(ADAM_SLOT_SUFFIXES)]


def l2_regularized(name):
    return not any(word in name for word in L2_EXCLUDED)


def encoder_convolutions(inputs, hp, is_training):
    """The original's EncoderConvolutions3D: [B, T, S, S, 3] -> [B, T, h, w, C].

    Per block one conv with stride (1, 2, 2) (kernel 5 in the first block, else 3) and two residual
    convs, channels doubling from num_init_filters; after the last block one conv of stride (1, 3, 3).
    The original reads none of enc_conv_kernel_size, enc_conv_num_layers, enc_conv_channels.
    """
    x = inputs
    channels = hp.num_init_filters
    with tf.variable_scope("encoder_convolutions"):
        for block in range(1, hp.enc_conv_num_blocks + 1):
            x = conv3d_bn_relu(x, channels, 5 if block == 1 else 3, (1, 2, 2), is_training,
                               "conv_layer_%d_encoder_convolutions" % block)
            for layer in (1, 2):
                x = conv3d_bn_relu(x, channels, 3, (1, 1, 1), is_training,
                                   "conv_layer_%d_%d_encoder_convolutions" % (block, layer), residual=True)
            channels *= 2
        return conv3d_bn_relu(x, channels // 2, 3, (1, 3, 3), is_training,
                              "conv_layer_%d_last_encoder_convolutions" % hp.enc_conv_num_blocks)


def encode(inputs, hp, is_training, noise):
    """Face windows [B, T, S, S, 3] -> (conv output [B, T, h, w, C], BiLSTM output [B, T, 2*lstm])."""
    conv_output = encoder_convolutions(inputs, hp, is_training)
    depth = int(conv_output.shape[2]) * int(conv_output.shape[3]) * int(conv_output.shape[4])
    x = tf.reshape(conv_output, [-1, hp.T, depth])
    reverse = lambda t: tf.reverse(t, axis=[1])
    with tf.variable_scope("encoder_LSTM"), tf.variable_scope("bidirectional_rnn"):
        fw_out = _encoder_lstm(x, hp, is_training, noise, "fw", _SALT_ENCODER_ZONEOUT)
        # Every window has the full T frames, so the backward pass is a plain reversal.
        bw_out = reverse(_encoder_lstm(reverse(x), hp, is_training, noise, "bw", _SALT_ENCODER_ZONEOUT + 1))
    return conv_output, tf.concat([fw_out, bw_out], axis=-1)


def _encoder_lstm(x, hp, is_training, noise, direction, salt):
    """One direction of the encoder BiLSTM over [B, T, depth]; in training with zoneout and a kernel probe."""
    cell = ZoneoutLSTMCell(hp.encoder_lstm_units, hp.zoneout_rate, is_training, "encoder_%s_LSTM" % direction)
    with tf.variable_scope(direction):
        cell.build_variables(int(x.shape[-1]))
    if not is_training:
        return tf.nn.dynamic_rnn(cell, x, dtype=tf.float32, scope=direction)[0]
    cell.record_kernel_inputs()
    batch_time = tf.shape(x)[:2]
    keep = keep_mask(noise.uniform(tf.concat([batch_time, [2 * hp.encoder_lstm_units]], axis=0), salt),
                     hp.zoneout_rate)
    recorded = []
    probe = loop_kernel_probe(cell.kernel, batch_time, recorded)
    (outputs, kernel_inputs), _ = tf.nn.dynamic_rnn(cell, (x, keep, probe), dtype=tf.float32, scope=direction)
    recorded.append(kernel_inputs)
    return outputs


class DecoderCell(object):
    """One decoder step: prenet -> LSTMs -> location-sensitive attention -> frame projection.

    Device trees drive it with their own loops; the cell owns every decoder variable (created under the
    caller's variable scope, ``decoder`` in the original) except the attention's memory layer, whose
    ``keys`` the caller passes. A loop prepares the sequence with ``begin_sequence`` before it starts
    (randomness drawn once, so the body holds no random op), hands each step its slice (``sequence_at``),
    starts from ``zero_state`` and, after the loop, passes the final state to ``end_sequence``.
    """

    def __init__(self, hp, memory, keys, is_training, noise):
        self.hp = hp
        self.memory = memory
        self.keys = keys
        self.is_training = is_training
        self.noise = noise
        # The original keeps the prenet's dropout on at inference too (its outputs vary with the seed).
        self.prenet_dropout = is_training or hp.prenet_dropout_at_inference
        depth = hp.num_mels
        self.prenet = []
        for i, units in enumerate(hp.prenet_layers):
            self.prenet.append(Dense("decoder_prenet/dense_%d" % (i + 1), depth, units, activation=tf.nn.relu))
            depth = units
        self.lstms = [ZoneoutLSTMCell(hp.decoder_lstm_units, hp.zoneout_rate, is_training,
                                      "decoder_LSTM_%d" % (i + 1)) for i in range(hp.decoder_layers)]
        depth += int(memory.shape[-1])
        for i, cell in enumerate(self.lstms):
            with tf.variable_scope("decoder_LSTM/multi_rnn_cell/cell_%d" % i):
                cell.build_variables(depth)
            depth = hp.decoder_lstm_units
        self._recorded_kernel_inputs = [[] for _ in self.lstms]
        with tf.variable_scope("Location_Sensitive_Attention"):
            self.query_layer = Dense("query_layer", depth, hp.attention_dim, use_bias=False)
            with tf.variable_scope("location_features_convolution"):
                self.location_kernel = tf.get_variable("kernel", [hp.attention_kernel, 1, hp.attention_filters])
                self.location_bias = tf.get_variable("bias", [hp.attention_filters],
                                                     initializer=tf.zeros_initializer())
            self.location_layer = Dense("location_features_layer", hp.attention_filters, hp.attention_dim,
                                        use_bias=False)
            self.attention_v = tf.get_variable("attention_variable_projection", [hp.attention_dim])
            self.attention_b = tf.get_variable("attention_bias", [hp.attention_dim],
                                               initializer=tf.zeros_initializer())
        self.frame_projection = Dense("linear_transform_projection/projection_linear_transform_projection",
                                      depth + int(memory.shape[-1]), hp.num_mels * hp.outputs_per_step)

    def zero_state(self, batch_size, steps):
        units = self.hp.decoder_lstm_units
        zeros = lambda width: tf.zeros(tf.stack([batch_size, width]))
        time = self.memory.shape[1]
        kernel_inputs = ()
        if self.is_training:
            kernel_inputs = tuple(tf.TensorArray(tf.float32, size=steps) for _ in self.lstms)
        return DecoderState(
            lstm=tuple(tf.nn.rnn_cell.LSTMStateTuple(zeros(units), zeros(units)) for _ in self.lstms),
            context=zeros(int(self.memory.shape[-1])),
            alignments=zeros(int(time)),
            cumulative_alignments=zeros(int(time)),
            kernel_inputs=kernel_inputs)

    def go_frame(self, batch_size):
        return tf.zeros(tf.stack([batch_size, self.hp.num_mels]))

    def begin_sequence(self, batch_size, steps, teacher_forcing):
        """DecoderSequence for ``steps`` steps; zoneout and probes only in training, prenet masks while its
        dropout is on, coins only with teacher forcing."""
        hp = self.hp

        def masks(width, salt, rate):
            return keep_mask(self.noise.uniform(tf.stack([steps, batch_size, width]), salt), rate)
        prenet = zoneout = probes = ()
        if self.prenet_dropout:
            prenet = tuple(masks(units, _SALT_PRENET + i, hp.dropout_rate) for i, units in enumerate(hp.prenet_layers))
        if self.is_training:
            zoneout = tuple(masks(2 * hp.decoder_lstm_units, _SALT_DECODER_ZONEOUT + i, hp.zoneout_rate)
                            for i in range(len(self.lstms)))
            probes = tuple(tf.TensorArray(tf.float32, size=steps).unstack(
                loop_kernel_probe(cell.kernel, tf.stack([steps, batch_size]), recorded))
                for cell, recorded in zip(self.lstms, self._recorded_kernel_inputs))
        coins = self.noise.uniform(tf.reshape(steps, [1]), _SALT_TEACHER_COIN) if teacher_forcing else None
        return DecoderSequence(prenet, zoneout, coins, probes)

    @staticmethod
    def sequence_at(sequence, step):
        """The slice of ``sequence`` (a DecoderSequence) for one decoder step."""
        at = lambda t: tf.gather(t, step)
        return DecoderSequence(tuple(at(t) for t in sequence.prenet), tuple(at(t) for t in sequence.zoneout),
                               None if sequence.coins is None else at(sequence.coins),
                               tuple(probe.read(step) for probe in sequence.kernel_probes))

    def end_sequence(self, final_state):
        """Hand the recorded kernel inputs to the kernel probes' gradients (training only)."""
        for recorded, inputs in zip(self._recorded_kernel_inputs, final_state.kernel_inputs):
            recorded.append(inputs.stack())

    def step(self, previous_frame, state, step, inputs):
        """Step ``step`` with its slice of the sequence; returns (frames [B, r*mels], new state)."""
        x = previous_frame
        for i, layer in enumerate(self.prenet):
            x = layer(x)
            if inputs.prenet:
                x = dropout(x, self.hp.dropout_rate, inputs.prenet[i])
        x = tf.concat([x, state.context], axis=-1)
        new_lstm = []
        kernel_inputs = []
        for i, cell in enumerate(self.lstms):
            if self.is_training:
                x, lstm_state, kernel_input = cell.step(x, state.lstm[i], inputs.zoneout[i], inputs.kernel_probes[i])
                kernel_inputs.append(state.kernel_inputs[i].write(step, kernel_input))
            else:
                x, lstm_state, _ = cell.step(x, state.lstm[i])
            new_lstm.append(lstm_state)
        alignments, cumulative = self._attend(x, state.cumulative_alignments)
        context = tf.reduce_sum(alignments[:, :, None] * self.memory, axis=1)
        frames = self.frame_projection(tf.concat([x, context], axis=-1))
        return frames, DecoderState(tuple(new_lstm), context, alignments, cumulative, tuple(kernel_inputs))

    def _attend(self, query, cumulative):
        features = tf.nn.bias_add(tf.nn.conv1d(cumulative[:, :, None], self.location_kernel, 1, "SAME"),
                                  self.location_bias)
        location = self.location_layer(features)
        energy = tf.reduce_sum(self.attention_v * tf.tanh(
            self.keys + self.query_layer(query)[:, None, :] + location + self.attention_b), axis=-1)
        alignments = tf.nn.softmax(energy, axis=-1)
        return alignments, cumulative + alignments

    def next_input(self, frames, target_frame, teacher_forcing_ratio, inputs):
        """Scheduled teacher forcing: one coin per step for the whole batch (a blend by 1/0, no branch)."""
        predicted = frames[:, -self.hp.num_mels:]
        if target_frame is None:
            return predicted
        teach = tf.cast(inputs.coins < teacher_forcing_ratio, tf.float32)
        return teach * target_frame + (1.0 - teach) * predicted


def postnet(decoder_mels, hp, is_training, noise):
    """The original's Postnet and postnet_projection: conv1d stack (dropout in training) -> dense to mels, added."""
    x = decoder_mels
    with tf.variable_scope("postnet_convolutions"):
        for i in range(hp.postnet_num_layers):
            last = i == hp.postnet_num_layers - 1
            # The original always names its last layer conv_layer_5 (hence postnet_num_layers <= 5).
            x = conv1d_bn(x, hp.postnet_channels, hp.postnet_kernel_size, None if last else tf.tanh, is_training,
                          "conv_layer_%d_postnet_convolutions" % (5 if last else i + 1))
            if is_training:
                x = dropout(x, hp.dropout_rate, keep_mask(noise.uniform(tf.shape(x), _SALT_POSTNET + i),
                                                          hp.dropout_rate))
    with tf.variable_scope("postnet_projection"):
        residual = tf.layers.dense(x, hp.num_mels, name="projection_postnet_projection")
    return decoder_mels + residual


class Lip2Wav(object):
    """Face windows in, mel windows out; the decode loop comes from the device tree.

    ``decode_loop(cell, batch_size, max_iters, target_frames, teacher_forcing_ratio)`` returns
    (frames [B, steps, r*mels], alignments [B, steps, T]).
    ``target_frames`` is [B, steps, mels] (the last frame of every group of r) or None.
    """

    def __init__(self, hp, decode_loop):
        self.hp = hp
        self.decode_loop = decode_loop

    def build(self, inputs, speaker_embeddings, mel_targets=None, is_training=False,
              global_step=None, teacher_forcing_ratio=None):
        hp = self.hp
        seed = global_step if global_step is not None else tf.constant(hp.tacotron_random_seed)
        noise = Noise(seed)
        batch_size = inputs.shape[0].value if inputs.shape[0].value is not None else tf.shape(inputs)[0]
        with tf.variable_scope(MODEL_SCOPE), tf.variable_scope("inference"):
            conv_output, encoder_output = encode(inputs, hp, is_training, noise)
            tiled = tf.tile(speaker_embeddings[:, None, :], [1, hp.T, 1])
            memory = tf.concat([encoder_output, tiled], axis=-1)
            keys = tf.layers.dense(memory, hp.attention_dim, use_bias=False, name="memory_layer")
            with tf.variable_scope("decoder"):
                cell = DecoderCell(hp, memory, keys, is_training, noise)
                target_frames = None
                if mel_targets is not None:
                    r = hp.outputs_per_step
                    target_frames = mel_targets[:, r - 1::r, :]
                    if teacher_forcing_ratio is None:
                        teacher_forcing_ratio = tf.constant(1.0)
                frames, alignments = self.decode_loop(
                    cell, batch_size, hp.max_iters, target_frames, teacher_forcing_ratio)
            decoder_mels = tf.reshape(frames, [batch_size, -1, hp.num_mels])
            postnet_mels = postnet(decoder_mels, hp, is_training, noise)
        return ModelOutputs(conv_output, encoder_output, decoder_mels, postnet_mels, alignments)


def losses(hp, outputs, mel_targets):
    """The original's: MSE of decoder and postnet mels, L1 of the decoder mels, L2 on the weights l2_regularized names."""
    with tf.name_scope("losses"):
        decoder = tf.reduce_mean(tf.square(mel_targets - outputs.decoder_mels))
        post = tf.reduce_mean(tf.square(mel_targets - outputs.postnet_mels))
        l1 = tf.reduce_mean(tf.abs(mel_targets - outputs.decoder_mels))
        weights = [v for v in tf.trainable_variables(MODEL_SCOPE + "/") if l2_regularized(v.op.name)]
        regularization = hp.tacotron_reg_weight * tf.add_n([tf.nn.l2_loss(v) for v in weights])
        return Losses(decoder + post + l1 + regularization, decoder, post, l1, regularization)


LR_SCALINGS = {"none": lambda size: 1.0, "linear": float, "sqrt": math.sqrt}


def learning_rate_scale(hp, world_size):
    """The factor tacotron_lr_scaling gives ``world_size`` data-parallel processes (1.0 for one process)."""
    if hp.tacotron_lr_scaling not in LR_SCALINGS:
        raise HParamsError("tacotron_lr_scaling=%r: use one of %s" % (hp.tacotron_lr_scaling,
                                                                       ", ".join(sorted(LR_SCALINGS))))
    return LR_SCALINGS[hp.tacotron_lr_scaling](world_size)


def learning_rate(hp, global_step, world_size=1):
    """Exponential decay from tacotron_start_decay, floored at tacotron_final_learning_rate.

    With several processes the whole schedule is multiplied by learning_rate_scale, reached linearly over
    tacotron_lr_warmup_steps from the 1-process rate (Goyal et al. 2017): early Adam moments are noisy.
    """
    step = tf.cast(global_step, tf.float32)
    decayed = hp.tacotron_initial_learning_rate * tf.pow(
        hp.tacotron_decay_rate, tf.maximum(step - hp.tacotron_start_decay, 0.0) / hp.tacotron_decay_steps)
    rate = tf.maximum(decayed, hp.tacotron_final_learning_rate)
    scale = learning_rate_scale(hp, world_size)
    if scale == 1.0:
        return rate
    ramp = tf.minimum(step / float(max(hp.tacotron_lr_warmup_steps, 1)), 1.0)
    return rate * (1.0 + (scale - 1.0) * ramp)


def teacher_forcing_ratio(hp, global_step):
    """Cosine decay from the initial to the final ratio over the decay window."""
    step = tf.cast(global_step, tf.float32)
    progress = tf.clip_by_value(
        (step - hp.tacotron_teacher_forcing_start_decay) / hp.tacotron_teacher_forcing_decay_steps, 0.0, 1.0)
    init, final = hp.tacotron_teacher_forcing_init_ratio, hp.tacotron_teacher_forcing_final_ratio
    return final + (init - final) * 0.5 * (1.0 + tf.cos(math.pi * progress))


def train_op(hp, loss, global_step, wrap_optimizer=None, world_size=1):
    """Adam with clipped gradients; ``wrap_optimizer`` lets a device add mixed precision and gradient averaging."""
    lr = learning_rate(hp, global_step, world_size)
    optimizer = tf.train.AdamOptimizer(lr, hp.tacotron_adam_beta1, hp.tacotron_adam_beta2,
                                       hp.tacotron_adam_epsilon)
    if wrap_optimizer is not None:
        optimizer = wrap_optimizer(optimizer)
    variables = tf.trainable_variables()
    gradients = [g for g, _ in optimizer.compute_gradients(loss, variables)]
    clipped, grad_norm = tf.clip_by_global_norm(gradients, hp.tacotron_clip_norm)
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        op = optimizer.apply_gradients(zip(clipped, variables), global_step=global_step)
    return op, lr, grad_norm
