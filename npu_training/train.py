"""NPU tree entrypoint: ``python -m npu_training.train --data DIR --run-dir DIR``.

Wires the queue.Queue feed_dict feeder, the static fixed-iteration decode loop and the
Ascend session config into the shared loop of common/training/loop.py. Without npu_bridge the
same graph runs on the CPU (emulation) and one log line says so.
"""
import logging
import os
import sys

from common import emulation
from common.training import loop as training
from npu_training import distribute, session
from npu_training.decoder import static_decode_loop
from npu_training.feeder import Feeder

LOG = logging.getLogger(session.__name__)  # the Ascend settings' logger, as before


def add_arguments(parser):
    parser.add_argument("--precision-mode", default=session.DEFAULT_PRECISION_MODE,
                        choices=session.PRECISION_MODES, help="Ascend precision policy.")
    parser.add_argument("--loss-scaling", action="store_true",
                        help="NPU dynamic loss scaling (the reference port trained without it).")


def options_from_args(args):
    return session.NpuOptions(precision_mode=args.precision_mode, loss_scaling=args.loss_scaling)


class AscendStack(training.Stack):
    """The Ascend device: NpuOptimizer session, NPU loss scaling, HCCL ranks."""

    def __init__(self, options, environ):
        self.options = options
        self.environ = environ

    def session_config(self):
        LOG.info("Ascend session: precision_mode=%s iterations_per_loop=1", self.options.precision_mode)
        return session.npu_optimizer_config(precision_mode=self.options.precision_mode)

    def wrap_optimizer(self, opt):
        if not self.options.loss_scaling:
            return opt
        return session.loss_scale_optimizer(opt, is_distributed=session.device_env(self.environ).rank_size > 1)

    def describe_device(self):
        env = session.device_env(self.environ)
        LOG.info("training on Ascend device %d (rank %d of %d)", env.device_id, env.rank_id, env.rank_size)
        return "npu"

    def distribution(self):
        return distribute.distribution(emulated=False, environ=self.environ)


class EmulatedStack(AscendStack):
    """The same graph on the CPU: a plain session, no NPU loss scaling (its float-status ops need the device),
    Horovod over Gloo for several ranks; the settings are still checked, as the device would."""

    def session_config(self):
        session.check_settings(self.options.precision_mode)
        return session.cpu_config()

    def wrap_optimizer(self, opt):
        if self.options.loss_scaling:
            LOG.warning("emulating on the CPU: NPU loss scaling skipped (its float-status ops need the device)")
        return opt

    def describe_device(self):
        return "cpu"

    def distribution(self):
        return distribute.distribution(emulated=True, environ=self.environ)


def stack(options, environ=None):
    """The NPU stack of this process, picked once: emulated (one log line saying why) when the launcher asked
    for the CPU or npu_bridge does not import; the one place the tree reads the emulation switch."""
    environ = os.environ if environ is None else environ
    if emulation.requested(environ):
        reason = "%s=1" % emulation.ENV
    elif not session.npu_bridge_available():
        reason = "npu_bridge not importable"
    else:
        return AscendStack(options, environ)
    LOG.warning("%s: emulating the NPU graph on the CPU", reason)
    return EmulatedStack(options, environ)


BACKEND = training.Backend(
    name="npu",
    decode_loop=static_decode_loop,
    feeder_class=Feeder,
    options=session.NpuOptions(),
    add_arguments=add_arguments,
    options_from_args=options_from_args,
    stack=stack,
)


def main(argv=None):
    return training.main(BACKEND, argv)


if __name__ == "__main__":
    sys.exit(main())
