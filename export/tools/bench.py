"""Benchmark both targets on this machine, in one run, so their figures compare.

For each preset: a synthetic speaker's data directory rendered at the preset's sizes; both targets' real
training graphs (feeder, decode loop, session config) trained side by side, alternating steps so that
load from other processes on a shared machine hits both alike (sec/step: median after one
untimed warmup step); then each target's feeder on a trivial graph (how many batches per second
it can supply, against how many the training step consumes). Then, with Horovod installed, each
target's real entrypoint as 1 and 2 data-parallel processes (samples/s, scaling efficiency). Lives in
export/ because it imports both device trees.

``python -m export.tools.bench [--presets synthetic,chess] [--steps N] [--world-sizes 1,2] [--out bench.json]``
prints the tables and writes the JSON atomically. With ``--baseline REF`` it instead times this
checkout against commit REF (a temporary git worktree): per target, one worker process per commit
(module names collide), steps alternated between them, wall and CPU seconds side by side;
``--baseline HEAD --baseline-env TF_ENABLE_ONEDNN_OPTS=0`` times the same code with Eigen's kernels against
oneDNN's. Every result names the CPU kernels that ran (oneDNN or Eigen) and the CPU.
"""
import argparse
import contextlib
import functools
import importlib.util
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from common import cli
from common import atomic
from common import devices
from common import emulation
from common.config import hparams as hparams_lib
from common.synthetic import astronaut as synthetic
from common.training import checkpoints
from common.training import distribute
from common.training import loop as training
from common.training import rundir
from common.data import timing
from common.data.dataset import BatchSource
from common.errors import Lip2WavError
from common import tf_compat
from common.tf_compat import tf
from containers import launch
from export import freeze
from export import targets
from export.graph import DEFAULT_BATCH_SIZE as SYNTHESIZER_BATCH
from export.graph import CheckpointPredictor, build_inference_graph
from export.infer import FrozenGraphRunner

LOG = logging.getLogger("lip2wav.bench")
# Timed steps after one warmup step; chess is ~2.6 TFLOP/step, tens of seconds on 2 cores.
DEFAULT_STEPS = {"synthetic": 10, "chess": 2}
MAX_NPU_TO_GPU = 1.1


def bench_feeder(feeder_class, source, hp, batch_size, steps=50, warmup=3, config=None):
    """Batches per second ``feeder_class`` (either target's Feeder) supplies to a trivial graph.

    The graph only reduces each batch tensor, so the rate is the feeder's ceiling; compare it
    with the model's steps per second. Takes ownership of ``source`` (stop() closes it).
    Returns a dict: batches_per_second, seconds, wait_share (loop time spent waiting), steps.
    """
    graph = tf.Graph()
    with graph.as_default():
        feeder = feeder_class(source, hp, batch_size)
        consume = tf.add_n([tf.reduce_sum(t) for t in (feeder.inputs, feeder.mel_targets, feeder.speaker_embeddings)])
        with tf.Session(graph=graph, config=config) as sess:
            feeder.start(sess)
            try:
                for _ in range(warmup):
                    sess.run(consume, feed_dict=feeder.feed_dict())
                waited = feeder.wait_seconds
                began = time.monotonic()
                for _ in range(steps):
                    sess.run(consume, feed_dict=feeder.feed_dict())
                seconds = time.monotonic() - began
                waited = feeder.wait_seconds - waited
            except (tf.errors.OutOfRangeError, tf.errors.CancelledError):
                feeder.check()
                raise
            finally:
                feeder.stop()
    return {"batches_per_second": steps / seconds, "seconds": seconds,
            "wait_share": waited / seconds, "steps": steps}


def make_data(work_dir, preset, hp):
    """A small synthetic speaker's data directory at the preset's img_size and fps; clips outlast a window by
    1.5 s."""
    data_dir = os.path.join(work_dir, "data-" + preset)
    seconds = max(timing.seconds(hp.T, hp), timing.mel_seconds(hp.mel_step_size, hp)) + 1.5
    synthetic.make_speaker(data_dir, hp, num_clips=6, seconds=seconds, seed=0)
    return data_dir


