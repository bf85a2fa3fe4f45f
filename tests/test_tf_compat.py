"""common/tf_compat.py chooses oneDNN kernels on x86 unless the user set TF_ENABLE_ONEDNN_OPTS, and says so once.

Each case imports the project's TensorFlow in a fresh process (the variable is read once, at TensorFlow's start)
and asks TensorFlow itself whether oneDNN is on. On AVX-512 CPUs TensorFlow 2.15 enables oneDNN by default, so
TensorFlow's answer alone cannot show the project's switch: the variable the process ends up with does.
"""
import json
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
PROBE = """
import json, os, platform, sys
if sys.argv[1:]:
    platform.machine = lambda: sys.argv[1]
from common import cli, tf_compat
from tensorflow.python.util import _pywrap_util_port
cli.run(lambda: None)
cli.run(lambda: None)
print(json.dumps({"variable": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "onednn": _pywrap_util_port.IsMklEnabled()}))
"""

x86_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                              reason="the project's oneDNN switch is for x86 CPUs")


def probe(setting, *machine):
    env = dict((k, v) for k, v in os.environ.items() if k != VARIABLE)
    if setting is not None:
        env[VARIABLE] = setting
    result = subprocess.run([sys.executable, "-c", PROBE] + list(machine), cwd=ROOT, env=env, timeout=300,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "TensorFlow CPU kernels:" in line]
    assert len(lines) == 1, result.stderr
    return json.loads(result.stdout.splitlines()[-1]), lines[0]


@x86_only
def test_onednn_is_chosen_when_the_user_did_not_set_the_variable():
    found, line = probe(None)
    assert found == {"variable": "1", "onednn": True}
    assert "kernels: oneDNN on " in line and "set by the project on x86" in line


@x86_only
def test_the_user_s_setting_wins_and_the_log_says_why():
    found, line = probe("0")
    assert found == {"variable": "0", "onednn": False}
    assert "kernels: Eigen on " in line and "TF_ENABLE_ONEDNN_OPTS=0 in your environment (unset it" in line


def test_arm_hosts_keep_tensorflow_s_own_default():
    found, line = probe(None, "aarch64")
    assert found["variable"] is None
    assert "TensorFlow's default on aarch64" in line
