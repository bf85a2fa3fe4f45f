"""The one base class of every error a user can fix: its message says what went wrong and the fix.

`common.cli.run` turns any of them into one `error: ...` line and exit code 2; anything else
is a bug and keeps its traceback.
"""


class Lip2WavError(Exception):
    """A problem at the boundary (input, data, configuration, environment); the message names the fix."""
