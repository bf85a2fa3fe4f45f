"""Where a training step's time goes: a TensorFlow timeline and a table by model part and op type.

For one preset and one target: the target's real training graph (feeder, decode loop, session config)
on a small synthetic speaker's data; untimed warmup steps, timed steps (sec/step, input wait), then traced
steps (RunOptions FULL_TRACE). Writes the trace as chrome-trace JSON (open it at chrome://tracing
or ui.perfetto.dev) and prints the step's wall time by model part (forward and backward; ops that
ran side by side share it), the most
expensive op types, FLOPs per step (the profiler's count over the ops that ran, plus the 3D
convolutions and their two gradients counted analytically, which the profiler misses) and the
achieved FLOP/s against a matmul peak measured in the same process. On an Ascend host the
TF Adapter's own profiler is switched on too and writes under ``<out>/ascend``.

``python -m export.tools.profile --preset chess --target npu [--batch-size 8] [--out profile]``
"""
import argparse
import collections
import logging
import os
import re
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

from common import atomic, cli
from common import devices
from common.data.dataset import BatchSource
from common import tf_compat
from common.tf_compat import tf, timeline
from common.training import loop as training
from export import targets
from export.tools import bench
from npu_training import session as npu_session

LOG = logging.getLogger("lip2wav.profile")
# Model parts by the name scope of their ops; backward ops carry the same scope under "gradients/".
PARTS = (
    ("feeder/input", re.compile(r"^feeder/")),
    ("encoder 3D convs", re.compile(r"^Tacotron_model/inference/encoder_convolutions/")),
    ("encoder BiLSTM", re.compile(r"^Tacotron_model/inference/encoder_LSTM/")),
    ("decoder loop", re.compile(r"^Tacotron_model/inference/(memory_layer|decoder)/")),
    ("postnet", re.compile(r"^Tacotron_model/inference/postnet_")),
    ("losses", re.compile(r"^losses/")),
    ("optimizer update", re.compile(r"^(Adam|clip_by_global_norm|global_norm|learning_rate|beta[12]_power)")),
)
TOP_OP_TYPES = 15


def part_of(node_name):
    """(model part, "fwd" or "bwd") of an op, from its name scope."""
    direction = "fwd"
    name = node_name
    if name.startswith("gradients/"):
        direction, name = "bwd", name[len("gradients/"):]
    for part, pattern in PARTS:
        if pattern.match(name):
            return part, direction
    return "other", direction


def _dims(shape):
    return [d.size for d in shape.dim]


OpRun = collections.namedtuple("OpRun", "name op_type micros wall_micros flops")


def op_stats(step_stats, graph):
    """[OpRun] of every op execution (loop iterations apart).

    micros is the op's own duration; wall_micros its share of the step's wall time (see
    wall_shares), so ops that ran side by side on the two cores are not counted twice.
    FLOPs are counted for the matrix products and convolutions (forward and both gradients) from
    the shapes the trace recorded, so loop bodies count once per iteration and dynamic shapes
    (the GPU target's decode loop) are known; element-wise ops are left out (memory-bound, few FLOPs).
    tf.profiler's float_ops are no help here: on this graph it counts only the forward Conv3D.
    """
    executions = []
    shapes = {}
    for device in step_stats.dev_stats:
        if "/stream:" in device.device or "/memcpy" in device.device:
            continue
        for node in device.node_stats:
            name = node.node_name.split(":")[0]
            outputs = dict((out.slot, _dims(out.tensor_description.shape)) for out in node.output)
            shapes[name] = outputs
            executions.append((name, node.all_start_micros, node.all_end_rel_micros, outputs))
    walls = wall_shares([(start, start + micros) for _, start, micros, _ in executions])
    ops = []
    for (name, _, micros, outputs), wall in zip(executions, walls):
        try:
            op = graph.get_operation_by_name(name)
        except (KeyError, ValueError):
            ops.append(OpRun(name, name, micros, wall, 0))
            continue
        ops.append(OpRun(name, op.type, micros, wall, _flops(op, outputs.get(0), shapes)))
    return ops


def wall_shares(intervals):
    """Each (start, end)'s share of wall time: every moment split evenly among the intervals running then.

    The shares add up to the time covered by any interval, so a table of them adds up to the step.
    """
    boundaries = sorted([(start, 0, index) for index, (start, _) in enumerate(intervals)]
                        + [(end, 1, index) for index, (_, end) in enumerate(intervals)])
    shares = [0.0] * len(intervals)
    running = set()
    previous = None
    for moment, is_end, index in boundaries:
        if running:
            slice_each = (moment - previous) / float(len(running))
            for other in running:
                shares[other] += slice_each
        previous = moment
        if is_end:
            running.discard(index)
        else:
            running.add(index)
    return shares


