"""GPU tree entrypoint: ``python -m gpu_training.train --data DIR --run-dir DIR``.

Wires the FIFOQueue feeder, the dynamic-length decode loop and the GPU session config
into the shared loop of common/training.py. Without a GPU it runs on the CPU.
"""
import sys

from common import training
from gpu_training import session
from gpu_training.decoder import dynamic_decode_loop
from common.feeding import FeederError
from gpu_training.feeder import Feeder


def add_arguments(parser):
    parser.add_argument("--mixed-precision", action="store_true",
                        help="Automatic mixed precision graph rewrite with dynamic loss scaling.")
    parser.add_argument("--xla", action="store_true", help="Compile the graph with XLA.")


BACKEND = training.Backend(
    name="gpu",
    decode_loop=dynamic_decode_loop,
    feeder_class=Feeder,
    add_arguments=add_arguments,
    session_config=lambda args: session.session_config(mixed_precision=args.mixed_precision, xla=args.xla,
                                                       emulate=training.emulation_requested()),
    wrap_optimizer=lambda args: (lambda opt: session.wrap_optimizer(opt, args.mixed_precision)),
    describe_device=lambda args: session.describe_device(emulate=training.emulation_requested()),
    errors=(FeederError,),
)


def main(argv=None):
    return training.main(BACKEND, argv)


if __name__ == "__main__":
    sys.exit(main())
