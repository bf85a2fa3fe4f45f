"""The training loop both device trees share; each tree supplies a Backend.

Run directory layout (the same for every device, so runs compare side by side):
  hparams.json          the resolved hyperparameters, restored on resume
  checkpoints/          model.ckpt-<step>, written every --checkpoint-every steps and on Ctrl-C
  plots/                step-<N>-mel.png, step-<N>-alignment.png, loss.png
  events.*              TensorBoard summaries
  train_log.jsonl       one JSON line per logged step, with units
  run_summary.json      network, device tree, batch size, sec/step, samples/s, loss, wall time
  distribution.json     world size and batch sizes of a data-parallel run (resume refuses another world size)
  train_log.rank<N>.jsonl   rank N's own log lines; every other file above is written by rank 0 only
"""
import argparse
import json
import logging
import math
import os
import time

import numpy as np
from tqdm import tqdm

from common import cli
from common import atomic
from common.config import hparams as hparams_lib
from common.model import network as model_lib
from common import plotting
from common.data.dataset import BatchSource
from common.tf_compat import tf
from common.errors import Lip2WavError
from common.training import distribute

LOG = logging.getLogger("lip2wav.train")
CHECKPOINT_NAME = "model.ckpt"
DISTRIBUTION_FILE = "distribution.json"
EMULATE_ENV = "LIP2WAV_EMULATE"


def emulation_requested(environ=None):
    """True when the launcher asked for the CPU even where a device exists (`invoke train --emulate`)."""
    return (os.environ if environ is None else environ).get(EMULATE_ENV) == "1"


class TrainingError(Lip2WavError, RuntimeError):
    """A run that cannot start or continue; the message names the fix."""


class Backend(object):
    """What a device tree plugs into the shared loop.

    name: "gpu" or "npu"; decode_loop: see common.model.network.Lip2Wav; feeder_class: a Feeder
    (see gpu_training/feeder.py); options: the tree's typed settings (a frozen dataclass whose
    defaults are the trees' defaults); add_arguments(parser) declares them as flags and
    options_from_args(args) reads them back, so tools build options without a command line;
    session_config(options) -> ConfigProto; wrap_optimizer(options) -> callable or None;
    describe_device(options) logs the one line saying where the graph runs;
    distribution(options) -> common.training.distribute.Distribution (default: one process).
    """

    def __init__(self, name, decode_loop, feeder_class, options, add_arguments, options_from_args,
                 session_config, wrap_optimizer, describe_device, distribution=None):
        self.name = name
        self.decode_loop = decode_loop
        self.feeder_class = feeder_class
        self.options = options
        self.add_arguments = add_arguments
        self.options_from_args = options_from_args
        self.session_config = session_config
        self.wrap_optimizer = wrap_optimizer
        self.describe_device = describe_device
        self.distribution = distribution or (lambda options: distribute.Distribution())


def build_parser(backend):
    parser = argparse.ArgumentParser(
        prog="python -m %s_training.train" % backend.name,
        description="Train Lip2Wav with the %s tree. Resumes automatically when --run-dir holds a checkpoint."
                    % backend.name.upper())
    parser.add_argument("--data", required=True, help="Preprocessed data directory (with train.txt).")
    parser.add_argument("--run-dir", required=True, help="Where checkpoints, plots, logs and hparams go.")
    parser.add_argument("--preset", default=None,
                        help="Named hyperparameter set (default synthetic): %s." % ", ".join(hparams_lib.preset_names()))
    parser.add_argument("--hparams-json", default=None, help="JSON file of overrides applied after the preset.")
    parser.add_argument("--hparams", default="", help="Overrides applied last, e.g. 'img_size=48,T=30'.")
    parser.add_argument("--steps", type=int, default=1000, help="Train until the global step reaches this.")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="Steps between checkpoints and plots.")
    parser.add_argument("--log-every", type=int, default=10, help="Steps between log lines and summaries.")
    parser.add_argument("--workers", type=int, default=2, help="Data loading threads.")
    parser.add_argument("--split", default="train", help="Split list to train on.")
    backend.add_arguments(parser)
    return parser


def latest_checkpoint(run_dir):
    return tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))


def checkpoint_step(path):
    return int(path.rsplit("-", 1)[1])


def resolve_run_hparams(args):
    """New run: resolve and save. Existing run: restore, and refuse conflicting flags."""
    saved = os.path.join(args.run_dir, "hparams.json")
    requested = hparams_lib.resolve(args.preset or "synthetic", args.hparams_json, args.hparams)
    if not os.path.exists(saved):
        return requested
    restored = hparams_lib.load(saved)
    asked = args.preset or args.hparams or args.hparams_json
    if asked and restored != requested and latest_checkpoint(args.run_dir):
        differing = sorted(k for k, v in requested.to_dict().items() if restored.to_dict()[k] != v)
        raise TrainingError("%s was trained with other hyperparameters (%s); resume without --preset/--hparams "
                            "or choose a new --run-dir" % (args.run_dir, ", ".join(differing)))
    return restored


