"""The training loop both device trees share; each tree supplies a Backend.

The run directory it writes is laid out in rundir.py (the same for every device, so runs compare side by side).
"""
import argparse
import contextlib
import json
import logging
import math
import os
import signal
import threading
import time

import numpy as np

from common import cli
from common import atomic
from common import devices
from common.config import hparams as hparams_lib
from common.model import network as model_lib
from common import plotting
from common import progress as progress_lib
from common.data.dataset import BatchSource, DEFAULT_MAX_BAD_SHARE
from common.tf_compat import tf
from common.errors import Lip2WavError
from common.training import checkpoints
from common.training import distribute
from common.training import history as history_lib
from common.training import rundir
from common.training.rundir import checkpoint_step

LOG = logging.getLogger("lip2wav.train")
# Signals that stop training after a checkpoint: Ctrl-C, and SIGTERM from docker stop, schedulers,
# preemption and a launcher whose other rank failed. The exit code is the shell's 128 + signal number
# (130, 143), which schedulers read as "terminated by that signal", so they requeue the job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingError(Lip2WavError, RuntimeError):
    """A run that cannot start or continue; the message names the fix."""


class TrainingStopped(TrainingError):
    """Training stopped by a signal; exit code 128 + signal number, after the checkpoint was saved."""

    def __init__(self, message, signum):
        TrainingError.__init__(self, message)
        self.exit_code = 128 + signum


class Stack(object):
    """One process's device stack, real or emulated on the CPU, picked once by the tree's Backend.stack.

    session_config() -> ConfigProto; wrap_optimizer(opt) -> the device's optimizer wrapper (loss scaling, mixed
    precision); describe_device() logs the one line saying where the graph runs; distribution() ->
    common.training.distribute.Distribution. The defaults: no wrapper, one process.
    """

    def session_config(self):
        raise NotImplementedError

    def wrap_optimizer(self, opt):
        return opt

    def describe_device(self):
        raise NotImplementedError

    def distribution(self):
        return distribute.Distribution()


class Backend(object):
    """What a device tree plugs into the shared loop.

    name: the target, "gpu" or "npu"; decode_loop: see common.model.network.Lip2Wav; feeder_class: a Feeder
    (see gpu_training/feeder.py); options: the tree's typed settings (a frozen dataclass whose
    defaults are the trees' defaults); add_arguments(parser) declares them as flags and
    options_from_args(args) reads them back, so tools build options without a command line;
    stack(options) -> Stack, the real or emulated device stack, picked once per process.
    """

    def __init__(self, name, decode_loop, feeder_class, options, add_arguments, options_from_args, stack):
        self.name = name
        self.decode_loop = decode_loop
        self.feeder_class = feeder_class
        self.options = options
        self.add_arguments = add_arguments
        self.options_from_args = options_from_args
        self.stack = stack


def build_parser(backend):
    parser = argparse.ArgumentParser(
        prog="python -m " + devices.train_module(backend.name),
        description="Train Lip2Wav for the %s target. Resumes automatically when --run-dir holds a checkpoint."
                    % backend.name.upper())
    parser.add_argument("--data", required=True, help="Preprocessed data directory (with train.txt).")
    parser.add_argument("--run-dir", required=True, help="Where checkpoints, plots, logs and hparams go.")
    parser.add_argument("--preset", default=None,
                        help="Named hyperparameter set (default synthetic): %s." % ", ".join(hparams_lib.preset_names()))
    parser.add_argument("--hparams-json", default=None, help="JSON file of overrides applied after the preset.")
    parser.add_argument("--hparams", default="", help="Overrides applied last, e.g. 'img_size=48,tacotron_batch_size=4'.")
    parser.add_argument("--steps", type=int, default=1000, help="Train until the global step reaches this (>= 0).")
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="Steps between checkpoints and plots (>= 1).")
    parser.add_argument("--log-every", type=int, default=10, help="Steps between log lines and summaries (>= 1).")
    parser.add_argument("--workers", type=int, default=2, help="Data loading threads (>= 1).")
    parser.add_argument("--keep-checkpoints", type=int, default=checkpoints.DEFAULT_KEEP,
                        help="Newest checkpoints kept in the run directory, whichever process wrote them (>= 1).")
    parser.add_argument("--max-bad-share", type=float, default=DEFAULT_MAX_BAD_SHARE,
                        help="Share of sampled windows that may fall on corrupt clips (skipped and named in the "
                             "run summary) before training stops, in (0, 1].")
    parser.add_argument("--split", default="train", help="Split list to train on.")
    backend.add_arguments(parser)
    return parser


