"""Speed tooling: the profile's FLOP count and part table, the loop kernel gradient, Ascend profiling keys."""
import json

import numpy as np
import pytest

from common.model import layers
from common.tf_compat import tf
from export.tools import profile
from npu_training import session as npu_session


def traced(fetch, graph):
    with tf.Session(graph=graph) as sess:
        sess.run(tf.global_variables_initializer())
        metadata = tf.RunMetadata()
        sess.run(fetch, options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), run_metadata=metadata)
    return profile.op_stats(metadata.step_stats, graph)


def test_flops_count_loop_iterations_dynamic_shapes_and_conv3d_gradients():
    graph = tf.Graph()
    with graph.as_default():
        batch = tf.placeholder_with_default(tf.ones([3, 4]), [None, 4])
        weights = tf.Variable(tf.ones([4, 4]))
        _, looped = tf.while_loop(lambda i, x: i < 5, lambda i, x: (i + 1, tf.matmul(x, weights)), (0, batch))
        volume = tf.Variable(tf.ones([2, 6, 8, 8, 3]))
        kernel = tf.Variable(tf.ones([3, 3, 3, 3, 5]))
        conv = tf.nn.conv3d(volume, kernel, [1, 1, 1, 1, 1], "SAME")
        loss = tf.reduce_sum(looped) + tf.reduce_sum(conv * conv)
        fetch = tf.gradients(loss, [weights, volume, kernel])
    ops = traced(fetch, graph)
    conv_flops = 2 * (2 * 6 * 8 * 8 * 5) * (3 * 3 * 3 * 3)
    assert sum(op.flops for op in ops if op.op_type.startswith("Conv3D")) == 3 * conv_flops
    # 5 forward products of [3, 4] x [4, 4]; the loop's batch is dynamic, so shapes come from the trace.
    forward = [op.flops for op in ops if op.op_type == "MatMul" and not op.name.startswith("gradients/")]
    assert sum(forward) == 5 * 2 * 3 * 4 * 4


def test_parts_follow_name_scopes_and_gradients():
    scope = "Tacotron_model/inference/"
    assert profile.part_of(scope + "encoder_convolutions/conv_layer_1_encoder_convolutions/conv3d/Conv3D") == (
        "encoder 3D convs", "fwd")
    assert profile.part_of("gradients/" + scope + "encoder_LSTM/bidirectional_rnn/fw/while/MatMul_grad/MatMul") == (
        "encoder BiLSTM", "bwd")
    assert profile.part_of("gradients/" + scope + "decoder/while/concat_grad/Slice") == ("decoder loop", "bwd")
    assert profile.part_of(scope + "memory_layer/Tensordot/MatMul") == ("decoder loop", "fwd")
    assert profile.part_of(scope + "postnet_projection/projection_postnet_projection/BiasAdd") == ("postnet", "fwd")
    assert profile.part_of("losses/Mean") == ("losses", "fwd")
    assert profile.part_of("Adam/update_" + scope + "decoder/decoder_prenet/dense_1/kernel/ApplyAdam") == (
        "optimizer update", "fwd")
    assert profile.part_of("feeder/input_queue_Dequeue") == ("feeder/input", "fwd")


def test_wall_shares_split_overlaps_and_add_up_to_the_covered_time():
    # [0, 100] and [50, 150] overlap for 50; a zero-length op inside takes nothing; [200, 210] runs alone.
    shares = profile.wall_shares([(0, 100), (50, 150), (60, 60), (200, 210)])
    assert shares == [75.0, 75.0, 0.0, 10.0]
    assert sum(shares) == 150 + 10


def test_summary_shares_are_of_wall_time_and_achieved_over_peak():
    ops = [profile.OpRun("Tacotron_model/inference/postnet_convolutions/conv0/Conv2D", "Conv2D", 400, 300, 6e9),
           profile.OpRun("gradients/Tacotron_model/inference/postnet_convolutions/x", "Mul", 200, 100, 0)]
    summary = profile.summarise(ops, step_seconds=2.0, peak=1e10)
    assert [(p["part"], p["direction"], p["share"], p["op_seconds"]) for p in summary["parts"]] == [
        ("postnet", "fwd", 0.75, 400e-6), ("postnet", "bwd", 0.25, 200e-6)]
    assert summary["flops_per_step"] == 6e9 and summary["achieved_over_peak"] == pytest.approx(0.3)
    assert summary["seconds_at_matmul_peak"] == pytest.approx(0.6)


@pytest.mark.parametrize("batch_major", [False, True])
def test_loop_kernel_probe_gives_the_plain_gradient(batch_major):
    """A loop using stop_gradient(kernel) + the probe gets the kernel gradient plain autodiff gets."""
    steps, batch, depth, out = 6, 3, 4, 5
    rng = np.random.RandomState(0)
    inputs = tf.constant(rng.randn(steps, batch, depth).astype(np.float32))
    kernel = tf.constant(rng.randn(depth, out).astype(np.float32))

    def run(use_probe):
        recorded = []
        leading = [batch, steps] if batch_major else [steps, batch]
        probe = layers.loop_kernel_probe(kernel, tf.constant(leading), recorded)
        probe_by_step = tf.transpose(probe, [1, 0, 2]) if batch_major else probe

        def body(step, h, seen):
            x = inputs[step] + h[:, :depth]
            z = tf.matmul(x, tf.stop_gradient(kernel)) + probe_by_step[step] if use_probe else tf.matmul(x, kernel)
            return step + 1, tf.tanh(z), seen.write(step, x)
        _, h, seen = tf.while_loop(lambda step, *_: step < steps, body,
                                   (0, tf.zeros([batch, out]), tf.TensorArray(tf.float32, size=steps)))
        stacked = seen.stack()
        recorded.append(tf.transpose(stacked, [1, 0, 2]) if batch_major else stacked)
        return tf.gradients(tf.reduce_sum(h * h), kernel)[0]
    with tf.Session() as sess:
        with_probe, plain = sess.run([run(True), run(False)])
    np.testing.assert_allclose(with_probe, plain, rtol=1e-5, atol=1e-5)


def test_ascend_profiling_keys_only_on_the_npu_optimizer(tmp_path):
    config = npu_session.with_profiling(npu_session.npu_optimizer_config(), str(tmp_path / "ascend"))
    params = config.graph_options.rewrite_options.custom_optimizers[0].parameter_map
    assert params["profiling_mode"].b
    options = json.loads(params["profiling_options"].s.decode())
    assert options["output"] == str(tmp_path / "ascend") and options["task_trace"] == "on"
    cpu = npu_session.with_profiling(npu_session.cpu_config(), str(tmp_path / "unused"))
    assert not cpu.graph_options.rewrite_options.custom_optimizers
