"""GPU tree entrypoint: ``python -m gpu_training.train --data DIR --run-dir DIR``.

Wires the FIFOQueue feeder, the dynamic-length decode loop and the GPU session config
into the shared loop of common/training/loop.py. Without a GPU it runs on the CPU.
Started by horovodrun, each process trains one data-parallel rank (gpu_training/distribute.py).
"""
import sys

from common import emulation
from common.training import loop as training
from gpu_training import distribute, session
from gpu_training.decoder import dynamic_decode_loop
from gpu_training.feeder import Feeder


def add_arguments(parser):
    parser.add_argument("--mixed-precision", action="store_true",
                        help="Automatic mixed precision graph rewrite with dynamic loss scaling.")
    parser.add_argument("--xla", action="store_true", help="Compile the graph with XLA.")


def options_from_args(args):
    return session.GpuOptions(mixed_precision=args.mixed_precision, xla=args.xla)


class GpuStack(training.Stack):
    """The GPU stack, or with ``emulate`` the same graph on the CPU with every GPU hidden."""

    def __init__(self, options, emulate):
        self.options = options
        self.emulate = emulate

    def session_config(self):
        return session.session_config(mixed_precision=self.options.mixed_precision, xla=self.options.xla,
                                      emulate=self.emulate)

    def wrap_optimizer(self, opt):
        return session.wrap_optimizer(opt, self.options.mixed_precision)

    def describe_device(self):
        return session.describe_device(emulate=self.emulate)

    def distribution(self):
        return distribute.distribution(emulate=self.emulate)


def stack(options, environ=None):
    """The GPU stack of this process: the one place the tree reads the emulation switch."""
    return GpuStack(options, emulate=emulation.requested(environ))


BACKEND = training.Backend(
    name="gpu",
    decode_loop=dynamic_decode_loop,
    feeder_class=Feeder,
    options=session.GpuOptions(),
    add_arguments=add_arguments,
    options_from_args=options_from_args,
    stack=stack,
)


def main(argv=None):
    return training.main(BACKEND, argv)


if __name__ == "__main__":
    sys.exit(main())
