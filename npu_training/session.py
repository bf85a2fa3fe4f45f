"""The NPU tree's environment: every Ascend setting (NpuOptimizer options, ranks, loss scaling) lives here.

Facts (CANN TF Adapter, TF 1.15, sess.run mode): the "NpuOptimizer" custom graph optimizer with
use_off_line=True runs the graph on the Ascend device; precision_mode picks the fp16/fp32 policy
(allow_mix_precision made the Lip2Wav port 12x faster than fp32); grappler's remapping and
memory_optimization passes are turned off as the adapter docs require. iterations_per_loop > 1
needs GetNext sinking (tf.data + enable_data_pre_proc), so with the feed_dict feeder it stays 1.

npu_bridge is imported only inside functions: without it (a workstation) the same graph runs on
the CPU (npu_training/train.py picks that stack once) and one log line says so.
"""
import dataclasses
import json
import logging
import os
from typing import Optional

from common.tf_compat import RewriterConfig, tf
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)
PRECISION_MODES = ("force_fp32", "force_fp16", "allow_fp32_to_fp16", "must_keep_origin_dtype", "allow_mix_precision")
DEFAULT_PRECISION_MODE = "allow_mix_precision"


class NpuConfigError(Lip2WavError, ValueError):
    """An NPU setting or environment variable that cannot be used; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class NpuOptions:
    """The NPU tree's own settings (flags --precision-mode, --loss-scaling)."""

    precision_mode: str = DEFAULT_PRECISION_MODE
    loss_scaling: bool = False


@dataclasses.dataclass(frozen=True)
class DeviceEnv:
    """Which Ascend device and rank this process is, as the launcher exported it."""

    device_id: int = 0
    rank_id: int = 0
    rank_size: int = 1
    rank_table_file: Optional[str] = None

    @property
    def is_chief(self):
        """Rank 0 writes logs, summaries and checkpoints."""
        return self.rank_id == 0


def device_env(environ=None):
    """Read DEVICE_ID, RANK_ID, RANK_SIZE and RANK_TABLE_FILE (defaults: one device, rank 0)."""
    environ = os.environ if environ is None else environ
    env = DeviceEnv(
        device_id=_env_int(environ, "DEVICE_ID", 0),
        rank_id=_env_int(environ, "RANK_ID", 0),
        rank_size=_env_int(environ, "RANK_SIZE", 1),
        rank_table_file=environ.get("RANK_TABLE_FILE") or None,
    )
    if env.rank_size < 1:
        raise NpuConfigError("RANK_SIZE=%d: export RANK_SIZE as the number of NPU processes (>= 1)" % env.rank_size)
    if not 0 <= env.rank_id < env.rank_size:
        raise NpuConfigError("RANK_ID=%d is outside [0, RANK_SIZE=%d): export each process's rank_id from the "
                             "rank table" % (env.rank_id, env.rank_size))
    if env.rank_size > 1 and env.rank_table_file is None:
        raise NpuConfigError("RANK_SIZE=%d but RANK_TABLE_FILE is unset: export RANK_TABLE_FILE=<rank table json>"
                             % env.rank_size)
    if env.rank_table_file is not None and not os.path.isfile(env.rank_table_file):
        raise NpuConfigError("RANK_TABLE_FILE=%s does not exist: point it at the HCCL rank table json"
                             % env.rank_table_file)
    return env


def check_settings(precision_mode=DEFAULT_PRECISION_MODE, iterations_per_loop=1):
    """Refuse, in one line, a setting the adapter cannot use; the emulation checks too, so a workstation run
    catches what the device would refuse."""
    if precision_mode not in PRECISION_MODES:
        raise NpuConfigError("precision_mode %r is not one of %s: pick one of these"
                             % (precision_mode, ", ".join(PRECISION_MODES)))
    if iterations_per_loop != 1:
        raise NpuConfigError("iterations_per_loop=%r: the feed_dict feeder has no GetNext op to sink, and "
                             "several steps per sess.run need tf.data with enable_data_pre_proc: use 1"
                             % (iterations_per_loop,))


