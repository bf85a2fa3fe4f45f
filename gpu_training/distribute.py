"""The GPU tree's distribution: Horovod, one GPU per process (the process's local rank).

`horovodrun -np N -H host:slots,... python -m gpu_training.train ...` starts the ranks (MPI in the NGC images,
Gloo elsewhere); started any other way, the tree trains in one process.
"""
from common.training import distribute


class GpuHorovodDistribution(distribute.HorovodDistribution):
    """Horovod; each process sees only the GPU of its local rank, so ranks on one host never share a GPU."""

    def __init__(self, emulate=False):
        super(GpuHorovodDistribution, self).__init__()
        self._emulate = emulate

    def configure_session(self, config):
        if not self._emulate:
            config.gpu_options.visible_device_list = str(self.local_rank)
        return config


def distribution(emulate=False, environ=None):
    """Horovod when horovodrun (or mpirun) started this process, else the single-process default."""
    if distribute.launched_by_horovod(environ):
        return GpuHorovodDistribution(emulate=emulate)
    return distribute.Distribution()
