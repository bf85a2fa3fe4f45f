"""How one training run spreads over several processes: the seam between the shared loop and a device's collectives.

Data parallel: every process (a rank) builds the same graph from the same seed, reads its own disjoint shard of
the windows, and the wrapped optimizer averages the gradients over all ranks before the update, so every rank
applies the same update and holds the same weights. Rank 0, the chief, alone writes the run directory.

Distribution is the single-process default (rank 0 of 1, nothing wrapped); HorovodDistribution is shared by the
GPU tree and by the NPU tree's CPU emulation (Horovod over Gloo); the NPU tree adds HCCL. Horovod is imported
only when a run has several processes, so single-process runs never need it.
"""
import collections
import logging
import os

from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)
HOROVOD_INSTALL_HINT = ("install Horovod with Gloo and TensorFlow support: HOROVOD_WITH_TENSORFLOW=1 "
                        "HOROVOD_WITH_GLOO=1 pip install horovod==0.28.1 (.ci/run builds the same wheel)")
# Set by horovodrun (Gloo) and by mpirun (MPI, the NGC images' default controller) in every process they start.
HOROVOD_LAUNCH_ENV = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK")

DataShard = collections.namedtuple("DataShard", "index count seed")


class DistributionError(Lip2WavError, RuntimeError):
    """A multi-process run that cannot start; the message names the fix."""


def rank_seed(seed, rank):
    """The data seed of ``rank``: rank 0 keeps the run's seed (so one process reads what it always read)."""
    return int(seed) & 0xffffffff if rank == 0 else (int(seed) * 1000003 + rank * 7919) & 0xffffffff


class Distribution(object):
    """One process: rank 0 of 1, the chief, training on every window with the optimizer as given."""

    name = "single process"
    rank = 0
    size = 1
    local_rank = 0

    @property
    def is_chief(self):
        """Rank 0 writes checkpoints, summaries, plots, train_log.jsonl and run_summary.json."""
        return self.rank == 0

    def configure_session(self, config):
        """Adjust the tree's ConfigProto for this process (e.g. which GPU it sees); returns it."""
        return config

    def wrap_optimizer(self, optimizer):
        """The innermost wrapper: averages gradients over the ranks (a device's loss scaling wraps outside it)."""
        return optimizer

    def broadcast_op(self):
        """An op copying rank 0's variables to every rank, run once after initialisation or restore; or None."""
        return None

    def data_shard(self, seed):
        """Which windows this rank reads (start frame % count == index) and the seed it draws them with."""
        return DataShard(self.rank, self.size, rank_seed(seed, self.rank))

    def describe(self):
        return "%s: rank %d of %d (local rank %d)" % (self.name, self.rank, self.size, self.local_rank)


def launched_by_horovod(environ=None):
    """True when horovodrun (or mpirun) started this process."""
    environ = os.environ if environ is None else environ
    return any(name in environ for name in HOROVOD_LAUNCH_ENV)


def import_horovod():
    """horovod.tensorflow, or a DistributionError naming how to install it."""
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise DistributionError("several training processes need Horovod, which is not importable (%s): %s"
                                % (error, HOROVOD_INSTALL_HINT)) from None
    return hvd


class HorovodDistribution(Distribution):
    """Ranks from Horovod (started by horovodrun, or by containers.launch with a Gloo rendezvous).

    hvd.DistributedOptimizer all-reduces (averages) the gradients in compute_gradients, which the shared
    train op calls; broadcast_global_variables(0) covers every global variable (Adam slots and step included).
    """

    name = "Horovod"

    def __init__(self):
        self._hvd = import_horovod()
        self._hvd.init()
        self.rank = self._hvd.rank()
        self.size = self._hvd.size()
        self.local_rank = self._hvd.local_rank()

    def wrap_optimizer(self, optimizer):
        return self._hvd.DistributedOptimizer(optimizer)

    def broadcast_op(self):
        return self._hvd.broadcast_global_variables(0)