class TargetRun(object):
    """One target's real training graph (feeder, decode loop, optimizer) in its own graph and session.

    config replaces the target's session config; build_context (a context manager) wraps the graph's
    construction: export/tools/levers.py varies both.
    """

    def __init__(self, target, hp, data_dir, workers, config=None, build_context=contextlib.nullcontext):
        backend = targets.backend(target)
        self.target = target
        self.source = BatchSource(data_dir, "train", hp, hp.tacotron_batch_size, seed=hp.tacotron_random_seed,
                                  workers=workers)
        self.graph = tf.Graph()
        with self.graph.as_default(), build_context():
            tf.set_random_seed(hp.tacotron_random_seed)
            stack = backend.stack(backend.options)
            self.model = training.TrainingGraph(backend, stack, hp, self.source)
            self.session = tf.Session(graph=self.graph, config=config or stack.session_config())
            self.session.run(tf.global_variables_initializer())
        self.model.feeder.start(self.session)
        self.step_seconds = []
        self.loss = None

    def step(self):
        feeder = self.model.feeder
        tick = time.monotonic()
        values = self.session.run({"train": self.model.train_op, "loss": self.model.losses.total},
                                  feed_dict=feeder.feed_dict())
        self.step_seconds.append(time.monotonic() - tick)
        self.loss = float(values["loss"])

    def close(self):
        self.model.feeder.stop()
        self.session.close()


def alternate(runs, steps):
    """Step every run once untimed, then ``steps`` timed rounds in alternating order (same load for all).

    Returns per run: dict(sec_per_step median over the timed steps, data_wait_share, final_loss).
    The first step (graph optimisation, allocation) is not timed. Closes the runs.
    """
    try:
        for run in runs:
            run.step()
            run.model.feeder.wait_seconds = 0.0
        for index in range(steps):
            for run in (runs if index % 2 == 0 else runs[::-1]):
                run.step()
        results = []
        for run in runs:
            timed = run.step_seconds[1:]
            results.append({"sec_per_step": float(np.median(timed)), "final_loss": run.loss,
                            "data_wait_share": run.model.feeder.wait_seconds / float(np.sum(timed))})
    finally:
        for run in runs:
            run.close()
    return results


def open_runs(makers):
    """[maker() for maker in makers]; when one fails, the runs already open are closed first."""
    runs = []
    try:
        for make in makers:
            runs.append(make())
    except BaseException:
        for run in runs:
            run.close()
        raise
    return runs


def bench_training(hp, data_dir, steps, workers):
    """Train both targets from the same seed, steps alternated; {target: alternate()'s result}."""
    runs = open_runs([functools.partial(TargetRun, target, hp, data_dir, workers) for target in devices.TARGETS])
    return dict(zip(devices.TARGETS, alternate(runs, steps)))


def preset_hparams(preset, batch_size):
    """The preset's hparams with batch_size as tacotron_batch_size (0 keeps the preset's)."""
    overrides = "tacotron_batch_size=%d" % batch_size if batch_size else ""
    return hparams_lib.resolve(preset, None, overrides)


def bench_preset(work_dir, preset, batch_size, steps, feeder_steps, workers):
    hp = preset_hparams(preset, batch_size)
    data_dir = make_data(work_dir, preset, hp)
    trained = bench_training(hp, data_dir, steps, workers)
    rows = []
    for target in devices.TARGETS:
        source = BatchSource(data_dir, "train", hp, hp.tacotron_batch_size, seed=0, workers=workers)
        supply = bench_feeder(targets.backend(target).feeder_class, source, hp, hp.tacotron_batch_size,
                              steps=feeder_steps, warmup=2)
        sec = trained[target]["sec_per_step"]
        rows.append({
            "preset": preset, "target": target, "batch_size": hp.tacotron_batch_size, "timed_steps": steps,
            "sec_per_step": sec, "samples_per_sec": hp.tacotron_batch_size / sec,
            "feeder_batches_per_sec": supply["batches_per_second"], "train_batches_per_sec": 1.0 / sec,
            "data_wait_share": trained[target]["data_wait_share"], "final_loss": trained[target]["final_loss"],
        })
    gpu, npu = rows
    npu["npu_to_gpu"] = gpu["npu_to_gpu"] = npu["sec_per_step"] / gpu["sec_per_step"]
    return rows


