"""The one place TensorFlow is imported: the TF1 graph API on TensorFlow 1.15 and 2.x alike.

Code for the device images (TF 1.15) also runs on workstations with TF 2.15 through
``tensorflow.compat.v1`` with v2 behaviour (eager, resource variables, v2 control flow) disabled,
so every module does ``from common.tf_compat import tf`` and uses only TF 1.15 names.
``RewriterConfig`` (grappler switches such as remapping and auto mixed precision) has no public
``tf.`` name, nor has ``timeline`` (step traces as chrome-trace JSON, for the profile tool); both are
re-exported from here so that no other module imports TensorFlow directly.

CPU kernels: TensorFlow 2.x switches its oneDNN kernels on by itself only on CPUs with AVX-512-class
features and runs plain Eigen kernels elsewhere (AMD EPYC, older Intel), several times slower on this
model's 3D convolutions. So on every x86 CPU the project sets ``TF_ENABLE_ONEDNN_OPTS=1`` before the
import, unless the user set the variable; ARM hosts (Ascend servers' Kunpeng) keep TensorFlow's own
default, and TensorFlow 1.15 (the images) ignores the variable.
"""
import logging
import os
import platform

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
X86_MACHINES = ("x86_64", "amd64", "i386", "i686")
LOG = logging.getLogger("lip2wav.tf")

# TensorFlow's deprecation notices are about the TF1 names the images need: keep them off every console.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("tensorflow").setLevel(logging.ERROR)
_USER_ONEDNN = os.environ.get(ONEDNN_VARIABLE)
if _USER_ONEDNN is None and platform.machine().lower() in X86_MACHINES:
    os.environ[ONEDNN_VARIABLE] = "1"

import tensorflow.compat.v1 as tf  # noqa: E402
from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig  # noqa: E402
from tensorflow.python.client import timeline  # noqa: E402

try:  # TensorFlow's own answer: 2.5 and later
    from tensorflow.python.util._pywrap_util_port import IsMklEnabled as _onednn_enabled  # noqa: E402
except ImportError:  # 1.15
    from tensorflow.python.pywrap_tensorflow import IsMklEnabled as _onednn_enabled  # noqa: E402

tf.disable_v2_behavior()

__all__ = ["RewriterConfig", "kernels", "kernels_line", "log_kernels", "tf", "timeline", "user_environment"]


# CPU flags that decide which kernels TensorFlow and oneDNN can pick.
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def cpu_model():
    """The CPU as /proc/cpuinfo names it, with its model number and vector flags; the machine type elsewhere."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in info:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    return "%s (family %s model %s, %s)" % (info["model name"], info.get("cpu family", "?"), info.get("model", "?"),
                                            " ".join(f for f in VECTOR_FLAGS if f in flags) or "no AVX2")


def kernels():
    """{"kernels": "oneDNN" or "Eigen" (TensorFlow's answer), "cpu": cpu_model(), "why": who chose}."""
    enabled = bool(_onednn_enabled())
    if _USER_ONEDNN is not None:
        why = "%s=%s in your environment" % (ONEDNN_VARIABLE, _USER_ONEDNN)
        if not enabled:
            why += " (unset it for oneDNN, several times faster on the CPU)"
    elif ONEDNN_VARIABLE in os.environ:
        why = "set by the project on x86 (%s=0 for Eigen)" % ONEDNN_VARIABLE
        if not enabled:
            why = "this TensorFlow %s build has no oneDNN kernels" % tf.version.VERSION
    else:
        why = "TensorFlow's default on %s" % platform.machine()
    return {"kernels": "oneDNN" if enabled else "Eigen", "cpu": cpu_model(), "why": why}


def user_environment():
    """os.environ without the project's oneDNN choice: for a child process that should make its own
    (and say so), e.g. a benchmark worker whose environment differs only in the user's settings."""
    env = dict(os.environ)
    if _USER_ONEDNN is None:
        env.pop(ONEDNN_VARIABLE, None)
    return env


def kernels_line(found=None):
    """One line: which kernels run on which CPU, and why."""
    found = found or kernels()
    return "TensorFlow CPU kernels: %s on %s: %s" % (found["kernels"], found["cpu"], found["why"])


_logged = []


def log_kernels():
    """Log kernels_line() once per process (common.cli.run calls this once logging is set up)."""
    if not _logged:
        _logged.append(True)
        LOG.info("%s", kernels_line())


if logging.getLogger().handlers:
    log_kernels()
