"""NPU graph lint on small hand-built graphs: what the Ascend compiler rejects is flagged, a static loop is clean."""
import numpy as np
import pytest

from common.tf_compat import tf
from npu_training import lint

BATCH, STEPS, WIDTH = 4, 5, 2


def lint_built(build, **kwargs):
    with tf.Graph().as_default() as graph:
        build()
    return lint.lint_graph(graph, **kwargs)


def ops_flagged(findings):
    return sorted({f.op for f in findings})


def static_decode_loop():
    """The NPU-style loop: fixed iteration count, tf.slice with a static batch, fixed-size TensorArray."""
    x = tf.placeholder(tf.float32, [BATCH, STEPS * WIDTH], name="x")
    outputs = tf.TensorArray(tf.float32, size=STEPS, element_shape=[BATCH, WIDTH])

    def body(step, state, outputs):
        frame = tf.slice(x, [0, step * WIDTH], [BATCH, WIDTH])
        state = tf.tanh(state + frame)
        return step + 1, state, outputs.write(step, state)

    with tf.variable_scope("decoder"):
        _, state, outputs = tf.while_loop(lambda step, *_: step < STEPS, body,
                                          [tf.constant(0), tf.zeros([BATCH, WIDTH]), outputs])
    return tf.identity(outputs.stack(), name="mels"), state


def test_static_fixed_iteration_loop_is_clean():
    assert lint_built(static_decode_loop) == []


def test_static_loop_gradient_is_clean():
    def build():
        mels, _ = static_decode_loop()
        weight = tf.Variable(tf.ones([WIDTH]), name="w")
        tf.gradients(tf.reduce_sum(mels * weight), [weight])
    assert lint_built(build) == []


def test_gradient_of_a_broadcast_inside_the_loop_is_clean():
    """TF 1.15 differentiates the broadcast with BroadcastGradientArgs of two constant shapes, of unknown
    output shape, inside the gradient loop: the compiler folds it, so the lint must not flag it."""
    def build():
        x = tf.placeholder(tf.float32, [BATCH, STEPS * WIDTH], name="x")
        weight = tf.Variable(tf.ones([WIDTH]), name="w")

        def body(step, state):
            return step + 1, tf.tanh(state * weight + tf.slice(x, [0, step * WIDTH], [BATCH, WIDTH]))

        with tf.variable_scope("decoder"):
            _, state = tf.while_loop(lambda step, _: step < STEPS, body, [tf.constant(0), tf.zeros([BATCH, WIDTH])])
        tf.gradients(tf.reduce_sum(state), [weight])
    assert lint_built(build) == []


def test_loop_values_of_constants_only_are_folded_others_flagged():
    def build():
        x = tf.placeholder(tf.float32, [BATCH, WIDTH])

        def body(step, acc):
            folded = tf.raw_ops.BroadcastGradientArgs(s0=tf.constant([BATCH, WIDTH]), s1=tf.constant([WIDTH]))
            unique, _ = tf.unique(tf.constant([1, 1, 2]), name="unique_of_constants")
            data = tf.raw_ops.BroadcastGradientArgs(s0=tf.shape(tf.where(x > 0)), s1=tf.constant([2]),
                                                    name="data_dependent")
            drawn = tf.boolean_mask(tf.constant([1.0, 2.0, 3.0]), tf.random.uniform([3]) > 0.5, name="drawn")
            extra = tf.reduce_sum(tf.cast(folded[0], tf.float32)) + tf.reduce_sum(tf.cast(unique, tf.float32))
            extra += tf.reduce_sum(tf.cast(data[0], tf.float32)) + tf.reduce_sum(drawn)
            return step + 1, acc + extra

        with tf.variable_scope("decoder"):
            tf.while_loop(lambda step, _: step < STEPS, body, [tf.constant(0), tf.zeros([])])
    flagged = {f.node for f in lint_built(build)}
    assert "decoder/while/data_dependent" in flagged
    assert any(name.startswith("decoder/while/drawn/") for name in flagged)  # a random draw is never folded
    assert not [name for name in flagged if "unique_of_constants" in name or name.endswith("/BroadcastGradientArgs")]


def test_saver_ops_are_not_flagged():
    def build():
        tf.Variable(tf.zeros([BATCH]), name="w")
        tf.train.Saver(sharded=True)
    assert lint_built(build) == []


def test_py_func_is_flagged():
    def build():
        x = tf.placeholder(tf.float32, [BATCH, 3])
        tf.py_func(lambda a: a * 2, [x], tf.float32, name="split_towers")
    findings = lint_built(build)
    assert [(f.node, f.op) for f in findings] == [("split_towers", "PyFunc")]
    assert "tf.py_func" in findings[0].reason