# flag -> (lowest allowed value, inclusive); checked before anything is read or written.
FLAG_MINIMUMS = (("steps", 0, True), ("checkpoint_every", 1, True), ("log_every", 1, True), ("workers", 1, True),
                 ("keep_checkpoints", 1, True), ("max_bad_share", 0, False))


def check_flags(args):
    for name, lowest, inclusive in FLAG_MINIMUMS:
        value = getattr(args, name)
        if value < lowest or (value == lowest and not inclusive):
            raise TrainingError("--%s %s must be %s %s" % (name.replace("_", "-"), value, ">=" if inclusive else ">",
                                                          lowest))
    if args.max_bad_share > 1:
        raise TrainingError("--max-bad-share %s must be at most 1 (a share of windows)" % args.max_bad_share)
    if os.path.exists(args.run_dir) and not os.path.isdir(args.run_dir):
        raise TrainingError("--run-dir %s is a file; pass a directory (a new path, or a run to resume)" % args.run_dir)


def latest_checkpoint(run_dir):
    """The newest checkpoint prefix in the run (by scanning, not by the state file's stored path), or None."""
    found = rundir.list_checkpoints(rundir.checkpoint_dir(run_dir))
    return found[-1] if found else None


def resolve_run_hparams(args):
    """New run: resolve and save. Existing run: restore, and refuse conflicting flags once a checkpoint holds
    weights trained with the saved set; before that (an earlier start failed early) the flags replace it."""
    saved = os.path.join(args.run_dir, rundir.HPARAMS)
    requested = hparams_lib.resolve(args.preset or "synthetic", args.hparams_json, args.hparams)
    if not os.path.exists(saved):
        return requested
    restored = hparams_lib.load(saved)
    asked = args.preset or args.hparams or args.hparams_json
    if not asked or restored == requested:
        return restored
    differing = sorted(k for k, v in requested.to_dict().items() if restored.to_dict()[k] != v)
    if latest_checkpoint(args.run_dir):
        raise TrainingError("%s was trained with other hyperparameters (%s); resume without --preset/--hparams "
                            "or choose a new --run-dir" % (args.run_dir, ", ".join(differing)))
    LOG.warning("%s has no checkpoint yet: the hyperparameters asked for replace its %s (%s)", args.run_dir,
                rundir.HPARAMS, ", ".join(differing))
    return requested


def optimizer_wrapper(stack, distribution):
    """The device's wrapper (loss scaling, mixed precision) around the distribution's (gradient averaging).

    This nesting is the one both stacks document: loss scaling scales the loss, the inner wrapper averages
    the scaled gradients over ranks, the outer one unscales them and checks overflow (on every rank).
    """
    return lambda opt: stack.wrap_optimizer(distribution.wrap_optimizer(opt))


class TrainingGraph(object):
    """The training graph: feeder -> model -> losses -> train op, plus summaries."""

    def __init__(self, backend, stack, hp, source, distribution=None):
        self.distribution = distribution or distribute.Distribution()
        batch = hp.tacotron_batch_size
        self.feeder = backend.feeder_class(source, hp, batch)
        self.global_step = tf.train.get_or_create_global_step()
        self.teacher_forcing_ratio = model_lib.teacher_forcing_ratio(hp, self.global_step)
        net = model_lib.Lip2Wav(hp, backend.decode_loop)
        self.outputs = net.build(self.feeder.inputs, self.feeder.speaker_embeddings, self.feeder.mel_targets,
                                 is_training=True, global_step=self.global_step,
                                 teacher_forcing_ratio=self.teacher_forcing_ratio)
        self.losses = model_lib.losses(hp, self.outputs, self.feeder.mel_targets)
        self.train_op, self.learning_rate, self.grad_norm = model_lib.train_op(
            hp, self.losses.total, self.global_step, optimizer_wrapper(stack, self.distribution),
            world_size=self.distribution.size)
        self.scalars = {
            "loss": self.losses.total, "decoder_loss": self.losses.decoder, "postnet_loss": self.losses.postnet,
            "l1_loss": self.losses.l1, "regularization_loss": self.losses.regularization,
            "learning_rate": self.learning_rate, "teacher_forcing_ratio": self.teacher_forcing_ratio,
            "gradient_norm": self.grad_norm}
        self.summary = tf.summary.merge([tf.summary.scalar(k, v) for k, v in sorted(self.scalars.items())])
        self.plot_tensors = {"predicted": self.outputs.postnet_mels[0], "target": self.feeder.mel_targets[0],
                             "alignment": self.outputs.alignments[0]}
        # Retention is checkpoints.prune's: it counts every checkpoint in the folder, not only this Saver's.
        self.saver = tf.train.Saver(max_to_keep=None)
        self.checkpoint_bytes = sum(v.shape.num_elements() * v.dtype.base_dtype.size for v in tf.global_variables())
        self.broadcast = self.distribution.broadcast_op()


