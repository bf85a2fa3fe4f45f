"""NPU tree entrypoint: ``python -m npu_training.train --data DIR --run-dir DIR``.

Wires the queue.Queue feed_dict feeder, the static fixed-iteration decode loop and the
Ascend session config into the shared loop of common/training/loop.py. Without npu_bridge the
same graph runs on the CPU (emulation) and one log line says so.
"""
import sys

from common.training import loop as training
from npu_training import distribute, session
from npu_training.decoder import static_decode_loop
from npu_training.feeder import Feeder


def add_arguments(parser):
    parser.add_argument("--precision-mode", default=session.DEFAULT_PRECISION_MODE,
                        choices=session.PRECISION_MODES, help="Ascend precision policy.")
    parser.add_argument("--loss-scaling", action="store_true",
                        help="NPU dynamic loss scaling (the reference port trained without it).")


def options_from_args(args):
    return session.NpuOptions(precision_mode=args.precision_mode, loss_scaling=args.loss_scaling)


def _wrap_optimizer(options):
    distributed = session.device_env().rank_size > 1
    return lambda opt: session.wrap_optimizer(opt, options.loss_scaling, is_distributed=distributed)


BACKEND = training.Backend(
    name="npu",
    decode_loop=static_decode_loop,
    feeder_class=Feeder,
    options=session.NpuOptions(),
    add_arguments=add_arguments,
    options_from_args=options_from_args,
    session_config=lambda options: session.session_config(precision_mode=options.precision_mode),
    wrap_optimizer=_wrap_optimizer,
    describe_device=lambda options: session.describe_device(),
    distribution=lambda options: distribute.distribution(),
)


def main(argv=None):
    return training.main(BACKEND, argv)


if __name__ == "__main__":
    sys.exit(main())