def _input_dims(op, index, shapes):
    """An input's dims: each static one where known, else as the trace recorded its producer's output."""
    tensor = op.inputs[index]
    static = tensor.shape.as_list() if tensor.shape.dims is not None else None
    if static is not None and None not in static:
        return static
    traced = shapes.get(tensor.op.name, {}).get(tensor.value_index)
    if static is None or (traced is not None and len(traced) == len(static)):
        return traced if static is None else [s if s is not None else t for s, t in zip(static, traced)]
    return static


def _flops(op, output, shapes):
    """FLOPs of one execution of a matrix product or convolution (0 for any other op)."""
    if not output:
        return 0
    out = int(np.prod(output))
    if op.type in ("MatMul", "_FusedMatMul"):
        a, b = _input_dims(op, 0, shapes), _input_dims(op, 1, shapes)
        inner = [a[0 if op.get_attr("transpose_a") else 1] if a else None,
                 b[1 if op.get_attr("transpose_b") else 0] if b else None]
        inner = [d for d in inner if d is not None]
        return 2 * out * inner[0] if inner else 0
    if op.type in ("Conv2D", "Conv3D", "_FusedConv2D"):
        kernel = _input_dims(op, 1, shapes)
        return 2 * out * int(np.prod(kernel[:-1])) if kernel and None not in kernel else 0
    if op.type in ("Conv2DBackpropInput", "Conv3DBackpropInputV2"):
        kernel = _input_dims(op, 1, shapes)
        return 2 * out * int(np.prod(kernel[:-2])) * kernel[-1] if kernel and None not in kernel else 0
    if op.type in ("Conv2DBackpropFilter", "Conv3DBackpropFilterV2"):
        grad = _input_dims(op, 2, shapes)
        return 2 * out // output[-1] * int(np.prod(grad)) if grad and None not in grad else 0
    return 0


def matmul_peak(config, size=2048, repeats=8, rounds=3):
    """Best fp32 matmul FLOP/s of a plain TensorFlow loop under the same session config."""
    graph = tf.Graph()
    with graph.as_default():
        a = tf.Variable(tf.random_normal([size, size]))
        b = tf.Variable(tf.random_normal([size, size]))
        product = a
        for _ in range(repeats):
            product = tf.matmul(product, b) * (1.0 / size)
        result = tf.reduce_sum(product)
        with tf.Session(graph=graph, config=config) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(result)
            best = min(_timed(lambda: sess.run(result)) for _ in range(rounds))
    return 2.0 * size ** 3 * repeats / best


def _timed(function):
    began = time.monotonic()
    function()
    return time.monotonic() - began


def summarise(ops, step_seconds, peak):
    """The profile as a dict: wall time by part and direction, the top op types, FLOPs, FLOP/s.

    Shares are of the traced step's wall time; op seconds (the ops' own durations, as the timeline
    draws them) are kept beside them and exceed the wall time when ops ran side by side.
    """
    by_part = collections.defaultdict(lambda: [0.0, 0.0])
    by_type = collections.defaultdict(lambda: [0.0, 0.0, 0])
    flops = 0
    for op in ops:
        part = by_part[part_of(op.name)]
        part[0] += op.wall_micros
        part[1] += op.micros
        kind = by_type[op.op_type]
        kind[0] += op.wall_micros
        kind[1] += op.micros
        kind[2] += 1
        flops += op.flops
    total = float(sum(wall for wall, _ in by_part.values())) or 1.0
    parts = [{"part": part, "direction": direction, "wall_seconds": wall / 1e6, "op_seconds": micros / 1e6,
              "share": wall / total}
             for (part, direction), (wall, micros) in sorted(by_part.items(), key=lambda item: -item[1][0])]
    types = [{"op_type": op_type, "wall_seconds": wall / 1e6, "op_seconds": micros / 1e6, "share": wall / total,
              "executions": count}
             for op_type, (wall, micros, count) in sorted(by_type.items(), key=lambda item: -item[1][0])[:TOP_OP_TYPES]]
    achieved = flops / step_seconds
    return {"parts": parts, "op_types": types, "flops_per_step": flops, "sec_per_step": step_seconds,
            "achieved_flops_per_second": achieved, "matmul_peak_flops_per_second": peak,
            "achieved_over_peak": achieved / peak, "seconds_at_matmul_peak": flops / peak}


def format_report(profile):
    lines = ["part | direction | wall seconds | share | op seconds", "--- | --- | --- | --- | ---"]
    lines += ["%s | %s | %.3f | %.1f%% | %.3f" % (p["part"], p["direction"], p["wall_seconds"], 100 * p["share"],
                                                  p["op_seconds"])
              for p in profile["parts"]]
    lines += ["", "op type | wall seconds | share | op seconds | executions", "--- | --- | --- | --- | ---"]
    lines += ["%s | %.3f | %.1f%% | %.3f | %d" % (t["op_type"], t["wall_seconds"], 100 * t["share"], t["op_seconds"],
                                                  t["executions"])
              for t in profile["op_types"]]
    lines += ["", "sec/step %.3f (untraced median), input wait %.1f%%, peak RSS %.2f GiB" % (
        profile["sec_per_step"], 100 * profile["data_wait_share"], profile["peak_rss_bytes"] / 2.0 ** 30),
              tf_compat.kernels_line(profile["kernels"])]
    lines.append("FLOPs/step %.3g (matrix products and convolutions, forward and backward); achieved %.1f GFLOP/s "
                 "= %.2f of the matmul peak %.1f GFLOP/s, at which these FLOPs alone would take %.2f s" % (
                     profile["flops_per_step"],
                     profile["achieved_flops_per_second"] / 1e9, profile["achieved_over_peak"],
                     profile["matmul_peak_flops_per_second"] / 1e9, profile["seconds_at_matmul_peak"]))
    return "\n".join(lines)


