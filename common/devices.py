"""The targets by name (gpu, npu): the one list every launcher, exporter and tool iterates.

A target is what a run is built for; its code is a device tree (gpu_training/, npu_training/). common/ never
imports a device tree, so which Backend (decode loop, feeder, session) a target stands for is looked up above
the trees, in export/targets.py.
"""
from common.errors import Lip2WavError

TARGETS = ("gpu", "npu")


class UnknownTargetError(Lip2WavError, ValueError):
    """A target name that does not exist; the message lists the valid ones."""


def check(name):
    """``name`` if it names a target, else UnknownTargetError."""
    if name not in TARGETS:
        raise UnknownTargetError("unknown target %r: use one of %s" % (name, ", ".join(TARGETS)))
    return name


def train_module(name):
    """The target's training entrypoint, for `python -m`."""
    return "%s_training.train" % check(name)
