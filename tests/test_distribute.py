"""The distribution seam without processes: learning-rate scaling, data shards, the NPU tree's choice of
collectives and its optimizer nesting (adapter stand-ins), and npu_bridge's 'load hccl lib error'."""
import builtins
import logging
import sys
import types

import numpy as np
import pytest

from common.config import hparams
from common.data.dataset import BatchSource
from common.model import network
from common.tf_compat import tf
from common.training import distribute, loop
from npu_training import distribute as npu_distribute
from npu_training import session as npu_session
from npu_training import train as npu_train


def _learning_rates(hp, world_size, steps):
    with tf.Graph().as_default():
        step = tf.placeholder(tf.int64, [])
        rate = network.learning_rate(hp, step, world_size)
        with tf.Session() as sess:
            return [float(sess.run(rate, {step: s})) for s in steps]


@pytest.mark.parametrize("scaling, factor", [("none", 1.0), ("linear", 4.0), ("sqrt", 2.0)])
def test_learning_rate_scales_with_world_size_after_the_warmup(scaling, factor):
    hp = hparams.resolve("synthetic", None, "tacotron_lr_scaling=%s,tacotron_lr_warmup_steps=100" % scaling)
    base = _learning_rates(hp, 1, [0, 50, 100, 150])
    scaled = _learning_rates(hp, 4, [0, 50, 100, 150])
    assert scaled[0] == pytest.approx(base[0])
    assert scaled[1] == pytest.approx(base[1] * (1 + (factor - 1) * 0.5), rel=1e-5)
    assert scaled[2:] == pytest.approx([b * factor for b in base[2:]], rel=1e-5)


def test_one_process_keeps_the_unscaled_schedule_and_a_bad_policy_is_refused():
    hp = hparams.resolve("synthetic")
    assert hp.tacotron_lr_scaling == "sqrt"
    assert _learning_rates(hp, 1, [0, 3000]) == pytest.approx(
        _learning_rates(hparams.resolve("synthetic", None, "tacotron_lr_scaling=none"), 1, [0, 3000]))
    with pytest.raises(hparams.HParamsError, match="tacotron_lr_scaling='cubic': use one of linear, none, sqrt"):
        network.learning_rate_scale(hparams.resolve("synthetic", None, "tacotron_lr_scaling=cubic"), 2)


def _windows(data, hp, shard_index, shard_count, seed, batches=6):
    source = BatchSource(data, "train", hp, 8, seed=seed, workers=1, shard_index=shard_index,
                         shard_count=shard_count)
    seen = []
    fill = source._fill

    def recording(clip, start, *rest):
        problem = fill(clip, start, *rest)
        if not problem:
            seen.append((clip.id, start))
        return problem

    source._fill = recording
    for k in range(batches):
        source.make_batch(k)
    return seen


def test_ranks_read_disjoint_deterministic_windows_and_one_process_reads_as_before(synthetic_data, synthetic_hp):
    shards = [distribute.Distribution().data_shard(5339)]
    assert shards[0] == (0, 1, 5339)
    ranks = []
    for rank in (0, 1):
        spread = distribute.Distribution()
        spread.rank, spread.size = rank, 2
        shard = spread.data_shard(5339)
        ranks.append(_windows(synthetic_data, synthetic_hp, shard.index, shard.count, shard.seed))
        assert ranks[-1] == _windows(synthetic_data, synthetic_hp, shard.index, shard.count, shard.seed)
    assert not set(ranks[0]) & set(ranks[1])
    assert all(start % 2 == rank for rank in (0, 1) for _, start in ranks[rank])
    whole = BatchSource(synthetic_data, "train", synthetic_hp, 8, seed=5339, workers=1)
    first = whole.make_batch(0)["mel_targets"]
    unsharded = BatchSource(synthetic_data, "train", synthetic_hp, 8, seed=5339, workers=1, shard_index=0,
                            shard_count=1)
    np.testing.assert_array_equal(first, unsharded.make_batch(0)["mel_targets"])