def format_table(rows):
    header = ("preset", "target", "batch", "sec/step", "samples/s", "feeder batch/s", "train batch/s",
              "data wait", "npu/gpu")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rows:
        lines.append(" | ".join([
            r["preset"], r["target"], str(r["batch_size"]), "%.3f" % r["sec_per_step"], "%.2f" % r["samples_per_sec"],
            "%.1f" % r["feeder_batches_per_sec"], "%.3f" % r["train_batches_per_sec"],
            "%.1f%%" % (100.0 * (r["data_wait_share"] or 0.0)), "%.3f" % r["npu_to_gpu"]]))
    return "\n".join(lines)


def train_world(target, world_size, data_dir, run_dir, steps, workers):
    """Run ``target``'s real entrypoint as ``world_size`` data-parallel processes on the CPU; its run_summary.json.

    GPU: horovodrun (Gloo); NPU: the launcher's one process per device, collectives over Gloo (emulation).
    The first step (graph optimisation) is excluded from the summary's median sec/step.
    """
    devices = list(range(world_size))
    args = launch.train_args(data_dir, run_dir, "synthetic", "", steps + 1, steps + 1) + [
        "--log-every", str(steps + 1), "--workers", str(workers)]
    command = launch.train_command(target, devices, args, python=sys.executable)
    if target == "gpu":
        env = emulation.environment(os.environ)
        code = subprocess.call(command, env=env)
    else:
        table = None
        if world_size > 1:
            table = launch.write_rank_table(run_dir, launch.rank_table(devices, "127.0.0.1",
                                                                       dict((d, "127.0.0.1") for d in devices)))
        envs = [emulation.environment(e) for e in launch.process_envs(target, devices, table)]
        code = launch.run_ranks(command, envs, emulate=True)
    if code:
        raise training.TrainingError("%s training with %d process(es) exited with %d (log above)"
                                     % (target, world_size, code))
    with open(os.path.join(run_dir, rundir.SUMMARY)) as f:
        return json.load(f)


def bench_scaling(work_dir, target_names, world_sizes, steps, workers, repeats=2):
    """Samples/s of 1..N data-parallel processes per target, and the scaling efficiency against one process.

    The world sizes run in ABBA order (1, 2, 2, 1 for repeats=2) and each reports its median, so a load
    drifting on a shared machine hits every size alike. efficiency(N) = samples/s(N) / (N x samples/s(1)):
    1.0 is perfect; on one machine the processes share its cores, so it shows the cost of the all-reduce
    and of splitting the cores, not a device's speed-up.
    """
    if importlib.util.find_spec("horovod") is None:
        LOG.warning("Horovod is not installed: data-parallel scaling not measured (%s)",
                    distribute.HOROVOD_INSTALL_HINT)
        return []
    hp = hparams_lib.resolve("synthetic")
    data_dir = make_data(work_dir, "synthetic-world", hp)
    rows = []
    for target in target_names:
        summaries = dict((size, []) for size in world_sizes)
        for repeat in range(repeats):
            for size in (world_sizes if repeat % 2 == 0 else world_sizes[::-1]):
                run_dir = os.path.join(work_dir, "world-%s-%d-%d" % (target, size, repeat))
                summaries[size].append(train_world(target, size, data_dir, run_dir, steps, workers))
        single = float(np.median([s["samples_per_sec"] for s in summaries[1]])) if 1 in summaries else None
        for size in world_sizes:
            samples = float(np.median([s["samples_per_sec"] for s in summaries[size]]))
            rows.append({"target": target, "world_size": size,
                         "global_batch_size": summaries[size][0]["global_batch_size"],
                         "sec_per_step": float(np.median([s["sec_per_step_median"] for s in summaries[size]])),
                         "samples_per_sec": samples, "samples_per_sec_per_device": samples / size,
                         "runs": len(summaries[size]),
                         "scaling_efficiency": samples / (size * single) if single else None})
    return rows


