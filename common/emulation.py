"""The CPU-emulation switch: `invoke train --emulate` runs a target on the CPU even where its device exists.

The launchers export ENV=1 to every rank; each tree's entrypoint reads it once, through requested(), when it
picks its real or emulated stack (common/training/loop.py, Stack).
"""
import os

ENV = "LIP2WAV_EMULATE"


def requested(environ=None):
    """True when the launcher asked for the CPU even where a device exists."""
    return (os.environ if environ is None else environ).get(ENV) == "1"


def environment(environ):
    """A copy of ``environ`` that asks the rank to emulate its device on the CPU."""
    return dict(environ, **{ENV: "1"})
