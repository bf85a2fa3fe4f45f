"""Test-only: one data-parallel rank that records what the distributed tests check, started 2x by a launcher.

``python -m tests.dp_worker --target gpu|npu --data DIR --out DIR --steps N`` builds the target's real training
graph (Backend, distribution, sharded BatchSource, TrainingGraph) like common/training/loop.py does, but seeds
each rank's initialisation differently so the broadcast has something to do, and writes rank<R>.npz:
variables before and after the broadcast, this rank's own (not yet averaged) gradients of step 1 (variables with a gradient only) and the
learning rate, the gradients of step 1 as the optimizer wrappers hand them to clipping (after the all-reduce) and
their global norm, variables after step 1 and after N steps, and the (clip, start frame) windows its source read.
"""
import argparse
import json
import os
import sys

import numpy as np

from common.config import hparams
from common.data.dataset import BatchSource
from common.tf_compat import tf
from common.training import loop

recorded_gradients = []
reduced_gradients = []
clip_by_global_norm = tf.clip_by_global_norm


def recording_clip(gradients, *args, **kwargs):
    """clip_by_global_norm that keeps its input: the gradients after the ranks' all-reduce, before clipping."""
    reduced_gradients.extend(g for g in gradients if g is not None)
    return clip_by_global_norm(gradients, *args, **kwargs)


class RecordingAdam(tf.train.AdamOptimizer):
    """Adam whose compute_gradients keeps its output: the rank's gradients before any wrapper averages them."""

    def compute_gradients(self, *args, **kwargs):
        pairs = super(RecordingAdam, self).compute_gradients(*args, **kwargs)
        recorded_gradients.extend((g, v) for g, v in pairs if g is not None)
        return pairs


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, choices=("gpu", "npu"))
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    if args.target == "gpu":
        from gpu_training.train import BACKEND as backend
    else:
        from npu_training.train import BACKEND as backend
    tf.train.AdamOptimizer = RecordingAdam  # model_lib.train_op looks both up when it builds the graph
    tf.clip_by_global_norm = recording_clip
    options = backend.options
    stack = backend.stack(options)
    distribution = stack.distribution()
    hp = hparams.resolve("synthetic")
    shard = distribution.data_shard(hp.tacotron_random_seed)
    source = BatchSource(args.data, "train", hp, hp.tacotron_batch_size, seed=shard.seed, workers=1,
                         shard_index=shard.index, shard_count=shard.count)
    windows = []
    fill = source._fill

    def recording_fill(clip, start, *rest):
        problem = fill(clip, start, *rest)
        if not problem:
            windows.append((clip.id, int(start)))
        return problem

    source._fill = recording_fill
    tf.set_random_seed(hp.tacotron_random_seed + 1000 * distribution.rank)
    graph = loop.TrainingGraph(backend, stack, hp, source, distribution)
    variables = [v for _, v in recorded_gradients]
    record = {}
    with tf.Session(config=distribution.configure_session(stack.session_config())) as sess:
        sess.run(tf.global_variables_initializer())
        record["before_broadcast"] = sess.run(variables)
        sess.run(graph.broadcast)
        record["initial"] = sess.run(variables)
        graph.feeder.start(sess)
        try:
            fetches = [graph.train_op, [g for g, _ in recorded_gradients], reduced_gradients, graph.grad_norm,
                       graph.learning_rate]
            _, record["local_gradients"], record["reduced_gradients"], record["grad_norm"], record["learning_rate"] = \
                sess.run(fetches, feed_dict=graph.feeder.feed_dict())
            record["after_one"] = sess.run(variables)
            for _ in range(args.steps - 1):
                sess.run(graph.train_op, feed_dict=graph.feeder.feed_dict())
            record["final"] = sess.run(variables)
        finally:
            graph.feeder.stop()
    arrays = {"learning_rate": np.float64(record["learning_rate"]), "grad_norm": np.float64(record["grad_norm"])}
    for key in ("before_broadcast", "initial", "local_gradients", "reduced_gradients", "after_one", "final"):
        for i, value in enumerate(record[key]):
            arrays["%s/%d" % (key, i)] = value
    np.savez(os.path.join(args.out, "rank%d.npz" % distribution.rank), **arrays)
    with open(os.path.join(args.out, "rank%d.json" % distribution.rank), "w") as f:
        json.dump({"variables": [v.name for v in variables], "windows": windows, "rank": distribution.rank,
                   "size": distribution.size, "shard": list(shard)}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
