"""The GPU tree's environment: session config (memory growth, XLA, mixed precision) in one place."""
import dataclasses
import logging

from common import emulation
from common.tf_compat import RewriterConfig, tf

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GpuOptions:
    """The GPU tree's own settings (flags --mixed-precision, --xla)."""

    mixed_precision: bool = False
    xla: bool = False


def session_config(mixed_precision=False, xla=False, emulate=False):
    """ConfigProto for GPU training; falls back to the CPU transparently (soft placement).

    emulate hides every GPU, so the run is the CPU one even on a GPU host.

    mixed_precision turns on grappler's auto_mixed_precision pass here so the config shows it;
    the optimizer must also be wrapped with wrap_optimizer() to get dynamic loss scaling.
    """
    config = tf.ConfigProto(allow_soft_placement=True)
    config.gpu_options.allow_growth = True
    if emulate:
        config.device_count["GPU"] = 0
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1
    if mixed_precision:
        config.graph_options.rewrite_options.auto_mixed_precision = RewriterConfig.ON
    return config


def wrap_optimizer(opt, mixed_precision):
    """Return ``opt`` wrapped for fp16 graph rewrite with dynamic loss scaling when asked."""
    if not mixed_precision:
        return opt
    return tf.train.experimental.enable_mixed_precision_graph_rewrite(opt, loss_scale="dynamic")


def describe_device(emulate=False):
    """Log (one line) and return "gpu" or "cpu": where this process will train."""
    if emulate:
        LOG.warning("%s=1: training on the CPU", emulation.ENV)
        return "cpu"
    gpus = tf.config.experimental.list_physical_devices("GPU")
    if not gpus:
        LOG.warning("no GPU found: training on the CPU")
        return "cpu"
    LOG.info("training on %d GPU(s): %s", len(gpus), ", ".join(gpu.name for gpu in gpus))
    return "gpu"
