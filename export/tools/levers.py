"""Time one target's training step with and without a speed lever, side by side in one process.

Each lever is a session-config or graph-construction variant of the target's real training graph
(feeder, decode loop, optimizer); for each, the default and the variant train from the same seed
with their steps alternated (export/tools/bench.py alternate), so load on a shared machine hits
both alike. Levers whose setting is fixed per process (oneDNN on/off, thread environment) are not
here: they need two processes, as ``bench --baseline`` does for two commits.

``python -m export.tools.levers --preset chess --batch-size 24 --target gpu [--levers xla,inter-op-1]``
"""
import argparse
import collections
import contextlib
import functools
import logging
import os
import sys
import tempfile
import shutil
from unittest import mock

from common import atomic, cli
from common import devices
from common.errors import Lip2WavError
from common.tf_compat import tf
from export import targets
from export.tools import bench

LOG = logging.getLogger("lip2wav.levers")

# edit_config changes the session config; build_context wraps the graph's construction; workers
# replaces --workers; environment holds flags TensorFlow reads once per process: set before the
# first session, they must leave a run without the lever's session setting unchanged.
Lever = collections.namedtuple("Lever", "help edit_config build_context workers environment",
                               defaults=(None, contextlib.nullcontext, None, {}))


def _xla(config):
    config.graph_options.optimizer_options.global_jit_level = tf.OptimizerOptions.ON_1


def _grappler_off(config):
    config.graph_options.rewrite_options.disable_meta_optimizer = True


def _inter_op_1(config):
    config.inter_op_parallelism_threads = 1


def _loop_parallel_iterations(count):
    """Build the graph with every tf.while_loop (the decode loops) running ``count`` iterations in parallel."""
    return functools.partial(mock.patch.object, tf, "while_loop",
                             functools.partial(tf.while_loop, parallel_iterations=count))


LEVERS = collections.OrderedDict([
    ("xla", Lever("XLA auto-clustering on the CPU (global_jit_level ON_1)", edit_config=_xla,
                  environment={"TF_XLA_FLAGS": "--tf_xla_cpu_global_jit"})),
    ("grappler-off", Lever("grappler's meta-optimizer off (no graph rewrites)", edit_config=_grappler_off)),
    ("inter-op-1", Lever("one inter-op thread: ops run one at a time, each on both cores", edit_config=_inter_op_1)),
    ("decode-parallel-iterations-1", Lever("decode loop with parallel_iterations=1 (default 10)",
                                           build_context=_loop_parallel_iterations(1))),
    ("decode-parallel-iterations-32", Lever("decode loop with parallel_iterations=32 (default 10)",
                                            build_context=_loop_parallel_iterations(32))),
    ("feeder-workers-1", Lever("one data-loading thread instead of --workers", workers=1)),
])


class UnknownLeverError(Lip2WavError):
    pass


def parse_levers(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LEVERS]
    if unknown:
        raise UnknownLeverError("unknown lever %s: choose from %s" % (", ".join(unknown), ", ".join(LEVERS)))
    return names


def variant_run(target, hp, data_dir, workers, lever):
    """The target's training graph with ``lever`` applied."""
    config = None
    if lever.edit_config:
        backend = targets.backend(target)
        config = backend.stack(backend.options).session_config()
        lever.edit_config(config)
    return bench.TargetRun(target, hp, data_dir, lever.workers or workers, config=config,
                           build_context=lever.build_context)


def time_lever(target, hp, data_dir, workers, steps, name):
    """{lever, default and variant sec/step, ratio} from one alternated pair of runs."""
    runs = bench.open_runs([functools.partial(bench.TargetRun, target, hp, data_dir, workers),
                            functools.partial(variant_run, target, hp, data_dir, workers, LEVERS[name])])
    default, variant = bench.alternate(runs, steps)
    return {"lever": name, "help": LEVERS[name].help, "target": target, "batch_size": hp.tacotron_batch_size,
            "timed_steps": steps, "default_sec_per_step": default["sec_per_step"],
            "variant_sec_per_step": variant["sec_per_step"],
            "variant_over_default": variant["sec_per_step"] / default["sec_per_step"],
            "load_average": list(os.getloadavg())}


def format_table(rows):
    lines = ["lever | target | batch | default s/step | lever s/step | lever / default | load avg 1m",
             "--- | --- | --- | --- | --- | --- | ---"]
    lines += ["%s | %s | %d | %.3f | %.3f | %.3f | %.1f" % (
        r["lever"], r["target"], r["batch_size"], r["default_sec_per_step"], r["variant_sec_per_step"],
        r["variant_over_default"], r["load_average"][0]) for r in rows]
    return "\n".join(lines)


def run_levers(args):
    names = parse_levers(args.levers)
    for name in names:
        for key, value in LEVERS[name].environment.items():
            os.environ[key] = (os.environ.get(key, "") + " " + value).strip()
    hp = bench.preset_hparams(args.preset, args.batch_size)
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="lip2wav-levers-")
    rows = []
    try:
        data_dir = bench.make_data(work_dir, args.preset, hp)
        for name in names:
            rows.append(time_lever(args.target, hp, data_dir, args.workers, args.steps, name))
            LOG.info("%s: %.3f s/step vs %.3f default (%.3f)", name, rows[-1]["variant_sec_per_step"],
                     rows[-1]["default_sec_per_step"], rows[-1]["variant_over_default"])
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(format_table(rows))
    atomic.write_json(args.out, {"preset": args.preset, "rows": rows})
    LOG.info("wrote %s", args.out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m export.tools.levers", description=__doc__.splitlines()[0],
                                     epilog="levers: " + "; ".join("%s: %s" % (k, v.help) for k, v in LEVERS.items()))
    parser.add_argument("--preset", default="synthetic", help="Hyperparameter preset.")
    parser.add_argument("--target", default="gpu", choices=devices.TARGETS, help="Target: gpu or npu.")
    parser.add_argument("--batch-size", type=int, default=0, help="Batch size (0: the preset's).")
    parser.add_argument("--levers", default=",".join(LEVERS), help="Comma-separated levers to time.")
    parser.add_argument("--steps", type=int, default=3, help="Timed steps per run after one warmup step.")
    parser.add_argument("--workers", type=int, default=2, help="Data loading threads of the default run.")
    parser.add_argument("--work-dir", default=None, help="Keep the synthetic data here (default: a temporary folder).")
    parser.add_argument("--out", default="levers.json", help="Where the JSON results go.")
    args = parser.parse_args(argv)
    return cli.run(lambda: run_levers(args))


if __name__ == "__main__":
    sys.exit(main())
