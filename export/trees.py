"""The device trees' backends by name (common.devices.TREES): decode loop, feeder, session config.

This mapping lives in export/ because only the layer above the trees may import both.
"""
import collections

from common import devices
from gpu_training import train as gpu_train
from npu_training import train as npu_train

BACKENDS = collections.OrderedDict((backend.name, backend) for backend in (gpu_train.BACKEND, npu_train.BACKEND))


def backend(name):
    """The training.Backend of device tree ``name``; UnknownTreeError names the valid ones."""
    return BACKENDS[devices.check(name)]
