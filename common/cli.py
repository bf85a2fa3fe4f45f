"""One runner for every command-line entrypoint: log format, quiet TensorFlow, one error line, exit 2."""
import logging
import sys
import warnings

from common.errors import Lip2WavError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"


def quiet_warnings():
    """Library deprecation warnings (TensorFlow's about TF1 names, Keras') are not the user's to act on."""
    warnings.filterwarnings("ignore", message=".*deprecated.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def run(body, level=logging.INFO):
    """Call body() and return the process exit code: its own (0 when None), or after a Lip2WavError its
    ``exit_code`` (2 unless the error sets one, e.g. 143 for training stopped by SIGTERM)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT)
    quiet_warnings()
    tf_compat = sys.modules.get("common.tf_compat")  # imported before logging was set up: say its kernels now
    if tf_compat is not None:
        tf_compat.log_kernels()
    try:
        code = body()
    except Lip2WavError as error:
        sys.stderr.write("error: %s\n" % error)
        return getattr(error, "exit_code", 2)
    return code or 0