def _save_plots(run_dir, step, values):
    plotting.plot_mels(rundir.step_plot(run_dir, step, "mel"), values["predicted"], values["target"],
                       title="step %d" % step)
    plotting.plot_alignment(rundir.step_plot(run_dir, step, "alignment"), values["alignment"],
                            title="step %d" % step)


class StopFlag(object):
    """Set by a stop signal; the loop looks at it between steps, so a step and its log line are never cut apart."""

    def __init__(self):
        self.signum = None

    def handle(self, signum, _frame):
        if self.signum is None:
            LOG.info("%s received: stopping after this step", signal.Signals(signum).name)
            self.signum = signum


@contextlib.contextmanager
def _stop_signals():
    """A StopFlag that STOP_SIGNALS set while training (handlers exist only in the main thread)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = dict((signum, signal.signal(signum, flag.handle)) for signum in STOP_SIGNALS)
    try:
        yield flag
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _filesystem_error(error, path, needed_bytes):
    """An OSError while writing the run directory -> one line naming the path and the fix."""
    if checkpoints.is_disk_full(error):
        return checkpoints.disk_full_error(path, needed_bytes)
    return TrainingError("cannot write %s (%s); make the run directory writable or pass another --run-dir"
                         % (getattr(error, "filename", None) or path, getattr(error, "strerror", None) or error))


def _restorable_checkpoint(run_dir, chief=True):
    """The newest intact checkpoint, or None; the chief also moves damaged ones aside and removes leftovers of
    killed saves (the other ranks only read the shared directory)."""
    checkpoint_dir = rundir.checkpoint_dir(run_dir)
    try:
        if chief:
            checkpoints.remove_partial_writes(checkpoint_dir)
        checkpoint = checkpoints.newest_intact(checkpoint_dir, quarantine=chief)
    except OSError as error:
        raise _filesystem_error(error, checkpoint_dir, 0)
    if checkpoint is None and rundir.list_checkpoints(checkpoint_dir):
        raise TrainingError("every checkpoint in %s is damaged; restore them from a backup, or move the folder away "
                            "to train from step 0" % checkpoint_dir)
    return checkpoint


def _prepare_run_dir(run_dir, hp, restored_step, distribution):
    """Create the layout, save hparams.json (only if it changed) and the world size, cut the log back to the
    restored step (the chief's files; another rank only cuts back its own log)."""
    if not distribution.is_chief:
        history_lib.truncate_log(run_dir, restored_step, _train_log_name(distribution))
        return
    try:
        for sub in (rundir.CHECKPOINTS, rundir.PLOTS):
            os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
        atomic.check_writable_dir(run_dir)
    except OSError as error:  # named as the run directory, not the probe file
        raise _filesystem_error(OSError(error.errno, error.strerror, run_dir), run_dir, 0)
    try:
        hp.save(os.path.join(run_dir, rundir.HPARAMS))
        _save_world_size(run_dir, hp, distribution)
        history_lib.truncate_log(run_dir, restored_step)
    except OSError as error:
        raise _filesystem_error(error, run_dir, 0)


class _Run(object):
    """What the loop needs besides the graph: flags, hparams, data source, this segment and the earlier ones."""

    def __init__(self, backend, args, hp, source, restored_step, distribution):
        self.backend, self.args, self.hp, self.source = backend, args, hp, source
        self.distribution = distribution
        self.segment = history_lib.Segment()
        self.earlier_segments = history_lib.previous_segments(args.run_dir, restored_step)

    def write_summary(self, graph, last_step, ended):
        """The run summary (written by the chief only; every rank returns its own)."""
        summary = _run_summary(self, graph.feeder, last_step, ended)
        if self.distribution.is_chief:
            atomic.write_json(os.path.join(self.args.run_dir, rundir.SUMMARY), summary)
        return summary


def _save_checkpoint(graph, sess, run, step, ended="running"):
    """Checkpoint, then the run summary that covers it (the chief's; the other ranks write neither)."""
    if not run.distribution.is_chief:
        return run.write_summary(graph, step, ended)
    checkpoints.save(graph.saver, sess, rundir.checkpoint_dir(run.args.run_dir), step,
                     keep=run.args.keep_checkpoints, estimate_bytes=graph.checkpoint_bytes)
    return run.write_summary(graph, step, ended)


def train(backend, args):
    """Train to --steps; a stop signal saves a checkpoint and raises TrainingStopped."""
    with _stop_signals() as stop:
        return _train(backend, args, stop)


def _train(backend, args, stop):
    check_flags(args)
    hp = resolve_run_hparams(args)
    stack = backend.stack(backend.options_from_args(args))
    distribution = stack.distribution()
    chief = distribution.is_chief
    checkpoint = _restorable_checkpoint(args.run_dir, chief)
    start_step = checkpoint_step(checkpoint) if checkpoint else 0
    if start_step >= args.steps:
        LOG.info("%s is already at step %d (>= --steps %d); nothing to do", args.run_dir, start_step, args.steps)
        return {}
    stack.describe_device()
    _check_world_size(args.run_dir, hp, distribution, checkpoint)
    if distribution.size > 1:
        LOG.info("data parallel: %s", distribution.describe())
    shard = distribution.data_shard(hp.tacotron_random_seed)
    source = BatchSource(args.data, args.split, hp, hp.tacotron_batch_size, seed=shard.seed,
                         workers=args.workers, first_batch=start_step, max_bad_share=args.max_bad_share,
                         shard_index=shard.index, shard_count=shard.count)
    _prepare_run_dir(args.run_dir, hp, start_step, distribution)
    run = _Run(backend, args, hp, source, start_step, distribution)
    tf.reset_default_graph()
    tf.set_random_seed(hp.tacotron_random_seed)
    graph = TrainingGraph(backend, stack, hp, source, distribution)
    writer = tf.summary.FileWriter(args.run_dir) if chief else None
    with tf.Session(config=distribution.configure_session(stack.session_config())) as sess:
        sess.run(tf.global_variables_initializer())
        if checkpoint:
            graph.saver.restore(sess, checkpoint)
            LOG.info("resumed from %s", checkpoint)
        elif chief:
            writer.add_graph(sess.graph)
        _broadcast_initial_state(graph, sess, start_step)
        step = int(sess.run(graph.global_step))
        graph.feeder.start(sess)
        progress = progress_lib.bar(total=args.steps, initial=step, desc="%s train" % backend.name, unit="step",
                                    disable=not chief)
        try:
            while step < args.steps and stop.signum is None:
                step = _train_step(graph, sess, run, writer, progress, step)
            if stop.signum is not None:
                raise _stopped(graph, sess, run, step, stop.signum)
            summary = (run.write_summary(graph, step, "finished") if step % args.checkpoint_every == 0
                       else _save_checkpoint(graph, sess, run, step, "finished"))
            if chief:
                history_lib.plot_losses(args.run_dir)
        except OSError as error:
            raise _filesystem_error(error, args.run_dir, graph.checkpoint_bytes)
        finally:
            progress.close()
            graph.feeder.stop()
            if writer is not None:
                _close_events(writer)
    LOG.info("run summary%s: %s", "" if chief else " of rank %d" % distribution.rank,
             json.dumps(summary, sort_keys=True))
    return summary


def _close_events(writer):
    """Close the TensorBoard event file. Its last flush can fail on the disk that just stopped training: it
    is logged, so that the error naming the fix (disk full, read-only) is the one the user sees."""
    try:
        writer.close()
    except (OSError, RuntimeError) as error:
        LOG.warning("event file not flushed: %s", error)


def _check_world_size(run_dir, hp, distribution, checkpoint):
    """Refuse to resume with another world size: the global batch and the scaled learning rate depend on it."""
    if not checkpoint:
        return
    path = os.path.join(run_dir, rundir.DISTRIBUTION)
    recorded = 1
    if os.path.isfile(path):
        with open(path) as f:
            recorded = int(json.load(f)["world_size"])
    if recorded != distribution.size:
        raise TrainingError(
            "%s was trained by %d process(es) (global batch %d) and this run has %d: the global batch and the "
            "scaled learning rate would change mid-run; resume with %d process(es) (as many --devices) or start "
            "a new --run-dir" % (run_dir, recorded, recorded * hp.tacotron_batch_size, distribution.size, recorded))


def _save_world_size(run_dir, hp, distribution):
    atomic.write_json(os.path.join(run_dir, rundir.DISTRIBUTION), {
        "world_size": distribution.size, "distribution": distribution.name,
        "per_device_batch_size": hp.tacotron_batch_size,
        "global_batch_size": hp.tacotron_batch_size * distribution.size})


def _broadcast_initial_state(graph, sess, start_step):
    """Copy rank 0's freshly initialised or restored variables to every rank; every rank must be at its step."""
    if graph.broadcast is None:
        return
    sess.run(graph.broadcast)
    step = int(sess.run(graph.global_step))
    if step != start_step:
        raise TrainingError("rank %d restored step %d but rank 0 is at step %d: every host must see the same "
                            "--run-dir (a shared file system)" % (graph.distribution.rank, start_step, step))


def _train_log_name(distribution):
    return rundir.train_log_name(None if distribution.is_chief else distribution.rank)


def _stopped(graph, sess, run, step, signum):
    """Save the step reached and say so; the error the stop signal turns into."""
    name = signal.Signals(signum).name
    if step == 0:
        return TrainingStopped("stopped by %s before the first step; nothing to save, rerun the same command to "
                               "start" % name, signum)
    newest = latest_checkpoint(run.args.run_dir)
    if newest and checkpoint_step(newest) == step:
        run.write_summary(graph, step, "stopped by %s" % name)
    else:
        _save_checkpoint(graph, sess, run, step, "stopped by %s" % name)
    if run.distribution.is_chief:
        history_lib.plot_losses(run.args.run_dir)
    return TrainingStopped("stopped by %s at step %d; checkpoint saved, rerun the same command to resume"
                           % (name, step), signum)


def _train_step(graph, sess, run, writer, progress, step):
    args = run.args
    next_step = step + 1
    want_log = next_step % args.log_every == 0 or next_step == args.steps
    want_checkpoint = next_step % args.checkpoint_every == 0
    fetches = {"train": graph.train_op, "scalars": graph.scalars}
    if want_log:
        fetches["summary"] = graph.summary
    if want_checkpoint:
        fetches["plot_tensors"] = graph.plot_tensors
    tick = time.time()
    values = sess.run(fetches, feed_dict=graph.feeder.feed_dict())
    seconds = time.time() - tick
    loss = float(values["scalars"]["loss"])
    if not math.isfinite(loss):
        raise TrainingError("loss became %s at step %d; lower tacotron_initial_learning_rate with --hparams or "
                            "resume from the last checkpoint" % (loss, next_step))
    run.segment.add(next_step, loss, seconds)
    progress.update(1)
    progress.set_postfix(loss="%.4f" % loss, sec_per_step="%.2f" % seconds)
    if want_log:
        if writer is not None:
            writer.add_summary(values["summary"], next_step)
        record = dict((k, float(v)) for k, v in values["scalars"].items())
        record.update(step=next_step, sec_per_step=seconds, time=time.time())
        history_lib.append_log(os.path.join(args.run_dir, _train_log_name(graph.distribution)), record)
    if want_checkpoint:
        _save_checkpoint(graph, sess, run, next_step)
        if graph.distribution.is_chief:
            _save_plots(args.run_dir, next_step, values["plot_tensors"])
    return next_step


def _run_summary(run, feeder, last_step, ended):
    """The same fields on every device, so GPU and NPU runs sit in one table; they cover every segment."""
    hp, segment = run.hp, run.segment
    stats = run.source.stats
    current = segment.entry(last_step, ended, stats)
    whole = history_lib.whole_run(run.args.run_dir, run.earlier_segments + ([current] if current else []))
    per_step = whole["sec_per_step_median"] or segment.sec_per_step_median()
    total_step_time = float(np.sum(segment.step_seconds)) if segment.step_seconds else 0.0
    summary = {
        "network": "lip2wav",
        "target": run.backend.name,
        "preset": hp.preset,
        "batch_size": hp.tacotron_batch_size,
        "sec_per_step_median": per_step,
        "samples_per_sec": hp.tacotron_batch_size / per_step if per_step else None,
        "final_loss": segment.losses[-1] if segment.losses else None,
        "data_wait_share": feeder.wait_seconds / total_step_time if total_step_time else None,
        "max_bad_share": run.args.max_bad_share,
    }
    summary.update(whole)
    summary.update(_distribution_summary(hp, run.distribution, summary))
    return summary


def _distribution_summary(hp, distribution, summary):
    """World size and throughput of the whole job (ranks step in lockstep, so one rank's step time is the job's)."""
    per_device = summary["samples_per_sec"]
    return {
        "world_size": distribution.size,
        "per_device_batch_size": hp.tacotron_batch_size,
        "global_batch_size": hp.tacotron_batch_size * distribution.size,
        "samples_per_sec_per_device": per_device,
        "samples_per_sec": per_device * distribution.size if per_device is not None else None,
    }


def main(backend, argv=None):
    """Entrypoint of both trees: one clear line and exit code 2 on a boundary error, 130/143 after a stop signal."""
    args = build_parser(backend).parse_args(argv)

    def body():
        train(backend, args)
    return cli.run(body)
