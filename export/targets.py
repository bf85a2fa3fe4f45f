"""The targets' Backends by name (common.devices.TARGETS): decode loop, feeder, session config.

This mapping lives in export/ because only the layer above the device trees may import both.
"""
import collections

from common import devices
from common.tf_compat import tf
from common.training import loop as training
from gpu_training import train as gpu_train
from npu_training import train as npu_train

BACKENDS = collections.OrderedDict((backend.name, backend) for backend in (gpu_train.BACKEND, npu_train.BACKEND))


def backend(name):
    """The training.Backend of target ``name``; UnknownTargetError names the valid ones."""
    return BACKENDS[devices.check(name)]


class _NoData(object):
    """Stands in for a BatchSource: building a graph reads no batch."""

    def __iter__(self):
        raise RuntimeError("this training graph is built to be inspected, never run")


def training_graph(hp, name):
    """Target ``name``'s training graph as common.training.loop builds it for a run (in the default graph);
    for tools that read its ops or variables without data."""
    chosen = backend(name)
    return training.TrainingGraph(chosen, chosen.stack(chosen.options), hp, _NoData())
