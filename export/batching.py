"""Fixed-batch execution shared by the checkpoint and frozen-graph runners (no model code)."""
import numpy as np


def run_in_batches(run_batch, windows, batch_size):
    """Feed ``windows`` in fixed-size batches (the last one zero-padded) and stitch the outputs.

    ``run_batch`` maps one [batch_size, ...] array to a list of output arrays; the static
    batch is what the exported graphs require, so both runners pad instead of reshaping.
    """
    windows = np.asarray(windows, np.float32)
    chunks = []
    for start in range(0, len(windows), batch_size):
        chunk = windows[start:start + batch_size]
        padded = np.zeros((batch_size,) + tuple(windows.shape[1:]), np.float32)
        padded[:len(chunk)] = chunk
        chunks.append([output[:len(chunk)] for output in run_batch(padded)])
    if not chunks:
        probe = run_batch(np.zeros((batch_size,) + tuple(windows.shape[1:]), np.float32))
        return [output[:0] for output in probe]
    return [np.concatenate(outputs) for outputs in zip(*chunks)]


class SessionRunner(object):
    """A runner that owns ``self.session``: close() it, or use the runner as a context manager."""

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
