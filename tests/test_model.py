import numpy as np
import pytest

from common.config import hparams
from common.model import network as model
from common.tf_compat import tf
from gpu_training.decoder import dynamic_decode_loop


def build_training_graph(hp, decode_loop, batch_size):
    inputs = tf.placeholder(tf.float32, [batch_size, hp.T, hp.img_size, hp.img_size, 3])
    targets = tf.placeholder(tf.float32, [batch_size, hp.mel_step_size, hp.num_mels])
    speakers = tf.zeros([batch_size, hp.speaker_embedding_dim])
    step = tf.train.get_or_create_global_step()
    outputs = model.Lip2Wav(hp, decode_loop).build(
        inputs, speakers, targets, is_training=True, global_step=step,
        teacher_forcing_ratio=model.teacher_forcing_ratio(hp, step))
    losses = model.losses(hp, outputs, targets)
    op, _, _ = model.train_op(hp, losses.total, step)
    return inputs, targets, outputs, losses, op


@pytest.mark.parametrize("preset", ["chem", "chess", "dl", "eh", "hs", "synthetic"])
def test_training_graph_builds_for_every_preset(preset):
    hp = hparams.resolve(preset)
    with tf.Graph().as_default():
        _, _, outputs, losses, _ = build_training_graph(hp, dynamic_decode_loop, hp.tacotron_batch_size)
        assert outputs.postnet_mels.shape.as_list()[2] == hp.num_mels
        assert outputs.alignments.shape.as_list()[2] == hp.T
        assert losses.total.shape.ndims == 0
        parameters = sum(np.prod(v.shape.as_list()) for v in tf.trainable_variables())
    if preset == "chess":
        assert parameters == 31588528  # the original's chess model (../shared/reference/original_lip2wav)


def test_one_training_step_runs_and_shapes_match_the_window(synthetic_hp):
    hp = synthetic_hp
    rng = np.random.RandomState(0)
    feed_inputs = rng.rand(2, hp.T, hp.img_size, hp.img_size, 3).astype(np.float32)
    feed_targets = rng.uniform(-4, 4, (2, hp.mel_step_size, hp.num_mels)).astype(np.float32)
    with tf.Graph().as_default():
        inputs, targets, outputs, losses, op = build_training_graph(hp, dynamic_decode_loop, 2)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            loss, _, mels, alignments = sess.run([losses.total, op, outputs.postnet_mels, outputs.alignments],
                                                 {inputs: feed_inputs, targets: feed_targets})
            step = sess.run(tf.train.get_global_step())
    assert np.isfinite(loss) and step == 1
    assert mels.shape == (2, hp.mel_step_size, hp.num_mels)
    assert alignments.shape == (2, hp.max_iters, hp.T)
    np.testing.assert_allclose(alignments.sum(axis=-1), 1.0, atol=1e-4)


def test_schedules_follow_the_reference_shapes():
    hp = hparams.resolve("default")
    steps = tf.placeholder(tf.int64, [])
    with tf.Session() as sess:
        lr = lambda s: sess.run(model.learning_rate(hp, steps), {steps: s})
        ratio = lambda s: sess.run(model.teacher_forcing_ratio(hp, steps), {steps: s})
        assert lr(0) == pytest.approx(1e-3) and lr(150000) == pytest.approx(1e-3)
        assert lr(200000) == pytest.approx(5e-4) and lr(10 ** 7) == pytest.approx(1e-5)
        start, length = hp.tacotron_teacher_forcing_start_decay, hp.tacotron_teacher_forcing_decay_steps
        assert ratio(0) == pytest.approx(1.0) and ratio(start + length // 2) == pytest.approx(0.5, abs=1e-4)
        assert ratio(start + length) == pytest.approx(0.0, abs=1e-6)
