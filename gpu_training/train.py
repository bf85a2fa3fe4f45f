"""GPU tree entrypoint: ``python -m gpu_training.train --data DIR --run-dir DIR``.

Wires the FIFOQueue feeder, the dynamic-length decode loop and the GPU session config
into the shared loop of common/training/loop.py. Without a GPU it runs on the CPU.
Started by horovodrun, each process trains one data-parallel rank (gpu_training/distribute.py).
"""
import sys

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


BACKEND = training.Backend(
    name="gpu",
    decode_loop=dynamic_decode_loop,
    feeder_class=Feeder,
    options=session.GpuOptions(),
    add_arguments=add_arguments,
    options_from_args=options_from_args,
    session_config=lambda options: session.session_config(mixed_precision=options.mixed_precision,
                                                          xla=options.xla, emulate=training.emulation_requested()),
    wrap_optimizer=lambda options: (lambda opt: session.wrap_optimizer(opt, options.mixed_precision)),
    describe_device=lambda options: session.describe_device(emulate=training.emulation_requested()),
    distribution=lambda options: distribute.distribution(emulate=training.emulation_requested()),
)


def main(argv=None):
    return training.main(BACKEND, argv)


if __name__ == "__main__":
    sys.exit(main())
