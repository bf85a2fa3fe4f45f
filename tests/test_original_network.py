"""The network is the original Lip2Wav's: its variables, its L2 rule, and its outputs on the original's checkpoint.

Expected values come from outside this code: ../shared/reference/original_lip2wav/variables_chess.json (the
variables the original training graph creates) and ../shared/fixtures/original_lip2wav/ (a checkpoint the
original code wrote and the outputs that code computed from it; README there).
"""
import json
import os

import numpy as np
import pytest

from common.config import hparams
from common.model import network as model
from common.tf_compat import tf
from export import targets
from gpu_training.decoder import dynamic_decode_loop

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")
REFERENCE = os.path.join(SHARED, "reference", "original_lip2wav", "variables_chess.json")
FIXTURE = os.path.join(SHARED, "fixtures", "original_lip2wav")
TOLERANCE = 1e-4
CHESS_TRAINABLE_PARAMETERS = 31588528  # the original's count for the chess preset (reference README)

needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED),
                                  reason="../shared (the original's variable list and fixture) is absent")


@pytest.fixture(scope="module")
def reference():
    with open(REFERENCE) as f:
        return json.load(f)["variables"]


def variable_read_by(tensor):
    """The variable whose value ``tensor`` is (through reads and identities)."""
    op = tensor.op
    while op.type not in ("VariableV2", "VarHandleOp"):
        op = op.inputs[0].op
    return op.name


@pytest.fixture(scope="module")
def chess_training_graph():
    """Names, shapes, trainable flags and the L2 term's variables of the chess training graph (batch 2)."""
    hp = hparams.resolve("chess")
    graph = tf.Graph()
    with graph.as_default():
        inputs = tf.placeholder(tf.float32, [2, hp.T, hp.img_size, hp.img_size, 3])
        mel_targets = tf.placeholder(tf.float32, [2, hp.mel_step_size, hp.num_mels])
        step = tf.train.get_or_create_global_step()
        outputs = model.Lip2Wav(hp, dynamic_decode_loop).build(
            inputs, tf.zeros([2, hp.speaker_embedding_dim]), mel_targets, is_training=True, global_step=step,
            teacher_forcing_ratio=model.teacher_forcing_ratio(hp, step))
        losses = model.losses(hp, outputs, mel_targets)
        model.train_op(hp, losses.total, step)
        l2_inputs = {variable_read_by(op.inputs[0]) for op in graph.get_operations()
                     if op.type == "L2Loss" and op.name.startswith("losses/")}
        return {"model": {v.op.name: v.shape.as_list() for v in model.model_variables()},
                "all": {model.original_name(v.op.name): v.shape.as_list() for v in tf.global_variables()},
                "trainable": {v.op.name: v.shape.as_list() for v in tf.trainable_variables()},
                "l2": l2_inputs}


@needs_shared
def test_chess_variables_are_the_originals(reference, chess_training_graph):
    expected = {v["name"]: v["shape"] for v in reference
                if not v["optimizer_slot"] and v["name"].startswith(model.MODEL_SCOPE + "/inference/")}
    assert chess_training_graph["model"] == expected
    trainable = {v["name"]: v["shape"] for v in reference if v["trainable"]}
    assert chess_training_graph["trainable"] == trainable
    assert sum(int(np.prod(shape)) for shape in trainable.values()) == CHESS_TRAINABLE_PARAMETERS


@needs_shared
def test_optimizer_names_map_to_the_originals(reference, chess_training_graph):
    """Every variable of our training graph, through original_name, is one of the original's (slots included)."""
    assert chess_training_graph["all"] == {v["name"]: v["shape"] for v in reference}


@needs_shared
def test_l2_covers_exactly_what_the_original_regularises(reference, chess_training_graph):
    assert chess_training_graph["l2"] == {v["name"] for v in reference if v["l2_regularized"]}


def fixture_hparams():
    """The fixture's configuration: the chess preset, its overrides (names shared with the original's), no
    prenet dropout at inference (the fixture's main arrays were made with only that dropout off)."""
    with open(os.path.join(FIXTURE, "hparams.json")) as f:
        recorded = json.load(f)
    original = recorded["hparams"]
    hp = hparams.resolve("chess", overrides=dict(recorded["overrides"], prenet_dropout_at_inference=False))
    assert (hp.T, hp.img_size, hp.max_iters) == (original["T"], original["img_size"], original["max_iters"])
    return hp


@pytest.fixture(scope="module")
def fixture_arrays():
    with np.load(os.path.join(FIXTURE, "fixture.npz")) as arrays:
        return dict(arrays)


def run_fixture(target, teacher_forced, arrays):
    """The target's inference graph (BN in inference mode) restored by name from the original's checkpoint."""
    hp = fixture_hparams()
    frames = arrays["frames_uint8_bgr"].astype(np.float32) / 255
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, frames.shape)
        feed = {inputs: frames}
        mel_targets = None
        if teacher_forced:
            mel_targets = tf.placeholder(tf.float32, arrays["tf_mel_targets"].shape)
            feed[mel_targets] = arrays["tf_mel_targets"]
        outputs = model.Lip2Wav(hp, targets.backend(target).decode_loop).build(
            inputs, tf.constant(arrays["speaker_embeddings"]), mel_targets, is_training=False)
        saver = tf.train.Saver({model.original_name(v.op.name): v for v in model.model_variables()})
        with tf.Session() as sess:
            saver.restore(sess, os.path.join(FIXTURE, "tacotron_model.ckpt-3"))
            values = sess.run(outputs._asdict(), feed)
    prefix = "tf_" if teacher_forced else ""
    ours = {prefix + "encoder_output": values["encoder_output"], prefix + "decoder_output": values["decoder_mels"],
            prefix + "mel_output": values["postnet_mels"],
            prefix + "alignments": np.transpose(values["alignments"], [0, 2, 1])}
    if not teacher_forced:
        ours["conv_output"] = values["conv_output"]
    return ours


@needs_shared
@pytest.mark.parametrize("teacher_forced", [False, True], ids=["free-running", "teacher-forced"])
@pytest.mark.parametrize("target", ["gpu", "npu"])
def test_original_checkpoint_reproduces_the_originals_outputs(target, teacher_forced, fixture_arrays):
    ours = run_fixture(target, teacher_forced, fixture_arrays)
    differences = {}
    for name, value in ours.items():
        assert value.shape == fixture_arrays[name].shape, name
        differences[name] = float(np.max(np.abs(value - fixture_arrays[name])))
    print("target %s, largest differences: %s" % (target, differences))
    assert all(d <= TOLERANCE for d in differences.values()), differences