def format_scaling(rows):
    lines = ["target | processes | global batch | sec/step | samples/s | per device | efficiency", " | ".join(
        "---" for _ in range(7))]
    for r in rows:
        lines.append("%s | %d | %d | %.3f | %.2f | %.2f | %s" % (
            r["target"], r["world_size"], r["global_batch_size"], r["sec_per_step"], r["samples_per_sec"],
            r["samples_per_sec_per_device"],
            "-" if r["scaling_efficiency"] is None else "%.2f" % r["scaling_efficiency"]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m export.tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="synthetic,chess", help="Comma-separated presets to measure.")
    parser.add_argument("--batch-size", type=int, default=0, help="Batch size for every preset (0: the preset's).")
    parser.add_argument("--steps", type=int, default=0,
                        help="Timed steps after one warmup step (0: 10 for synthetic, 2 otherwise).")
    parser.add_argument("--feeder-steps", type=int, default=20, help="Batches timed per feeder.")
    parser.add_argument("--workers", type=int, default=2, help="Data loading threads.")
    parser.add_argument("--work-dir", default=None, help="Keep data and runs here (default: a temporary folder).")
    parser.add_argument("--out", default=rundir.BENCH, help="Where the JSON results go.")
    parser.add_argument("--world-sizes", default="1,2",
                        help="Data-parallel process counts to measure on the synthetic preset ('' skips; needs Horovod).")
    parser.add_argument("--world-targets", default="npu,gpu", help="Targets whose data-parallel scaling is measured.")
    parser.add_argument("--world-steps", type=int, default=10, help="Timed steps per data-parallel run.")
    parser.add_argument("--world-repeats", type=int, default=2,
                        help="Runs per world size, in ABBA order (medians reported).")
    parser.add_argument("--baseline", default=None,
                        help="Git commit to time this checkout against, side by side (steps alternated).")
    parser.add_argument("--targets", default="gpu,npu", help="With --baseline: comma-separated targets to time.")
    parser.add_argument("--baseline-env", default="",
                        help="With --baseline: K=V,... set for the baseline's worker only, e.g. --baseline HEAD "
                             "--baseline-env TF_ENABLE_ONEDNN_OPTS=0 times this code with and without oneDNN.")
    parser.add_argument("--inference", action="store_true",
                        help="Time inference instead: windows/s and real-time factor, checkpoint vs frozen graph.")
    args = parser.parse_args(argv)
    if args.inference:
        return cli.run(lambda: run_inference_bench(args))
    if args.baseline:
        return cli.run(lambda: run_baseline_bench(args))
    return cli.run(lambda: run_bench(args))


def run_bench(args):
    """Measure every requested preset, print the table and write the JSON results."""
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="lip2wav-bench-")
    rows = []
    scaling = []
    started = time.time()
    try:
        for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
            steps = args.steps or DEFAULT_STEPS.get(preset, 2)
            rows.extend(bench_preset(work_dir, preset, args.batch_size, steps, args.feeder_steps, args.workers))
        if args.world_sizes:
            scaling = bench_scaling(work_dir, [t.strip() for t in args.world_targets.split(",") if t.strip()],
                                    [int(n) for n in args.world_sizes.split(",")], args.world_steps, args.workers,
                                    args.world_repeats)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    table = format_table(rows)
    print(table)
    if scaling:
        print(format_scaling(scaling))
    print(tf_compat.kernels_line())
    atomic.write_json(args.out, {
        "rows": rows, "table": table, "scaling": scaling, "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
        "machine": platform.machine(), "tensorflow": tf.version.VERSION, "wall_seconds": time.time() - started,
        "kernels": tf_compat.kernels(),
        "npu_within_limit": all(r["npu_to_gpu"] <= MAX_NPU_TO_GPU for r in rows),
    })
    LOG.info("wrote %s", args.out)


INFERENCE_BATCHES = (1, SYNTHESIZER_BATCH)


def fresh_checkpoint(run_dir, hp):
    """A run directory with hparams.json and an initialised (untrained) checkpoint: speed needs no training."""
    checkpoint_dir = rundir.checkpoint_dir(run_dir)
    os.makedirs(checkpoint_dir, exist_ok=True)
    hp.save(os.path.join(run_dir, rundir.HPARAMS))
    with tf.Graph().as_default():
        tf.set_random_seed(hp.tacotron_random_seed)
        build_inference_graph(hp, "npu", 1)
        tf.train.get_or_create_global_step()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            checkpoints.save(tf.train.Saver(), sess, checkpoint_dir, 0)
    return run_dir


def _windows_per_second(predict, windows, repeats):
    predict(windows)
    best = min(_seconds(lambda: predict(windows)) for _ in range(repeats))
    return len(windows) / best