def peak_rss_bytes():
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _session_config(backend, stack, out_dir):
    config = stack.session_config()
    if backend.name == "npu":
        config = npu_session.with_profiling(config, os.path.join(os.path.abspath(out_dir), "ascend"))
    return config


def profile_target(args, work_dir):
    backend = targets.backend(args.target)
    hp = bench.preset_hparams(args.preset, args.batch_size)
    data_dir = bench.make_data(work_dir, args.preset, hp)
    source = BatchSource(data_dir, "train", hp, hp.tacotron_batch_size, seed=hp.tacotron_random_seed,
                         workers=args.workers)
    stack = backend.stack(backend.options)
    config = _session_config(backend, stack, args.out)
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(hp.tacotron_random_seed)
        model = training.TrainingGraph(backend, stack, hp, source)
        fetches = {"train": model.train_op, "loss": model.losses.total}
        with tf.Session(graph=graph, config=config) as sess:
            sess.run(tf.global_variables_initializer())
            model.feeder.start(sess)
            try:
                for _ in range(args.warmup):
                    sess.run(fetches, feed_dict=model.feeder.feed_dict())
                model.feeder.wait_seconds = 0.0
                seconds = [_timed(lambda: sess.run(fetches, feed_dict=model.feeder.feed_dict()))
                           for _ in range(args.steps)]
                wait_share = model.feeder.wait_seconds / sum(seconds)
                run_metadata = tf.RunMetadata()
                for _ in range(args.traced_steps):
                    run_metadata = tf.RunMetadata()
                    sess.run(fetches, feed_dict=model.feeder.feed_dict(),
                             options=tf.RunOptions(trace_level=tf.RunOptions.FULL_TRACE), run_metadata=run_metadata)
            finally:
                model.feeder.stop()
        trace_path = os.path.join(args.out, "timeline-%s-%s.json" % (args.preset, args.target))
        atomic.write_text(trace_path, timeline.Timeline(run_metadata.step_stats, graph=graph)
                          .generate_chrome_trace_format())
        ops = op_stats(run_metadata.step_stats, graph)
    profile = summarise(ops, float(np.median(seconds)), matmul_peak(config))
    profile.update(preset=args.preset, target=args.target, batch_size=hp.tacotron_batch_size,
                   data_wait_share=wait_share, peak_rss_bytes=peak_rss_bytes(),
                   timeline=trace_path, load_average=list(os.getloadavg()), kernels=tf_compat.kernels())
    if backend.name == "npu" and not npu_session.npu_bridge_available():
        profile["ascend_profiling"] = None
    elif backend.name == "npu":
        profile["ascend_profiling"] = os.path.join(os.path.abspath(args.out), "ascend")
    return profile


def run_profile(args):
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="lip2wav-profile-")
    os.makedirs(args.out, exist_ok=True)
    try:
        profile = profile_target(args, work_dir)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    report = format_report(profile)
    print(report)
    print("timeline (chrome://tracing or ui.perfetto.dev): %s" % profile["timeline"])
    if profile.get("ascend_profiling"):
        print("Ascend profiling data (TF Adapter, msprof): %s" % profile["ascend_profiling"])
    json_path = os.path.join(args.out, "profile-%s-%s.json" % (args.preset, args.target))
    atomic.write_json(json_path, dict(profile, table=report))
    LOG.info("wrote %s", json_path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m export.tools.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="synthetic", help="Hyperparameter preset to profile.")
    parser.add_argument("--target", default="npu", choices=devices.TARGETS, help="Target: gpu or npu.")
    parser.add_argument("--batch-size", type=int, default=0, help="Batch size (0: the preset's).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed steps first (graph optimisation).")
    parser.add_argument("--steps", type=int, default=2, help="Timed untraced steps (sec/step, input wait).")
    parser.add_argument("--traced-steps", type=int, default=1, help="Traced steps; the last one is reported.")
    parser.add_argument("--workers", type=int, default=2, help="Data loading threads.")
    parser.add_argument("--work-dir", default=None, help="Keep the synthetic data here (default: a temporary folder).")
    parser.add_argument("--out", default="profile", help="Folder for the timeline and the JSON report.")
    args = parser.parse_args(argv)
    return cli.run(lambda: run_profile(args))


if __name__ == "__main__":
    sys.exit(main())
