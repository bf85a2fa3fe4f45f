"""Session configs of both trees: GPU switches, the NpuOptimizer options, rank env, CPU fallback."""
import logging
import sys
import types

import pytest

from common.tf_compat import RewriterConfig, tf
from gpu_training import session as gpu_session
from gpu_training import train as gpu_train
from npu_training import session as npu_session
from npu_training import train as npu_train


def test_rewriter_config_is_the_config_proto_field_type():
    assert type(tf.ConfigProto().graph_options.rewrite_options) is RewriterConfig


def test_gpu_config_defaults():
    config = gpu_session.session_config()
    assert config.gpu_options.allow_growth
    assert config.allow_soft_placement
    assert config.graph_options.optimizer_options.global_jit_level == tf.OptimizerOptions.DEFAULT
    assert config.graph_options.rewrite_options.auto_mixed_precision == RewriterConfig.DEFAULT


def test_gpu_config_xla_and_mixed_precision():
    config = gpu_session.session_config(mixed_precision=True, xla=True)
    assert config.graph_options.optimizer_options.global_jit_level == tf.OptimizerOptions.ON_1
    assert config.graph_options.rewrite_options.auto_mixed_precision == RewriterConfig.ON


def test_gpu_wrap_optimizer():
    with tf.Graph().as_default():
        opt = tf.train.AdamOptimizer(1e-3)
        assert gpu_session.wrap_optimizer(opt, mixed_precision=False) is opt
        try:
            wrapped = gpu_session.wrap_optimizer(opt, mixed_precision=True)
        finally:
            tf.train.experimental.disable_mixed_precision_graph_rewrite()
        assert wrapped is not opt
        assert hasattr(wrapped, "minimize")


def test_describe_device_without_gpu_logs_one_line(caplog):
    if tf.config.experimental.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    with caplog.at_level(logging.INFO, logger=gpu_session.LOG.name):
        assert gpu_session.describe_device() == "cpu"
    assert [r.getMessage() for r in caplog.records] == ["no GPU found: training on the CPU"]


def _npu_options(config):
    (custom,) = config.graph_options.rewrite_options.custom_optimizers
    assert custom.name == "NpuOptimizer"
    return custom.parameter_map


def test_npu_optimizer_config_parameter_map():
    config = npu_session.npu_optimizer_config()
    params = _npu_options(config)
    assert params["use_off_line"].b is True
    assert params["precision_mode"].s == b"allow_mix_precision"
    assert params["mix_compile_mode"].b is False
    assert params["iterations_per_loop"].i == 1
    assert params["enable_data_pre_proc"].b is False
    assert config.graph_options.rewrite_options.remapping == RewriterConfig.OFF
    assert config.graph_options.rewrite_options.memory_optimization == RewriterConfig.OFF


@pytest.mark.parametrize("mode", npu_session.PRECISION_MODES)
def test_npu_precision_modes(mode):
    assert _npu_options(npu_session.npu_optimizer_config(precision_mode=mode))["precision_mode"].s == mode.encode()


def test_npu_bad_precision_mode_lists_the_valid_ones():
    with pytest.raises(npu_session.NpuConfigError) as error:
        npu_session.npu_optimizer_config(precision_mode="fp8")
    for mode in npu_session.PRECISION_MODES:
        assert mode in str(error.value)


def test_npu_refuses_iterations_per_loop_above_one():
    with pytest.raises(npu_session.NpuConfigError, match="feed_dict feeder"):
        npu_session.npu_optimizer_config(iterations_per_loop=10)


@pytest.fixture
def without_npu_bridge(monkeypatch):
    monkeypatch.setitem(sys.modules, "npu_bridge", None)  # makes `import npu_bridge` raise ImportError


