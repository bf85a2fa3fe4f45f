"""The device trees' backends by name (common.devices.TREES): decode loop, feeder, session config.

This mapping lives in export/ because only the layer above the trees may import both.
"""
import collections

from common import devices
from common.tf_compat import tf
from common.training import loop as training
from gpu_training import train as gpu_train
from npu_training import train as npu_train

BACKENDS = collections.OrderedDict((backend.name, backend) for backend in (gpu_train.BACKEND, npu_train.BACKEND))


def backend(name):
    """The training.Backend of device tree ``name``; UnknownTreeError names the valid ones."""
    return BACKENDS[devices.check(name)]


class _NoData(object):
    """Stands in for a BatchSource: building a graph reads no batch."""

    def __iter__(self):
        raise RuntimeError("this training graph is built to be inspected, never run")


def training_graph(hp, name):
    """Device tree ``name``'s training graph as common.training.loop builds it for a run (in the default graph);
    for tools that read its ops or variables without data."""
    tree = backend(name)
    return training.TrainingGraph(tree, tree.stack(tree.options), hp, _NoData())