def npu_optimizer_config(precision_mode=DEFAULT_PRECISION_MODE, iterations_per_loop=1, mix_compile_mode=False):
    """ConfigProto with the NpuOptimizer custom optimizer; pure protobuf, needs no npu_bridge."""
    check_settings(precision_mode, iterations_per_loop)
    config = tf.ConfigProto(allow_soft_placement=True)
    custom_op = config.graph_options.rewrite_options.custom_optimizers.add()
    custom_op.name = "NpuOptimizer"
    custom_op.parameter_map["use_off_line"].b = True
    custom_op.parameter_map["precision_mode"].s = tf.compat.as_bytes(precision_mode)
    custom_op.parameter_map["mix_compile_mode"].b = bool(mix_compile_mode)
    custom_op.parameter_map["iterations_per_loop"].i = iterations_per_loop
    custom_op.parameter_map["enable_data_pre_proc"].b = False
    config.graph_options.rewrite_options.remapping = RewriterConfig.OFF
    config.graph_options.rewrite_options.memory_optimization = RewriterConfig.OFF
    return config


def with_profiling(config, output_dir):
    """``config`` with the TF Adapter's profiler on, writing to ``output_dir`` (the NpuOptimizer keys).

    training_trace marks the forward/backward/update span of every step and task_trace the time
    of every device operator, which is how the reference port found its slow operators; the
    files under ``output_dir`` open with msprof. A config without NpuOptimizer (the CPU
    emulation) is returned unchanged: there is no Ascend profiler to switch on.
    """
    custom = [op for op in config.graph_options.rewrite_options.custom_optimizers if op.name == "NpuOptimizer"]
    if not custom:
        return config
    os.makedirs(output_dir, exist_ok=True)
    options = {"output": output_dir, "training_trace": "on", "task_trace": "on", "aicpu": "on",
               "fp_point": "", "bp_point": "", "aic_metrics": "PipeUtilization"}
    custom[0].parameter_map["profiling_mode"].b = True
    custom[0].parameter_map["profiling_options"].s = tf.compat.as_bytes(json.dumps(options, sort_keys=True))
    LOG.info("Ascend profiling on: output in %s", output_dir)
    return config


def cpu_config():
    """ConfigProto for emulating the NPU graph on the CPU."""
    return tf.ConfigProto(allow_soft_placement=True)


def npu_bridge_available():
    """True when the CANN TF Adapter (npu_bridge) imports; importing it registers NpuOptimizer.

    Where CANN's libhcomm.so is missing the import raises ValueError("load hccl lib error"), not
    ImportError: that too means "not available", said in one line.
    """
    try:
        import npu_bridge  # noqa: F401 (imported for its side effect)
    except ImportError:
        return False
    except ValueError as error:
        LOG.warning("npu_bridge is installed but cannot load CANN's HCCL library (%s): source "
                    "/usr/local/Ascend/ascend-toolkit/set_env.sh to use the NPU", error)
        return False
    return True


def loss_scale_optimizer(opt, is_distributed):
    """``opt`` in NPU dynamic loss scaling (flag --loss-scaling; the Lip2Wav port trained without it).

    ``opt`` arrives already wrapped for data parallelism (NPUDistributedOptimizer): the loss-scale optimizer
    only all-reduces the overflow flag (is_distributed), never the gradients, so it must sit outside.
    The Ascend 910 detects fp16 overflow only in saturation mode, so the NPU's own
    NPULossScaleOptimizer must do it, not TF's.
    """
    from npu_bridge.estimator.npu.npu_loss_scale_manager import ExponentialUpdateLossScaleManager
    from npu_bridge.estimator.npu.npu_loss_scale_optimizer import NPULossScaleOptimizer
    manager = ExponentialUpdateLossScaleManager(init_loss_scale=2 ** 32, incr_every_n_steps=1000,
                                                decr_every_n_nan_or_inf=2, decr_ratio=0.5)
    return NPULossScaleOptimizer(opt, manager, is_distributed=is_distributed)


def _env_int(environ, name, default):
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise NpuConfigError("%s=%r is not an integer: export %s as a number" % (name, value, name)) from None