@pytest.fixture
def fake_npu_bridge(monkeypatch):
    """Stand-ins for the adapter modules wrap_optimizer imports."""
    made = {}

    class Manager(object):
        def __init__(self, **kwargs):
            made["manager"] = kwargs

    class LossScaleOptimizer(object):
        def __init__(self, opt, manager, is_distributed=False):
            self.opt, self.manager, self.is_distributed = opt, manager, is_distributed

    names = ["npu_bridge", "npu_bridge.estimator", "npu_bridge.estimator.npu",
             "npu_bridge.estimator.npu.npu_loss_scale_manager", "npu_bridge.estimator.npu.npu_loss_scale_optimizer"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[names[3]].ExponentialUpdateLossScaleManager = Manager
    sys.modules[names[4]].NPULossScaleOptimizer = LossScaleOptimizer
    return made


def npu_stack(environ=None, **options):
    return npu_train.stack(npu_session.NpuOptions(**options), {} if environ is None else environ)


def test_npu_session_without_bridge_falls_back_to_cpu(without_npu_bridge, caplog):
    with caplog.at_level(logging.INFO, logger=npu_session.LOG.name):
        config = npu_stack().session_config()
    assert not config.graph_options.rewrite_options.custom_optimizers
    assert [r.getMessage() for r in caplog.records] == ["npu_bridge not importable: emulating the NPU graph on the CPU"]


def test_npu_describe_device_and_session_log_the_fallback_once(without_npu_bridge, caplog):
    with caplog.at_level(logging.INFO, logger=npu_session.LOG.name):
        stack = npu_stack()
        assert stack.describe_device() == "cpu"
        stack.session_config()
    assert len(caplog.records) == 1


def test_npu_describe_device_with_bridge(fake_npu_bridge, caplog):
    with caplog.at_level(logging.INFO, logger=npu_session.LOG.name):
        assert npu_stack({"DEVICE_ID": "5"}).describe_device() == "npu"
    assert [r.getMessage() for r in caplog.records] == ["training on Ascend device 5 (rank 0 of 1)"]


def test_npu_session_without_bridge_still_validates(without_npu_bridge):
    with pytest.raises(npu_session.NpuConfigError):
        npu_stack(precision_mode="fp8").session_config()


def test_npu_session_with_bridge_uses_npu_optimizer(fake_npu_bridge):
    config = npu_stack(precision_mode="force_fp32").session_config()
    assert _npu_options(config)["precision_mode"].s == b"force_fp32"


def test_npu_loss_scaling_is_off_by_default(fake_npu_bridge):
    opt = object()
    assert npu_stack().wrap_optimizer(opt) is opt


def test_npu_loss_scaling_with_bridge(fake_npu_bridge):
    opt = object()
    wrapped = npu_stack(loss_scaling=True).wrap_optimizer(opt)
    assert wrapped.opt is opt
    assert fake_npu_bridge["manager"]["init_loss_scale"] == 2 ** 32
    assert fake_npu_bridge["manager"]["decr_ratio"] == 0.5


def test_npu_loss_scaling_without_bridge_is_skipped(without_npu_bridge):
    opt = object()
    assert npu_stack(loss_scaling=True).wrap_optimizer(opt) is opt


def test_device_env_defaults():
    env = npu_session.device_env({})
    assert env == npu_session.DeviceEnv(device_id=0, rank_id=0, rank_size=1, rank_table_file=None)
    assert env.is_chief


def test_device_env_reads_ranks(tmp_path):
    table = tmp_path / "rank_table.json"
    table.write_text("{}")
    env = npu_session.device_env({"DEVICE_ID": "3", "RANK_ID": "1", "RANK_SIZE": "2", "RANK_TABLE_FILE": str(table)})
    assert (env.device_id, env.rank_id, env.rank_size, env.rank_table_file) == (3, 1, 2, str(table))
    assert not env.is_chief


@pytest.mark.parametrize("environ, message", [
    ({"DEVICE_ID": "npu0"}, "not an integer"),
    ({"RANK_SIZE": "2"}, "RANK_TABLE_FILE is unset"),
    ({"RANK_ID": "2", "RANK_SIZE": "2", "RANK_TABLE_FILE": __file__}, "outside"),
    ({"RANK_TABLE_FILE": "/nonexistent/table.json"}, "does not exist"),
])
def test_device_env_errors_name_the_fix(environ, message):
    with pytest.raises(npu_session.NpuConfigError, match=message):
        npu_session.device_env(environ)


def test_emulate_env_forces_the_cpu_in_both_trees(monkeypatch, caplog):
    monkeypatch.setenv("LIP2WAV_EMULATE", "1")
    monkeypatch.setattr(npu_session, "npu_bridge_available", lambda: True)
    with caplog.at_level(logging.WARNING):
        stack = npu_train.stack(npu_session.NpuOptions())
        assert stack.describe_device() == "cpu"
        config = stack.session_config()
    assert not config.graph_options.rewrite_options.custom_optimizers
    assert "LIP2WAV_EMULATE=1: emulating the NPU graph on the CPU" in caplog.text
    stack = gpu_train.stack(gpu_session.GpuOptions())
    with caplog.at_level(logging.WARNING):
        assert stack.describe_device() == "cpu"
    assert "LIP2WAV_EMULATE=1: training on the CPU" in caplog.text
    assert dict(stack.session_config().device_count) == {"GPU": 0}  # a missing key also reads 0
