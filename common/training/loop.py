"""The training loop both device trees share; each tree supplies a Backend.

Run directory layout (the same for every device, so runs compare side by side):
  hparams.json          the resolved hyperparameters, restored on resume
  checkpoints/          model.ckpt-<step>, written every --checkpoint-every steps and on Ctrl-C
  plots/                step-<N>-mel.png, step-<N>-alignment.png, loss.png
  events.*              TensorBoard summaries
  train_log.jsonl       one JSON line per logged step, with units
  run_summary.json      network, device tree, batch size, sec/step, samples/s, loss, wall time
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
from common import devices
from common.config import hparams as hparams_lib
from common.model import network as model_lib
from common import plotting
from common.data.dataset import BatchSource
from common.tf_compat import tf
from common.errors import Lip2WavError

LOG = logging.getLogger("lip2wav.train")
CHECKPOINT_NAME = "model.ckpt"
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
    describe_device(options) logs the one line saying where the graph runs.
    """

    def __init__(self, name, decode_loop, feeder_class, options, add_arguments, options_from_args,
                 session_config, wrap_optimizer, describe_device):
        self.name = name
        self.decode_loop = decode_loop
        self.feeder_class = feeder_class
        self.options = options
        self.add_arguments = add_arguments
        self.options_from_args = options_from_args
        self.session_config = session_config
        self.wrap_optimizer = wrap_optimizer
        self.describe_device = describe_device


def build_parser(backend):
    parser = argparse.ArgumentParser(
        prog="python -m " + devices.train_module(backend.name),
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


class TrainingGraph(object):
    """The training graph: feeder -> model -> losses -> train op, plus summaries."""

    def __init__(self, backend, options, hp, source):
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
            hp, self.losses.total, self.global_step, backend.wrap_optimizer(options))
        self.scalars = {
            "loss": self.losses.total, "decoder_loss": self.losses.decoder, "postnet_loss": self.losses.postnet,
            "stop_loss": self.losses.stop, "regularization_loss": self.losses.regularization,
            "learning_rate": self.learning_rate, "teacher_forcing_ratio": self.teacher_forcing_ratio,
            "gradient_norm": self.grad_norm}
        self.summary = tf.summary.merge([tf.summary.scalar(k, v) for k, v in sorted(self.scalars.items())])
        self.plot_tensors = {"predicted": self.outputs.postnet_mels[0], "target": self.feeder.mel_targets[0],
                             "alignment": self.outputs.alignments[0]}
        self.saver = tf.train.Saver(max_to_keep=5)


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
    backend.describe_device(options)
    source = BatchSource(args.data, args.split, hp, hp.tacotron_batch_size, seed=hp.tacotron_random_seed,
                         workers=args.workers, first_batch=start_step)
    for sub in ("checkpoints", "plots"):
        os.makedirs(os.path.join(args.run_dir, sub), exist_ok=True)
    hp.save(os.path.join(args.run_dir, "hparams.json"))
    tf.reset_default_graph()
    tf.set_random_seed(hp.tacotron_random_seed)
    graph = TrainingGraph(backend, options, hp, source)
    writer = tf.summary.FileWriter(args.run_dir)
    history = {"step": [], "loss": [], "step_seconds": []}
    started = time.time()
    with tf.Session(config=backend.session_config(options)) as sess:
        sess.run(tf.global_variables_initializer())
        if checkpoint:
            graph.saver.restore(sess, checkpoint)
            LOG.info("resumed from %s", checkpoint)
        else:
            writer.add_graph(sess.graph)
        step = int(sess.run(graph.global_step))
        graph.feeder.start(sess)
        progress = tqdm(total=args.steps, initial=step, desc="%s train" % backend.name, unit="step",
                        dynamic_ncols=True, disable=None)
        try:
            while step < args.steps:
                step = _train_step(graph, sess, args, writer, history, progress, step)
            if step % args.checkpoint_every:
                _save_checkpoint(graph, sess, args.run_dir, step)
        except KeyboardInterrupt:
            _save_checkpoint(graph, sess, args.run_dir, sess.run(graph.global_step))
            raise TrainingError("interrupted at step %d; checkpoint saved, rerun the same command to resume"
                                % sess.run(graph.global_step))
        finally:
            progress.close()
            graph.feeder.stop()
            writer.close()
    summary = _run_summary(backend, args, hp, history, graph.feeder, source, time.time() - started)
    atomic.write_json(os.path.join(args.run_dir, "run_summary.json"), summary)
    _plot_logged_losses(args.run_dir)
    LOG.info("run summary: %s", json.dumps(summary, sort_keys=True))
    return summary


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
        writer.add_summary(values["summary"], next_step)
        record = dict((k, float(v)) for k, v in values["scalars"].items())
        record.update(step=next_step, sec_per_step=seconds, time=time.time())
        with open(os.path.join(args.run_dir, "train_log.jsonl"), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    if want_checkpoint:
        _save_checkpoint(graph, sess, args.run_dir, next_step)
        _save_plots(args.run_dir, next_step, values["plots"])
    return next_step


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
