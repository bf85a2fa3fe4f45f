"""The NPU tree's distribution: HCCL through the CANN TF Adapter, one process per device.

The launcher (containers/launch.py) starts one process per device with RANK_ID, RANK_SIZE, JOB_ID,
RANK_TABLE_FILE and the device ids; the adapter reads them. Gradients: NPUDistributedOptimizer (mean
all-reduce in compute_gradients), imported from npu_bridge.estimator.npu.npu_optimizer and never from
npu_init, whose import patches every tf.Session, the emulation's CPU session included. Initial state:
one HCCL broadcast from rank 0 of every float variable (the adapter's own helper covers trainable ones only).

Emulated on the CPU (--emulate or no npu_bridge; npu_training/train.py picks that stack), the same launcher also
serves a Gloo rendezvous and the collectives go through Horovod, so ranks, shards, the broadcast and the chief's
role run for real.
"""
import os

from common.tf_compat import tf
from common.training import distribute
from npu_training import session

GLOO_RENDEZVOUS_ENV = "HOROVOD_GLOO_RENDEZVOUS_ADDR"
# HCCL broadcast dtypes common to every adapter release (int64 came later); the step is restored, not broadcast.
BROADCAST_DTYPES = (tf.float32, tf.float16)


class HcclDistribution(distribute.Distribution):
    """HCCL ranks as the launcher exported them (the adapter reads the same variables)."""

    name = "HCCL"

    def __init__(self, env, local_rank):
        self.rank = env.rank_id
        self.size = env.rank_size
        self.local_rank = local_rank

    def wrap_optimizer(self, optimizer):
        from npu_bridge.estimator.npu.npu_optimizer import NPUDistributedOptimizer
        return NPUDistributedOptimizer(optimizer)

    def broadcast_op(self):
        from npu_bridge.hccl import hccl_ops
        assigns = [tf.assign(var, hccl_ops.broadcast(tensor=[var], root_rank=0)[0])
                   for var in tf.global_variables() if var.dtype.base_dtype in BROADCAST_DTYPES]
        return tf.group(*assigns)


def distribution(emulated, environ=None):
    """Single process for RANK_SIZE 1; HCCL on the device; Horovod over Gloo when emulating several ranks."""
    environ = os.environ if environ is None else environ
    env = session.device_env(environ)
    if env.rank_size == 1:
        return distribute.Distribution()
    if emulated:
        if GLOO_RENDEZVOUS_ENV not in environ:
            raise distribute.DistributionError(
                "RANK_SIZE=%d emulated on the CPU needs the Gloo rendezvous the launcher serves: start the ranks "
                "with `invoke train --target npu --local --emulate --devices 0,1` or `python -m containers.launch "
                "train` (LIP2WAV_EMULATE=1)" % env.rank_size)
        emulated = distribute.HorovodDistribution()
        if (emulated.rank, emulated.size) != (env.rank_id, env.rank_size):
            raise distribute.DistributionError(
                "Horovod rank %d of %d differs from RANK_ID=%d of RANK_SIZE=%d: start every rank from one "
                "launcher" % (emulated.rank, emulated.size, env.rank_id, env.rank_size))
        return emulated
    if not environ.get("JOB_ID"):
        raise distribute.DistributionError("RANK_SIZE=%d but JOB_ID is unset: the adapter's all-reduce needs it; "
                                           "export JOB_ID (any name shared by the ranks)" % env.rank_size)
    return HcclDistribution(env, local_rank=session._env_int(environ, "ASCEND_DEVICE_ID", env.device_id))