@pytest.fixture
def adapter(monkeypatch):
    """Stand-ins for the adapter modules the NPU tree imports; records what was built."""
    made = {}

    class Distributed(object):
        def __init__(self, optimizer):
            self.inner = optimizer

    class LossScale(object):
        def __init__(self, opt, manager, is_distributed=False):
            self.inner, self.is_distributed = opt, is_distributed

    modules = {}
    for name in ("npu_bridge", "npu_bridge.estimator", "npu_bridge.estimator.npu",
                 "npu_bridge.estimator.npu.npu_optimizer", "npu_bridge.estimator.npu.npu_loss_scale_manager",
                 "npu_bridge.estimator.npu.npu_loss_scale_optimizer"):
        modules[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, modules[name])
    modules["npu_bridge.estimator.npu.npu_optimizer"].NPUDistributedOptimizer = Distributed
    modules["npu_bridge.estimator.npu.npu_loss_scale_manager"].ExponentialUpdateLossScaleManager = (
        lambda **kwargs: made.setdefault("manager", kwargs))
    modules["npu_bridge.estimator.npu.npu_loss_scale_optimizer"].NPULossScaleOptimizer = LossScale
    monkeypatch.delenv("LIP2WAV_EMULATE", raising=False)
    return made


def _hccl_env(tmp_path):
    table = tmp_path / "rank_table.json"
    table.write_text("{}")
    return {"RANK_ID": "1", "RANK_SIZE": "2", "RANK_TABLE_FILE": str(table), "JOB_ID": "job",
            "DEVICE_ID": "5", "ASCEND_DEVICE_ID": "1"}


def test_npu_loss_scaling_sits_outside_the_distributed_optimizer(adapter, tmp_path, monkeypatch):
    environ = _hccl_env(tmp_path)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    stack = npu_train.stack(npu_session.NpuOptions(loss_scaling=True), environ)
    hccl = stack.distribution()
    assert isinstance(hccl, npu_distribute.HcclDistribution)
    assert (hccl.rank, hccl.size, hccl.local_rank, hccl.is_chief) == (1, 2, 1, False)
    opt = object()
    wrapped = loop.optimizer_wrapper(stack, hccl)(opt)
    assert type(wrapped).__name__ == "LossScale" and wrapped.is_distributed
    assert type(wrapped.inner).__name__ == "Distributed" and wrapped.inner.inner is opt


def test_forced_emulation_skips_npu_loss_scaling_even_where_npu_bridge_imports(adapter, monkeypatch):
    monkeypatch.setenv("LIP2WAV_EMULATE", "1")
    opt = object()
    assert npu_train.stack(npu_session.NpuOptions(loss_scaling=True)).wrap_optimizer(opt) is opt
    assert "manager" not in adapter


@pytest.mark.parametrize("extra, message", [
    ({"LIP2WAV_EMULATE": "1"}, "needs the Gloo rendezvous the launcher serves"),
    ({"JOB_ID": ""}, "JOB_ID is unset"),
])
def test_npu_distribution_names_what_a_rank_is_missing(adapter, tmp_path, monkeypatch, extra, message):
    environ = dict(_hccl_env(tmp_path), **extra)
    with pytest.raises(distribute.DistributionError, match=message):
        npu_train.stack(npu_session.NpuOptions(), environ).distribution()


def test_one_npu_process_is_the_single_process_default():
    assert type(npu_train.stack(npu_session.NpuOptions(), {}).distribution()) is distribute.Distribution


def test_npu_bridge_without_cann_hccl_is_unavailable_with_one_line(monkeypatch, caplog):
    real_import = builtins.__import__

    def failing(name, *args, **kwargs):
        if name == "npu_bridge":
            raise ValueError("load hccl lib error")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "npu_bridge", raising=False)
    monkeypatch.setattr(builtins, "__import__", failing)
    with caplog.at_level(logging.WARNING, logger=npu_session.LOG.name):
        assert npu_session.npu_bridge_available() is False
    assert len(caplog.records) == 1 and "load hccl lib error" in caplog.records[0].getMessage()
    assert "set_env.sh" in caplog.records[0].getMessage()


def test_resume_with_another_world_size_is_refused_with_the_recorded_one(tmp_path):
    hp = hparams.resolve("synthetic")
    two = distribute.Distribution()
    two.size = 2
    loop._save_world_size(str(tmp_path), hp, two)
    loop._check_world_size(str(tmp_path), hp, two, checkpoint="model.ckpt-2")
    with pytest.raises(loop.TrainingError, match=r"trained by 2 process\(es\) \(global batch 16\) and this run has 1"):
        loop._check_world_size(str(tmp_path), hp, distribute.Distribution(), checkpoint="model.ckpt-2")
    loop._check_world_size(str(tmp_path), hp, distribute.Distribution(), checkpoint=None)
