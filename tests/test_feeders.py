"""Both device feeders: same batches in order, clean stop, worker errors surface instead of hanging."""
import threading
import types

import numpy as np
import pytest

from common.data.feeding import FeederError, batch_shapes
from common.tf_compat import tf
from export.tools.bench import bench_feeder
from gpu_training import feeder as gpu_feeder
from npu_training import feeder as npu_feeder

HP = types.SimpleNamespace(T=3, img_size=4, mel_step_size=6, num_mels=5, speaker_embedding_dim=2)
BATCH = 2
FEEDERS = [gpu_feeder.Feeder, npu_feeder.Feeder]
TIMEOUT = 60.0


class FakeSource(object):
    """Batch i is filled with the value i; optional failure, end, or gate before a batch."""

    def __init__(self, fail_at=None, end_at=None, shapes=None, gate=None):
        self.fail_at = fail_at
        self.end_at = end_at
        self.shapes = shapes or batch_shapes(HP, BATCH)
        self.gate = gate
        self.produced = 0
        self.closed = False

    def __iter__(self):
        return self

    def __next__(self):
        i = self.produced
        if i == self.fail_at:
            raise ValueError("clip 7: mels.npz is missing")
        if i == self.end_at:
            raise StopIteration
        if self.gate is not None:
            self.gate.wait()
        self.produced += 1
        return {key: np.full(shape, i, dtype=np.float32) for key, shape in self.shapes.items()}

    def close(self):
        self.closed = True


def run_with_timeout(fn):
    """Run fn on a thread; fail (instead of hanging the suite) if it does not finish."""
    outcome = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as error:  # handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "hung for %.0f s" % TIMEOUT
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def consume(feeder_class, source, steps):
    """The training loop's contract: run `steps` steps, return the first value of each batch tensor."""
    with tf.Graph().as_default() as graph:
        feeder = feeder_class(source, HP, BATCH)
        tensors = [feeder.inputs, feeder.mel_targets, feeder.speaker_embeddings]
        seen = []
        with tf.Session(graph=graph) as sess:
            feeder.start(sess)
            try:
                for _ in range(steps):
                    try:
                        values = sess.run(tensors, feed_dict=feeder.feed_dict())
                    except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
                        feeder.check()
                        raise
                    for value in values:
                        assert np.all(value == value.flat[0])
                    seen.append(tuple(float(v.flat[0]) for v in values))
            finally:
                feeder.stop()
        return feeder, seen


@pytest.mark.parametrize("feeder_class", FEEDERS)
def test_static_shapes(feeder_class):
    with tf.Graph().as_default():
        feeder = feeder_class(FakeSource(), HP, BATCH)
        assert feeder.inputs.shape.as_list() == [BATCH, HP.T, HP.img_size, HP.img_size, 3]
        assert feeder.mel_targets.shape.as_list() == [BATCH, HP.mel_step_size, HP.num_mels]
        assert feeder.speaker_embeddings.shape.as_list() == [BATCH, HP.speaker_embedding_dim]


def test_both_feeders_deliver_the_same_batches_in_order():
    results = []
    for feeder_class in FEEDERS:
        source = FakeSource()
        feeder, seen = run_with_timeout(lambda: consume(feeder_class, source, 5))
        assert seen == [(float(i),) * 3 for i in range(5)]
        assert feeder.batches_fed == 5
        assert source.closed
        results.append(seen)
    assert results[0] == results[1]


def test_npu_feeder_graph_has_no_queue_ops():
    with tf.Graph().as_default() as graph:
        npu_feeder.Feeder(FakeSource(), HP, BATCH)
        assert sorted(op.type for op in graph.get_operations()) == ["Placeholder"] * 3


def test_only_the_gpu_feeder_has_a_thread_of_its_own():
    """One producer (the source); the GPU tree keeps only the thread its blocking enqueue op needs."""
    threads = {}
    for feeder_class in FEEDERS:
        before = set(threading.enumerate())
        with tf.Graph().as_default() as graph:
            feeder = feeder_class(FakeSource(), HP, BATCH)
            with tf.Session(graph=graph) as sess:
                feeder.start(sess)
                threads[feeder_class] = sorted(t.name for t in set(threading.enumerate()) - before)
                feeder.stop()
    assert threads == {gpu_feeder.Feeder: ["gpu-feeder"], npu_feeder.Feeder: []}


@pytest.mark.parametrize("feeder_class", FEEDERS)
def test_worker_error_surfaces_in_the_loop(feeder_class):
    source = FakeSource(fail_at=3)
    with pytest.raises(ValueError, match="mels.npz is missing"):
        run_with_timeout(lambda: consume(feeder_class, source, 10))
    assert source.closed


@pytest.mark.parametrize("module", [gpu_feeder, npu_feeder])
def test_exhausted_source_is_an_error(module):
    with pytest.raises(FeederError, match="must iterate forever"):
        run_with_timeout(lambda: consume(module.Feeder, FakeSource(end_at=2), 5))


@pytest.mark.parametrize("module", [gpu_feeder, npu_feeder])
def test_wrong_batch_shape_names_the_fix(module):
    shapes = dict(batch_shapes(HP, BATCH), inputs=(BATCH + 1, HP.T, HP.img_size, HP.img_size, 3))
    with pytest.raises(FeederError, match="same hparams and batch size"):
        run_with_timeout(lambda: consume(module.Feeder, FakeSource(shapes=shapes), 2))


@pytest.mark.parametrize("feeder_class", FEEDERS)
def test_waiting_for_data_is_counted(feeder_class):
    gate = threading.Event()
    timer = threading.Timer(0.3, gate.set)
    timer.start()
    try:
        feeder, seen = run_with_timeout(lambda: consume(feeder_class, FakeSource(gate=gate), 2))
    finally:
        timer.cancel()
    assert len(seen) == 2
    assert feeder.wait_seconds > 0.0


def test_gpu_stop_joins_an_enqueue_blocked_on_a_full_queue():
    source = FakeSource()
    with tf.Graph().as_default() as graph:
        feeder = gpu_feeder.Feeder(source, HP, BATCH, capacity=2)
        with tf.Session(graph=graph) as sess:
            feeder.start(sess)
            sess.run(feeder.inputs, feed_dict=feeder.feed_dict())
            run_with_timeout(lambda: feeder.stop(timeout=TIMEOUT))
    assert not feeder._thread.is_alive()
    assert source.closed


@pytest.mark.parametrize("module", [gpu_feeder, npu_feeder])
def test_misuse_names_the_fix(module):
    with tf.Graph().as_default():
        feeder = module.Feeder(FakeSource(), HP, BATCH)
        with pytest.raises(FeederError, match="start the feeder first"):
            feeder.feed_dict()
        with tf.Session() as sess:
            feeder.start(sess)
            feeder.stop()
            with pytest.raises(FeederError, match="after stop"):
                feeder.feed_dict()


@pytest.mark.parametrize("feeder_class", FEEDERS)
def test_bench_feeder_reports_a_rate(feeder_class):
    result = run_with_timeout(lambda: bench_feeder(feeder_class, FakeSource(), HP, BATCH, steps=5, warmup=1))
    assert result["steps"] == 5
    assert result["batches_per_second"] > 0
    assert 0.0 <= result["wait_share"] <= 1.0
