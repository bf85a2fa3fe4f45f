"""Checkpoints that travel with their run directory and are verified before anyone restores them.

A run directory is moved, copied, or trained in a container where it is mounted at another path
(/workspace/run), so nothing here trusts a stored absolute path: checkpoints are found by scanning
``model.ckpt-<step>.index`` files, and the ``checkpoint`` state file TensorFlow tools read is written
with relative paths. A checkpoint whose bytes were flipped or cut (a full disk, a dying node) is
skipped, with a log line saying which and why, in favour of the newest intact one. Training,
export, synthesis and evaluation all resolve checkpoints here.
"""
import errno
import logging
import os
import shutil

from common import atomic
from common.errors import Lip2WavError
from common.tf_compat import tf
from common.training import rundir
from common.training.rundir import checkpoint_step, list_checkpoints

LOG = logging.getLogger("lip2wav.checkpoints")
DEFAULT_KEEP = 5


class CheckpointError(Lip2WavError, ValueError):
    """A checkpoint that is missing, damaged or does not fit; the message names the fix."""


class DiskFullError(Lip2WavError):
    """The disk filled up while writing a checkpoint; the message says how much space is needed."""


def checkpoint_files(prefix):
    """Every file and temp folder that belongs to checkpoint ``prefix``."""
    folder, step = os.path.dirname(prefix), str(checkpoint_step(prefix))
    if not os.path.isdir(folder):
        return []
    matches = ((name, rundir.CHECKPOINT_FILE.match(name)) for name in sorted(os.listdir(folder)))
    return [os.path.join(folder, name) for name, match in matches if match and match.group(1) == step]


def checkpoint_bytes(prefix):
    return sum(os.path.getsize(path) for path in checkpoint_files(prefix) if os.path.isfile(path))