def _seconds(function):
    began = time.monotonic()
    function()
    return time.monotonic() - began


def bench_inference(work_dir, preset, repeats=3):
    """Rows of windows/s and real-time factor per target, batch and path (checkpoint, frozen graph)."""
    hp = hparams_lib.resolve(preset)
    run_dir = fresh_checkpoint(os.path.join(work_dir, "run-" + preset), hp)
    window_seconds = hp.mel_step_size / hp.mel_frames_per_second
    rows = []
    for target in ("gpu", "npu"):
        for batch in INFERENCE_BATCHES:
            windows = np.random.RandomState(0).rand(batch, hp.T, hp.img_size, hp.img_size, 3).astype(np.float32)
            out_dir = os.path.join(work_dir, "frozen-%s-%s-%d" % (preset, target, batch))
            freeze.freeze(run_dir, out_dir, target, batch)
            with CheckpointPredictor(run_dir, target, batch) as predictor:
                from_checkpoint = _windows_per_second(predictor.predict, windows, repeats)
            with FrozenGraphRunner(os.path.join(out_dir, freeze.base_name(target) + ".pb")) as runner:
                from_frozen = _windows_per_second(runner.predict, windows, repeats)
            for path, rate in (("checkpoint", from_checkpoint), ("frozen", from_frozen)):
                rows.append({"preset": preset, "target": target, "batch_size": batch, "path": path,
                             "windows_per_second": rate, "real_time_factor": 1.0 / (rate * window_seconds),
                             "load_average": list(os.getloadavg())})
    return rows


def format_inference_table(rows):
    header = ("preset", "target", "batch", "path", "windows/s", "real-time factor", "load avg 1m")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    lines += [" | ".join([r["preset"], r["target"], str(r["batch_size"]), r["path"], "%.2f" % r["windows_per_second"],
                          "%.3f" % r["real_time_factor"], "%.1f" % r["load_average"][0]]) for r in rows]
    return "\n".join(lines)


def run_inference_bench(args):
    """Inference speed per preset; prints the table and writes the JSON."""
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="lip2wav-bench-")
    try:
        rows = [row for preset in [p.strip() for p in args.presets.split(",") if p.strip()]
                for row in bench_inference(work_dir, preset)]
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    table = format_inference_table(rows)
    print(table)
    print(tf_compat.kernels_line())
    atomic.write_json(args.out, {"rows": rows, "table": table, "cpu_count": os.cpu_count(), "kernels": tf_compat.kernels(),
                                 "tensorflow": tf.version.VERSION, "load_average": list(os.getloadavg())})
    LOG.info("wrote %s", args.out)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_worker.py")


class BaselineError(Lip2WavError, RuntimeError):
    """The baseline commit cannot be checked out or its worker failed; the message names the fix."""


class _Worker(object):
    """A bench_worker.py process: one target of one checkout, stepped over a pipe."""

    def __init__(self, label, root, target, preset, batch_size, data_dir, workers, env=None):
        self.label = label
        command = [sys.executable, WORKER, "--root", root, "--target", target, "--preset", preset,
                   "--batch-size", str(batch_size), "--data", data_dir, "--workers", str(workers)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        universal_newlines=True, bufsize=1,
                                        env=dict(tf_compat.user_environment(), **(env or {})))
        self.steps = []
        self.ready = self._read()

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            raise BaselineError("the %s worker exited (code %s); its log is above" % (self.label, self.process.wait()))
        return json.loads(line)

    def step(self):
        self.process.stdin.write("step\n")
        self.steps.append(self._read())

    def stop(self):
        """Peak RSS in bytes (None when the worker already died)."""
        if self.process.poll() is not None:
            return None
        self.process.stdin.write("stop\n")
        self.process.stdin.flush()
        peak = self._read()["peak_rss_bytes"]
        self.process.wait()
        return peak


def parse_env(text):
    """{K: V} from "K=V,K=V"; a malformed item is a BaselineError naming it."""
    env = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BaselineError("--baseline-env item %r is not K=V: pass e.g. TF_ENABLE_ONEDNN_OPTS=0" % item)
        env[key] = value
    return env