def optimizer_wrapper(backend, options, distribution):
    """The device's wrapper (loss scaling, mixed precision) around the distribution's (gradient averaging).

    This nesting is the one both stacks document: loss scaling scales the loss, the inner wrapper averages
    the scaled gradients over ranks, the outer one unscales them and checks overflow (on every rank).
    """
    device_wrapper = backend.wrap_optimizer(options) or (lambda opt: opt)
    return lambda opt: device_wrapper(distribution.wrap_optimizer(opt))


class TrainingGraph(object):
    """The training graph: feeder -> model -> losses -> train op, plus summaries."""

    def __init__(self, backend, options, hp, source, distribution=None):
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
            hp, self.losses.total, self.global_step, optimizer_wrapper(backend, options, self.distribution),
            world_size=self.distribution.size)
        self.scalars = {
            "loss": self.losses.total, "decoder_loss": self.losses.decoder, "postnet_loss": self.losses.postnet,
            "stop_loss": self.losses.stop, "regularization_loss": self.losses.regularization,
            "learning_rate": self.learning_rate, "teacher_forcing_ratio": self.teacher_forcing_ratio,
            "gradient_norm": self.grad_norm}
        self.summary = tf.summary.merge([tf.summary.scalar(k, v) for k, v in sorted(self.scalars.items())])
        self.plot_tensors = {"predicted": self.outputs.postnet_mels[0], "target": self.feeder.mel_targets[0],
                             "alignment": self.outputs.alignments[0]}
        self.saver = tf.train.Saver(max_to_keep=5)
        self.broadcast = self.distribution.broadcast_op()


def _save_plots(run_dir, step, values):
    plots = os.path.join(run_dir, "plots")
    plotting.plot_mels(os.path.join(plots, "step-%d-mel.png" % step), values["predicted"], values["target"],
                       title="step %d" % step)
    plotting.plot_alignment(os.path.join(plots, "step-%d-alignment.png" % step), values["alignment"],
                            title="step %d" % step)


def _save_checkpoint(graph, sess, run_dir, step):
    graph.saver.save(sess, os.path.join(run_dir, "checkpoints", CHECKPOINT_NAME), global_step=step)


def train(backend, args):
    hp = resolve_run_hparams(args)
    checkpoint = latest_checkpoint(args.run_dir)
    start_step = checkpoint_step(checkpoint) if checkpoint else 0
    if start_step >= args.steps:
        LOG.info("%s is already at step %d (>= --steps %d); nothing to do", args.run_dir, start_step, args.steps)
        return {}
    options = backend.options_from_args(args)
    distribution = backend.distribution(options)
    chief = distribution.is_chief
    _check_world_size(args.run_dir, hp, distribution, checkpoint)
    backend.describe_device(options)
    if distribution.size > 1:
        LOG.info("data parallel: %s", distribution.describe())
    shard = distribution.data_shard(hp.tacotron_random_seed)
    source = BatchSource(args.data, args.split, hp, hp.tacotron_batch_size, seed=shard.seed,
                         workers=args.workers, first_batch=start_step, shard_index=shard.index,
                         shard_count=shard.count)
    if chief:
        for sub in ("checkpoints", "plots"):
            os.makedirs(os.path.join(args.run_dir, sub), exist_ok=True)
        hp.save(os.path.join(args.run_dir, "hparams.json"))
        _save_world_size(args.run_dir, hp, distribution)
    tf.reset_default_graph()
    tf.set_random_seed(hp.tacotron_random_seed)
    graph = TrainingGraph(backend, options, hp, source, distribution)
    writer = tf.summary.FileWriter(args.run_dir) if chief else None
    history = {"step": [], "loss": [], "step_seconds": []}
    started = time.time()
    with tf.Session(config=distribution.configure_session(backend.session_config(options))) as sess:
        sess.run(tf.global_variables_initializer())
        if checkpoint:
            graph.saver.restore(sess, checkpoint)
            LOG.info("resumed from %s", checkpoint)
        elif chief:
            writer.add_graph(sess.graph)
        _broadcast_initial_state(graph, sess, start_step)
        step = int(sess.run(graph.global_step))
        graph.feeder.start(sess)
        progress = tqdm(total=args.steps, initial=step, desc="%s train" % backend.name, unit="step",
                        dynamic_ncols=True, disable=None if chief else True)
        try:
            while step < args.steps:
                step = _train_step(graph, sess, args, writer, history, progress, step)
            if step % args.checkpoint_every and chief:
                _save_checkpoint(graph, sess, args.run_dir, step)
        except KeyboardInterrupt:
            if chief:
                _save_checkpoint(graph, sess, args.run_dir, sess.run(graph.global_step))
            raise TrainingError("interrupted at step %d; checkpoint saved, rerun the same command to resume"
                                % sess.run(graph.global_step))
        finally:
            progress.close()
            graph.feeder.stop()
            if writer is not None:
                writer.close()
    summary = _run_summary(backend, args, hp, history, graph.feeder, source, time.time() - started)
    summary.update(_distribution_summary(hp, distribution, summary))
    if chief:
        atomic.write_json(os.path.join(args.run_dir, "run_summary.json"), summary)
        _plot_logged_losses(args.run_dir)
    LOG.info("run summary%s: %s", "" if chief else " of rank %d" % distribution.rank,
             json.dumps(summary, sort_keys=True))
    return summary