def problem(prefix):
    """Why checkpoint ``prefix`` cannot be restored (every tensor is read, so checksums are checked), or None."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in sorted(reader.get_variable_to_shape_map()):
            reader.get_tensor(name)
    except Exception as error:  # the reader raises OpError, IndexError, RuntimeError...: all mean unreadable
        lines = [line for line in str(error).splitlines() if line.strip()]
        return "%s: %s" % (type(error).__name__, lines[0] if lines else "unreadable")
    return None


def newest_intact(checkpoint_dir, quarantine=False):
    """The newest checkpoint that verifies, or None; each skipped one is logged with its reason.

    With ``quarantine`` (the trainer, the only writer), checkpoints skipped in favour of an intact one
    are moved to ``corrupt/`` so retention and the state file no longer see them; readers leave them.
    """
    skipped = []
    for prefix in reversed(list_checkpoints(checkpoint_dir)):
        why = problem(prefix)
        if why is None:
            if quarantine and skipped:
                _move_aside(checkpoint_dir, skipped)
            return prefix
        LOG.warning("skipped damaged checkpoint %s (%s)", prefix, why)
        skipped.append(prefix)
    return None


def _move_aside(checkpoint_dir, prefixes):
    moved_to = os.path.join(checkpoint_dir, rundir.CORRUPT_DIR)
    os.makedirs(moved_to, exist_ok=True)
    for prefix in prefixes:
        for path in checkpoint_files(prefix):
            os.replace(path, os.path.join(moved_to, os.path.basename(path)))
        LOG.warning("moved damaged checkpoint %s to %s", os.path.basename(prefix), moved_to)


def remove_partial_writes(checkpoint_dir):
    """Delete what an interrupted save left behind: temp folders and shards whose index was never written."""
    if not os.path.isdir(checkpoint_dir):
        return
    complete = set(str(checkpoint_step(p)) for p in list_checkpoints(checkpoint_dir))
    for name in sorted(os.listdir(checkpoint_dir)):
        match = rundir.CHECKPOINT_FILE.match(name)
        if match and (match.group(2).startswith("_temp") or match.group(1) not in complete):
            path = os.path.join(checkpoint_dir, name)
            LOG.info("removing %s, left by an interrupted checkpoint write", path)
            _remove(path)


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        atomic.remove_quietly(path)


def write_state(checkpoint_dir):
    """Write the ``checkpoint`` state file with paths relative to its folder (the run stays movable)."""
    names = [os.path.basename(p) for p in list_checkpoints(checkpoint_dir)]
    if not names:
        return
    lines = ['model_checkpoint_path: "%s"' % names[-1]] + ['all_model_checkpoint_paths: "%s"' % n for n in names]
    atomic.write_text(os.path.join(checkpoint_dir, rundir.STATE_FILE), "\n".join(lines) + "\n")


def prune(checkpoint_dir, keep):
    """Keep the newest ``keep`` checkpoints of the folder, whichever process wrote them."""
    for prefix in list_checkpoints(checkpoint_dir)[:-keep]:
        for path in checkpoint_files(prefix):
            _remove(path)
        LOG.info("removed old checkpoint %s (keeping the newest %d)", prefix, keep)


def is_disk_full(error):
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(error, tf.errors.ResourceExhaustedError) or "No space left" in str(error)


def disk_full_error(path, needed_bytes):
    free = shutil.disk_usage(path).free if os.path.exists(path) else 0
    return DiskFullError(
        "disk full under %s: the next checkpoint needs about %.1f MB and %.1f MB are free; free space or move "
        "the run directory to a larger disk, then rerun the same command to resume from the last checkpoint"
        % (path, needed_bytes / 1e6, free / 1e6))


def save(saver, session, checkpoint_dir, step, keep=DEFAULT_KEEP, estimate_bytes=0):
    """Save step ``step``, rewrite the state file, keep the newest ``keep``; returns the prefix.

    A failed save leaves no partial files; a full disk raises DiskFullError saying how much space
    a checkpoint needs (the previous checkpoint's size, else ``estimate_bytes``).
    """
    previous = list_checkpoints(checkpoint_dir)
    needed = checkpoint_bytes(previous[-1]) if previous else estimate_bytes
    prefix = rundir.checkpoint_prefix(checkpoint_dir, step)
    try:
        saver.save(session, rundir.checkpoint_prefix(checkpoint_dir, None), global_step=step, write_state=False)
    except (tf.errors.OpError, OSError) as error:
        for path in checkpoint_files(prefix):
            _remove(path)
        raise _write_error(error, prefix, needed)
    try:
        prune(checkpoint_dir, keep)
        write_state(checkpoint_dir)
    except OSError as error:  # the checkpoint itself is complete: keep it, it is found by scanning
        raise _write_error(error, os.path.join(checkpoint_dir, rundir.STATE_FILE), needed)
    return prefix


def _write_error(error, path, needed_bytes):
    if is_disk_full(error):
        return disk_full_error(os.path.dirname(path), needed_bytes)
    return CheckpointError("cannot write %s (%s); check that the run directory is writable"
                           % (path, str(error).splitlines()[0]))


def resolve(run_or_checkpoint):
    """A run directory or a checkpoint prefix -> (run directory, verified checkpoint prefix).

    A run directory yields its newest intact checkpoint; an explicit prefix must itself verify.
    """
    path = run_or_checkpoint.rstrip("/") or "/"
    if os.path.isdir(path):
        checkpoint_dir = rundir.checkpoint_dir(path)
        found = list_checkpoints(checkpoint_dir)
        if not found:
            raise CheckpointError("%s holds no checkpoint (no checkpoints/model.ckpt-N.index); train first "
                                  "(invoke train) or pass a model.ckpt-N prefix" % path)
        checkpoint = newest_intact(checkpoint_dir)
        if checkpoint is None:
            raise CheckpointError("every checkpoint in %s is damaged (%s); retrain or restore the folder from a "
                                  "backup" % (checkpoint_dir, ", ".join(os.path.basename(p) for p in found)))
        return path, checkpoint
    if not os.path.isfile(path + ".index"):
        raise CheckpointError("checkpoint %s does not exist; pass a run directory or a model.ckpt-N prefix" % path)
    why = problem(path)
    if why is not None:
        raise CheckpointError("checkpoint %s is damaged (%s); pass the run directory to use its newest intact "
                              "checkpoint" % (path, why))
    return rundir.run_dir_of(path), path
