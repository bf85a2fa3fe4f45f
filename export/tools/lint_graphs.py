"""Lint a target's real graphs (training and inference) for what the Ascend compiler rejects.

The graphs are built exactly as its device tree builds them (its feeder, decode loop and optimizer
wrapper in the shared training graph; export.graph's inference graph), with static shapes
recorded (add_shapes=True), and checked by npu_training.lint. The NPU target must come out
clean; the GPU target is expected to be reported (FIFOQueue feeder, dynamic-length loop), which
shows the lint sees what it should. Lives in export/ because it builds both device trees.

CLI: ``python -m export.tools.lint_graphs [--preset synthetic] [--target npu|gpu]`` prints one
finding a line (graph, node, op, reason); exit status 0 clean, 1 findings, 2 error.
"""
import argparse
import collections
import logging
import sys

from common import cli
from common import devices
from common.config import hparams as hparams_lib
from common.tf_compat import tf
from export.graph import build_inference_graph
from export import targets
from npu_training import lint

LOG = logging.getLogger("lip2wav.lint_graphs")
GraphFinding = collections.namedtuple("GraphFinding", ["graph", "node", "op", "reason"])


def training_graph(hp, target):
    """The target's training graph, as common.training.loop builds it for a run."""
    graph = tf.Graph()
    with graph.as_default():
        targets.training_graph(hp, target)
    return graph


def inference_graph(hp, target, batch_size=1):
    graph = tf.Graph()
    with graph.as_default():
        build_inference_graph(hp, target, batch_size)
    return graph


def lint_model_graphs(hp, target="npu", batch_size=1):
    """GraphFindings for the target's training graph and inference graph; empty means clean."""
    targets.backend(target)
    findings = [GraphFinding("training", *f) for f in lint.lint_graph(training_graph(hp, target))]
    findings += [GraphFinding("inference", *f)
                 for f in lint.lint_graph(inference_graph(hp, target, batch_size), inference=True)]
    return findings


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m export.tools.lint_graphs", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="synthetic", help="Hyperparameter preset the graphs are built for.")
    parser.add_argument("--hparams", default="", help="Overrides, e.g. 'tacotron_batch_size=4'.")
    parser.add_argument("--target", default="npu", choices=devices.TARGETS, help="Target whose graphs to lint.")
    args = parser.parse_args(argv)

    def body():
        findings = lint_model_graphs(hparams_lib.resolve(args.preset, None, args.hparams), args.target)
        for finding in findings:
            print("\t".join(finding))
        LOG.info("target %s, preset %s: %d finding(s)", args.target, args.preset, len(findings))
        return 1 if findings else 0
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
