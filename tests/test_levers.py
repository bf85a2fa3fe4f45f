"""The speed-lever tool: its variants reach the graph and the session they claim to change."""
import pytest

from common.config import hparams
from common.model import network
from common.tf_compat import tf
from export import targets
from export.tools import levers


def decode_loop_parallel_iterations(target, build_context):
    """parallel_iterations of the decoder's while loop when ``target``'s training graph is built in the context."""
    hp = hparams.resolve("synthetic", None, "tacotron_batch_size=2")
    graph = tf.Graph()
    with graph.as_default(), build_context():
        inputs = tf.placeholder(tf.float32, [2, hp.T, hp.img_size, hp.img_size, 3])
        mel_targets = tf.placeholder(tf.float32, [2, hp.mel_step_size, hp.num_mels])
        step = tf.train.get_or_create_global_step()
        network.Lip2Wav(hp, targets.backend(target).decode_loop).build(
            inputs, tf.zeros([2, hp.speaker_embedding_dim]), mel_targets, is_training=True, global_step=step,
            teacher_forcing_ratio=network.teacher_forcing_ratio(hp, step))
    return {op.get_attr("parallel_iterations") for op in graph.get_operations()
            if op.type == "Enter" and op.name.startswith("Tacotron_model/inference/decoder/")}


@pytest.mark.parametrize("target", ["gpu", "npu"])
def test_parallel_iterations_lever_reaches_both_decode_loops(target):
    assert decode_loop_parallel_iterations(target, levers.LEVERS["decode-parallel-iterations-1"].build_context) == {1}
    assert decode_loop_parallel_iterations(target, levers.LEVERS["decode-parallel-iterations-32"].build_context) == {32}


def test_config_levers_change_only_their_setting():
    backend = targets.backend("gpu")
    default = backend.stack(backend.options).session_config()
    for name, check in [("inter-op-1", lambda c: c.inter_op_parallelism_threads == 1),
                        ("grappler-off", lambda c: c.graph_options.rewrite_options.disable_meta_optimizer),
                        ("xla", lambda c: c.graph_options.optimizer_options.global_jit_level
                         == tf.OptimizerOptions.ON_1)]:
        config = backend.stack(backend.options).session_config()
        levers.LEVERS[name].edit_config(config)
        assert check(config) and not check(default)


def test_unknown_lever_names_the_choices():
    with pytest.raises(levers.UnknownLeverError, match="inter-op-1"):
        levers.parse_levers("xla,warp-drive")
    assert levers.parse_levers(" xla , inter-op-1") == ["xla", "inter-op-1"]