def _check_world_size(run_dir, hp, distribution, checkpoint):
    """Refuse to resume with another world size: the global batch and the scaled learning rate depend on it."""
    if not checkpoint:
        return
    path = os.path.join(run_dir, DISTRIBUTION_FILE)
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
    atomic.write_json(os.path.join(run_dir, DISTRIBUTION_FILE), {
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


def _plot_logged_losses(run_dir):
    """loss.png over the whole run, resumed segments included (read back from train_log.jsonl)."""
    path = os.path.join(run_dir, "train_log.jsonl")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if records:
        plotting.plot_losses(os.path.join(run_dir, "plots", "loss.png"),
                             [r["step"] for r in records], [r["loss"] for r in records])


def _train_step(graph, sess, args, writer, history, progress, step):
    next_step = step + 1
    want_log = next_step % args.log_every == 0 or next_step == args.steps
    want_checkpoint = next_step % args.checkpoint_every == 0
    fetches = {"train": graph.train_op, "scalars": graph.scalars}
    if want_log:
        fetches["summary"] = graph.summary
    if want_checkpoint:
        fetches["plots"] = graph.plot_tensors
    tick = time.time()
    values = sess.run(fetches, feed_dict=graph.feeder.feed_dict())
    seconds = time.time() - tick
    loss = float(values["scalars"]["loss"])
    if not math.isfinite(loss):
        raise TrainingError("loss became %s at step %d; lower tacotron_initial_learning_rate with --hparams or "
                            "resume from the last checkpoint" % (loss, next_step))
    history["step"].append(next_step)
    history["loss"].append(loss)
    history["step_seconds"].append(seconds)
    progress.update(1)
    progress.set_postfix(loss="%.4f" % loss, sec_per_step="%.2f" % seconds)
    if want_log:
        if writer is not None:
            writer.add_summary(values["summary"], next_step)
        record = dict((k, float(v)) for k, v in values["scalars"].items())
        record.update(step=next_step, sec_per_step=seconds, time=time.time())
        with open(_train_log_path(args.run_dir, graph.distribution), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    if want_checkpoint and graph.distribution.is_chief:
        _save_checkpoint(graph, sess, args.run_dir, next_step)
        _save_plots(args.run_dir, next_step, values["plots"])
    return next_step


def _train_log_path(run_dir, distribution):
    """train_log.jsonl for the chief, train_log.rank<N>.jsonl for rank N."""
    name = "train_log.jsonl" if distribution.is_chief else "train_log.rank%d.jsonl" % distribution.rank
    return os.path.join(run_dir, name)


def _run_summary(backend, args, hp, history, feeder, source, wall_seconds):
    """The same fields on every device, so GPU and NPU runs sit in one table."""
    seconds = history["step_seconds"][1:] or history["step_seconds"]
    per_step = float(np.median(seconds)) if seconds else float("nan")
    total_step_time = float(np.sum(history["step_seconds"])) if history["step_seconds"] else 0.0
    return {
        "network": "lip2wav",
        "device_tree": backend.name,
        "preset": hp.speaker or "default",
        "batch_size": hp.tacotron_batch_size,
        "first_step": history["step"][0] if history["step"] else None,
        "last_step": history["step"][-1] if history["step"] else None,
        "sec_per_step_median": per_step,
        "samples_per_sec": hp.tacotron_batch_size / per_step if seconds else None,
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "data_wait_share": feeder.wait_seconds / total_step_time if total_step_time else None,
        "windows_skipped": source.stats.get("windows_skipped"),
        "wall_seconds": wall_seconds,
    }


def main(backend, argv=None):
    """Entrypoint of both trees: one clear line and exit code 2 on a boundary error."""
    args = build_parser(backend).parse_args(argv)

    def body():
        train(backend, args)
    return cli.run(body)
