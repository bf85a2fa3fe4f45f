"""GPU target vs NPU target: same checkpoint and batch give the same mels and loss; checkpoints move between targets.

Both decode loops draw their randomness from stateless ops keyed by (global step, salt, decoder
step), so in fp32 on the CPU they must agree to float rounding, not merely statistically.
"""
import json
import os

import numpy as np
import pytest

from common.config import hparams
from common.model import network as model
from common.training import loop as training
from common.tf_compat import tf
from export.graph import build_inference_graph
from gpu_training import train as gpu_train
from npu_training import train as npu_train

ENTRYPOINTS = {"gpu": gpu_train, "npu": npu_train}
BATCH = 2
SMALL = "tacotron_batch_size=%d,T=15,mel_step_size=40" % BATCH
TOLERANCE = 1e-5
# Mid-way through the synthetic preset's teacher-forcing decay (100 + 400 steps), so the per-step
# coin picks both the target and the prediction and the GPU and NPU decode loops must agree on every toss.
START_STEP = 250


class RepeatSource(object):
    """Yields the same batch forever, like a BatchSource that always picks the same windows."""

    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch

    def close(self):
        pass


@pytest.fixture(scope="module")
def hp():
    return hparams.resolve("synthetic", overrides=SMALL)


@pytest.fixture(scope="module")
def batch(hp):
    rng = np.random.RandomState(0)
    return {"inputs": rng.rand(BATCH, hp.T, hp.img_size, hp.img_size, 3).astype(np.float32),
            "mel_targets": rng.uniform(-4, 4, (BATCH, hp.mel_step_size, hp.num_mels)).astype(np.float32),
            "speaker_embeddings": np.zeros((BATCH, hp.speaker_embedding_dim), np.float32)}


def training_graph(target, hp, batch):
    """The target's real training graph (its feeder, decode loop and optimizer wrapper), fed ``batch``."""
    backend = ENTRYPOINTS[target].BACKEND
    return training.TrainingGraph(backend, backend.stack(backend.options), hp, RepeatSource(batch))


def one_training_step(graph, sess):
    graph.feeder.start(sess)
    try:
        values = sess.run({"train": graph.train_op, "scalars": graph.scalars}, graph.feeder.feed_dict())
    finally:
        graph.feeder.stop()
    values["step"] = sess.run(graph.global_step)
    return values


@pytest.fixture(scope="module")
def gpu_step(hp, batch, tmp_path_factory):
    """Fresh variables (with Adam slots) at global step START_STEP, saved; then one training step of the GPU target."""
    path = str(tmp_path_factory.mktemp("parity") / "model.ckpt")
    with tf.Graph().as_default():
        graph = training_graph("gpu", hp, batch)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(tf.assign(graph.global_step, START_STEP))
            checkpoint = graph.saver.save(sess, path, global_step=START_STEP)
            return checkpoint, one_training_step(graph, sess)


@pytest.fixture(scope="module")
def checkpoint(gpu_step):
    return gpu_step[0]


def run_restored(checkpoint, fetches, feed):
    with tf.Session() as sess:
        tf.train.Saver().restore(sess, checkpoint)
        return sess.run(fetches, feed)


def teacher_forced(target, hp, batch, checkpoint):
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, batch["inputs"].shape)
        targets = tf.placeholder(tf.float32, batch["mel_targets"].shape)
        outputs = model.Lip2Wav(hp, ENTRYPOINTS[target].BACKEND.decode_loop).build(
            inputs, tf.constant(batch["speaker_embeddings"]), targets, is_training=False)
        return run_restored(checkpoint, outputs._asdict(), {inputs: batch["inputs"], targets: batch["mel_targets"]})


def free_running(target, hp, batch, checkpoint):
    with tf.Graph().as_default():
        inputs, mels, alignments = build_inference_graph(hp, target, BATCH)
        return run_restored(checkpoint, {"mels": mels, "alignments": alignments}, {inputs: batch["inputs"]})