def test_fifo_queue_is_flagged():
    def build():
        queue = tf.FIFOQueue(4, [tf.float32], shapes=[[BATCH, 3]], name="input_queue")
        queue.enqueue([tf.placeholder(tf.float32, [BATCH, 3])])
        queue.dequeue()
        queue.close(cancel_pending_enqueues=True)
    assert ops_flagged(lint_built(build)) == ["FIFOQueueV2", "QueueCloseV2", "QueueDequeueV2", "QueueEnqueueV2"]


def test_dynamic_size_tensor_array_loop_is_flagged():
    def build():
        x = tf.placeholder(tf.float32, [BATCH, STEPS * WIDTH])
        outputs = tf.TensorArray(tf.float32, size=0, dynamic_size=True)

        def body(step, outputs):
            return step + 1, outputs.write(step, tf.slice(x, [0, step * WIDTH], [BATCH, WIDTH]))

        with tf.variable_scope("decoder"):
            _, outputs = tf.while_loop(lambda step, _: step < tf.shape(x)[1] // WIDTH, body,
                                       [tf.constant(0), outputs])
        outputs.stack()
    findings = lint_built(build)
    assert "TensorArrayV3" in ops_flagged(findings)
    assert any("dynamic_size" in f.reason for f in findings)


def test_shape_driven_accumulator_loop_is_flagged():
    def build():
        x = tf.placeholder(tf.float32, [BATCH, WIDTH])

        def body(step, acc):
            return step + 1, tf.concat([acc, x], axis=0)

        with tf.variable_scope("decoder"):
            tf.while_loop(lambda step, _: step < STEPS, body, [tf.constant(0), tf.zeros([0, WIDTH])],
                          shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, WIDTH])])
    findings = lint_built(build)
    assert findings
    assert all(f.node.startswith("decoder/while/") for f in findings)
    assert any(f.op == "ConcatV2" and "static shapes" in f.reason for f in findings)


def test_decode_loop_scope_selects_loops():
    def build():
        with tf.variable_scope("model"):
            static_decode_loop()

    assert lint_built(build, decode_loop_scope="model/decoder/") == []
    (finding,) = lint_built(build, decode_loop_scope="nowhere/")
    assert "no while loop found" in finding.reason


def test_dynamic_placeholder_is_flagged():
    def build():
        tf.placeholder(tf.float32, [None, 3], name="inputs")
    assert [(f.node, f.op) for f in lint_built(build)] == [("inputs", "Placeholder")]


def test_host_only_ops_are_flagged():
    def build():
        tf.print(tf.constant(1.0), name="debug_print")
    assert "PrintV2" in ops_flagged(lint_built(build))


def test_summaries_are_flagged_only_in_inference_graphs():
    def build():
        tf.summary.scalar("loss", tf.constant(1.0))
    assert lint_built(build) == []
    assert ops_flagged(lint_built(build, inference=True)) == ["ScalarSummary"]


def test_loop_without_output_shapes_asks_for_them():
    with tf.Graph().as_default() as graph:
        static_decode_loop()
    (finding,) = lint.lint_graph_def(graph.as_graph_def())
    assert finding.node == "decoder/while/"
    assert "add_shapes=True" in finding.reason


@pytest.mark.parametrize("as_text, name", [(True, "graph.pbtxt"), (False, "graph.pb")])
def test_cli(tmp_path, capsys, as_text, name):
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, [BATCH, 3])
        tf.py_func(np.sum, [x], tf.float32, name="host_sum")
    tf.io.write_graph(graph.as_graph_def(add_shapes=True), str(tmp_path), name, as_text=as_text)
    assert lint.main(["--graph", str(tmp_path / name)]) == 1
    assert "host_sum\tPyFunc\t" in capsys.readouterr().out

    with tf.Graph().as_default() as graph:
        static_decode_loop()
    tf.io.write_graph(graph.as_graph_def(add_shapes=True), str(tmp_path), name, as_text=as_text)
    assert lint.main(["--graph", str(tmp_path / name), "--decode-loop-scope", "decoder/"]) == 0


def test_cli_unreadable_file(tmp_path, capsys):
    bad = tmp_path / "graph.pb"
    bad.write_bytes(b"\xff\x00 not a graph")
    assert lint.main(["--graph", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert lint.main(["--graph", str(tmp_path / "missing.pb")]) == 2
