"""The device trees by name: the one list every launcher, exporter and tool iterates.

common/ never imports a tree, so which backend (decode loop, feeder, session) a name stands
for is looked up above the trees, in export/trees.py.
"""
from common.errors import Lip2WavError

TREES = ("gpu", "npu")


class UnknownTreeError(Lip2WavError, ValueError):
    """A device tree name that does not exist; the message lists the valid ones."""


def check(name):
    """``name`` if it names a device tree, else UnknownTreeError."""
    if name not in TREES:
        raise UnknownTreeError("unknown target %r: use one of %s" % (name, ", ".join(TREES)))
    return name


def train_module(name):
    """The tree's training entrypoint, for `python -m`."""
    return "%s_training.train" % check(name)