def assert_close(gpu, npu):
    assert sorted(gpu) == sorted(npu)
    for key in gpu:
        assert gpu[key].shape == npu[key].shape, key
        difference = float(np.max(np.abs(gpu[key] - npu[key])))
        assert difference <= TOLERANCE, "%s differs by %g" % (key, difference)


def test_teacher_forced_decoders_agree(hp, batch, checkpoint):
    gpu, npu = [teacher_forced(target, hp, batch, checkpoint) for target in ("gpu", "npu")]
    assert gpu["postnet_mels"].shape == (BATCH, hp.mel_step_size, hp.num_mels)
    assert_close(gpu, npu)


def test_free_running_inference_graphs_agree(hp, batch, checkpoint):
    gpu, npu = [free_running(target, hp, batch, checkpoint) for target in ("gpu", "npu")]
    assert gpu["mels"].shape == (BATCH, hp.mel_step_size, hp.num_mels)
    assert_close(gpu, npu)


def test_one_training_step_gives_the_same_loss(hp, batch, gpu_step):
    checkpoint, gpu = gpu_step
    with tf.Graph().as_default():
        graph = training_graph("npu", hp, batch)
        with tf.Session() as sess:
            graph.saver.restore(sess, checkpoint)
            npu = one_training_step(graph, sess)
    assert gpu["step"] == npu["step"] == START_STEP + 1
    assert 0.0 < gpu["scalars"]["teacher_forcing_ratio"] < 1.0
    for name in ("loss", "decoder_loss", "postnet_loss", "l1_loss", "gradient_norm", "learning_rate"):
        assert gpu["scalars"][name] == pytest.approx(npu["scalars"][name], rel=TOLERANCE, abs=TOLERANCE), name


def run_target(target, data, run_dir, steps):
    argv = ["--data", data, "--run-dir", run_dir, "--steps", str(steps), "--checkpoint-every", "2",
            "--log-every", "1", "--workers", "1", "--hparams", SMALL]
    assert ENTRYPOINTS[target].main(argv) == 0
    with open(os.path.join(run_dir, "run_summary.json")) as f:
        summary = json.load(f)
    assert summary["target"] == target and summary["preset"] == "synthetic"
    assert summary["first_step"] == 1 and summary["last_step"] == steps
    assert summary["segments"][-1]["first_step"] == steps - 1
    assert training.checkpoint_step(training.latest_checkpoint(run_dir)) == steps
    return summary, layout(run_dir)


def layout(run_dir):
    """Run-dir contents, with the per-run part of event file names (host, time) blanked out."""
    names = set()
    for folder, _, files in os.walk(run_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(folder, name), run_dir)
            names.add("events.*" if name.startswith("events.out.tfevents.") else rel)
    return names


def written_at(step):
    """What a checkpoint at ``step`` adds to a run dir."""
    names = {"checkpoints/model.ckpt-%d.%s" % (step, ext) for ext in ("index", "meta", "data-00000-of-00001")}
    return names | {"plots/step-%d-mel.png" % step, "plots/step-%d-alignment.png" % step}


def test_checkpoints_move_between_targets_and_run_dirs_match(synthetic_data, tmp_path):
    """GPU 2 steps -> NPU resumes to 4 -> GPU resumes to 6, in one run dir, each adding the same files."""
    run_dir = str(tmp_path / "run")
    gpu_summary, gpu_files = run_target("gpu", synthetic_data, run_dir, 2)
    npu_summary, npu_files = run_target("npu", synthetic_data, run_dir, 4)
    _, last_files = run_target("gpu", synthetic_data, run_dir, 6)
    assert npu_files == gpu_files | written_at(4)
    assert last_files == npu_files | written_at(6)
    assert sorted(gpu_summary) == sorted(npu_summary)
    with open(os.path.join(run_dir, "train_log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    assert all(sorted(r) == sorted(log[0]) and np.isfinite(r["loss"]) for r in log)