def _git(*argv):
    result = subprocess.run(["git", "-C", ROOT] + list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    if result.returncode:
        raise BaselineError("git %s failed (%s): pass a commit of this repository as --baseline"
                            % (" ".join(argv), result.stderr.strip()))
    return result.stdout.strip()


def compare_checkouts(labels_roots_envs, target, preset, batch_size, data_dir, steps, workers):
    """Alternate the steps of one worker per (label, root, extra environment); rows with medians and each
    step's figures."""
    runs = []
    try:
        for label, root, env in labels_roots_envs:
            runs.append(_Worker(label, root, target, preset, batch_size, data_dir, workers, env))
        for index in range(steps):
            for run in (runs if index % 2 == 0 else runs[::-1]):
                run.step()
    finally:
        peaks = [run.stop() for run in runs]
    rows = []
    for run, peak in zip(runs, peaks):
        seconds = [s["seconds"] for s in run.steps]
        rows.append({"preset": preset, "target": target, "commit": run.label, "batch_size": run.ready["batch_size"],
                     "timed_steps": steps, "sec_per_step": float(np.median(seconds)),
                     "cpu_sec_per_step": float(np.median([s["cpu_seconds"] for s in run.steps])),
                     "data_wait_share": sum(s["wait_seconds"] for s in run.steps) / sum(seconds),
                     "final_loss": run.steps[-1]["loss"], "peak_rss_bytes": peak,
                     "kernels": run.ready.get("kernels"),
                     "step_seconds": seconds, "load_average": list(os.getloadavg())})
    for row in rows:
        row["vs_baseline"] = row["sec_per_step"] / rows[-1]["sec_per_step"]
        row["cpu_vs_baseline"] = row["cpu_sec_per_step"] / rows[-1]["cpu_sec_per_step"]
    return rows


def format_baseline_table(rows):
    header = ("preset", "target", "commit", "kernels", "batch", "sec/step", "vs base", "CPU s/step", "CPU vs base",
              "data wait", "peak RSS GiB", "load avg 1m")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for r in rows:
        lines.append(" | ".join([
            r["preset"], r["target"], r["commit"], (r["kernels"] or {}).get("kernels", "?"), str(r["batch_size"]),
            "%.3f" % r["sec_per_step"],
            "%.3f" % r["vs_baseline"], "%.3f" % r["cpu_sec_per_step"], "%.3f" % r["cpu_vs_baseline"],
            "%.1f%%" % (100.0 * r["data_wait_share"]),
            "%.2f" % (r["peak_rss_bytes"] / 2.0 ** 30) if r["peak_rss_bytes"] else "?",
            "%.1f" % r["load_average"][0]]))
    return "\n".join(lines)


def run_baseline_bench(args):
    """This checkout vs --baseline, per preset and target, in one run; prints the table, writes the JSON."""
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="lip2wav-bench-")
    baseline_root = os.path.join(work_dir, "baseline")
    commit = _git("rev-parse", "--short", args.baseline + "^{commit}")
    head = _git("rev-parse", "--short", "HEAD")
    baseline_env = parse_env(args.baseline_env)
    baseline_label = "%s (baseline%s)" % (commit, "".join(", %s=%s" % item for item in sorted(baseline_env.items())))
    _git("worktree", "add", "--detach", baseline_root, commit)
    rows = []
    started = time.time()
    try:
        for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
            hp = preset_hparams(preset, args.batch_size)
            data_dir = make_data(work_dir, preset, hp)
            steps = args.steps or DEFAULT_STEPS.get(preset, 2)
            for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
                checkouts = [(head + " (this)", ROOT, None), (baseline_label, baseline_root, baseline_env)]
                rows.extend(compare_checkouts(checkouts, target, preset, args.batch_size, data_dir, steps,
                                              args.workers))
                LOG.info("%s", format_baseline_table(rows))
    finally:
        _git("worktree", "remove", "--force", baseline_root)
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    table = format_baseline_table(rows)
    print(table)
    for row in rows:
        if row["kernels"]:
            print("%s: %s" % (row["commit"], tf_compat.kernels_line(row["kernels"])))
    atomic.write_json(args.out, {"rows": rows, "table": table, "baseline": commit, "head": head,
                                 "baseline_env": baseline_env,
                                 "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
                                 "tensorflow": tf.version.VERSION, "wall_seconds": time.time() - started})
    LOG.info("wrote %s", args.out)


if __name__ == "__main__":
    sys.exit(main())
