"""Freeze a checkpoint into a self-contained inference GraphDef (weights as constants).

The frozen graph is what ships: TF serving / FrozenGraphRunner load it without model code, and
ATC converts the NPU one into an offline model (export.atc). Each target keeps its own decode
loop (gpu: dynamic while loop; npu: fixed-iteration, static-shape loop), so the NPU graph must
pass npu_training.lint before it is written. Outputs in --out:
  lip2wav_<target>.pb / .pbtxt   the frozen GraphDef (binary / text), with _output_shapes attrs
  lip2wav_<target>.json          manifest: node names, shapes, dtype, hparams, checkpoint, op types, sizes
The prenet's inference-time dropout masks are random draws with a frozen seed, the same for every
input: they are evaluated once and stored as constants with exactly those values, so the graph
holds no random op and any consumer (ATC, converters to other runtimes) can take it.
Freeze with the TensorFlow that will consume the graph: TF 2.x writes some ops under new names,
which TF 1.15 and ATC may not know, so for ATC freeze inside the NPU image (TF 1.15).
"""
import argparse
import json
import logging
import os
import sys

import numpy as np
from google.protobuf import text_format

from common import atomic
from common import cli
from common import devices
from common.tf_compat import tf
from export import graph as graph_lib
from npu_training import lint as lint_lib
from common.errors import Lip2WavError

LOG = logging.getLogger("lip2wav.freeze")
# Ops that must not survive freezing: state, its updates, optimisers and checkpoint I/O.
TRAINING_OPS = frozenset([
    "Variable", "VariableV2", "VarHandleOp", "VarIsInitializedOp", "ReadVariableOp", "Assign", "AssignAdd",
    "AssignSub", "AssignVariableOp", "IsVariableInitialized", "SaveV2", "RestoreV2", "MergeV2Checkpoints",
])
FORBIDDEN_OPS = TRAINING_OPS | lint_lib.QUEUE_OPS | lint_lib.PY_FUNC_OPS
RANDOM_OP_PREFIXES = ("StatelessRandom", "RandomUniform", "RandomStandardNormal", "TruncatedNormal",
                      "Multinomial", "RandomShuffle")


class ExportError(Lip2WavError, ValueError):
    """A graph that cannot be exported or an output that cannot be written; the message names the fix."""


def base_name(target):
    return "lip2wav_%s" % target


def forbidden_nodes(graph_def):
    """Nodes that have no place in a frozen inference graph (variables, optimiser, queues, PyFunc, random)."""
    return [(node.name, node.op) for node in graph_def.node
            if node.op in FORBIDDEN_OPS or node.op.startswith(("Apply", "ResourceApply") + RANDOM_OP_PREFIXES)]


def fold_random_ops(session, graph, graph_def, feed_dict):
    """Replace every random op of ``graph_def`` by a Const holding the value it draws in ``session``.

    The inference graph's draws depend only on their frozen seeds and static shapes, never on the
    input (``feed_dict`` only satisfies the shape ops), so the constants are exactly what it draws.
    """
    random_ops = [op for op in graph.get_operations() if op.type.startswith(RANDOM_OP_PREFIXES)]
    values = dict(zip([op.name for op in random_ops], session.run([op.outputs[0] for op in random_ops], feed_dict)))
    for node in graph_def.node:
        if node.name in values:
            # A copy, not a reference into the map: clear() frees the map's entries under C++ protobuf (TF 1.15).
            shapes = None
            if "_output_shapes" in node.attr:
                shapes = tf.AttrValue()
                shapes.CopyFrom(node.attr["_output_shapes"])
            value = values[node.name]
            node.op = "Const"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            if shapes is not None:
                node.attr["_output_shapes"].CopyFrom(shapes)
    return graph_def


def freeze_graph_def(hp, checkpoint, target, batch_size):
    """Build the target's inference graph in a fresh graph, restore, fold variables -> GraphDef."""
    graph = tf.Graph()
    with graph.as_default():
        inputs, _, _ = graph_lib.build_inference_graph(hp, target, batch_size)
        saver = tf.train.Saver()
        with tf.Session(graph=graph) as session:
            try:
                saver.restore(session, checkpoint)
            except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as error:
                raise graph_lib.CheckpointError(
                    "checkpoint %s does not match its hparams.json (%s); use the run directory it was trained in"
                    % (checkpoint, str(error).splitlines()[0]))
            frozen = tf.graph_util.convert_variables_to_constants(
                session, graph.as_graph_def(add_shapes=True), [graph_lib.OUTPUT_NAME])
            zeros = np.zeros(inputs.shape.as_list(), np.float32)
            frozen = fold_random_ops(session, graph, frozen, {inputs: zeros})
    frozen = tf.graph_util.remove_training_nodes(frozen, protected_nodes=[graph_lib.INPUT_NAME,
                                                                          graph_lib.OUTPUT_NAME])
    return tf.graph_util.extract_sub_graph(frozen, [graph_lib.OUTPUT_NAME])


def check_graph_def(graph_def, target):
    """Raise ExportError listing whatever would stop the graph from serving or converting."""
    names = set(node.name for node in graph_def.node)
    if graph_lib.INPUT_NAME not in names:
        raise ExportError("the frozen graph lost its input %s: the output does not depend on it; "
                          "check export/graph.py" % graph_lib.INPUT_NAME)
    bad = forbidden_nodes(graph_def)
    if bad:
        raise ExportError("frozen graph still holds training/queue/PyFunc/random ops: %s; keep them out of "
                          "build_inference_graph" % ", ".join("%s (%s)" % item for item in bad[:10]))
    if target == "npu":
        findings = lint_lib.lint_graph_def(graph_def, inference=True)
        if findings:
            raise ExportError("NPU graph lint found %d problem(s): %s; fix the NPU inference graph "
                              "(python -m npu_training.lint --inference --graph FILE lists them)"
                              % (len(findings), "; ".join("%s [%s]: %s" % f for f in findings[:10])))


def node_shape(graph_def, name):
    """Static shape of a node's first output, from the placeholder shape or _output_shapes."""
    node = next(n for n in graph_def.node if n.name == name)
    if "shape" in node.attr and node.op == "Placeholder":
        return tf.TensorShape(node.attr["shape"].shape).as_list()
    return tf.TensorShape(node.attr["_output_shapes"].list.shape[0]).as_list()


def prepare_out_dir(out_dir):
    """Create out_dir and prove it is writable before any work is done."""
    try:
        atomic.check_writable_dir(out_dir)
    except OSError as error:
        raise ExportError("cannot write to output directory %s (%s): pass a writable --out"
                          % (out_dir, error.strerror or error))


def write_atomically(files):
    """files: {final path: bytes}. All are written to temp names first, then renamed into place."""
    try:
        atomic.write_files(files)
    except (IOError, OSError) as error:
        raise ExportError("cannot write %s (%s): pass a writable --out with free space"
                          % (error.filename or "the export", error.strerror or error))


def freeze(run_or_checkpoint, out_dir, target="gpu", batch_size=1):
    """Freeze a run (latest checkpoint) or a checkpoint prefix for ``target``; returns the manifest."""
    devices.check(target)
    if batch_size < 1:
        raise ExportError("batch size must be at least 1, got %d" % batch_size)
    hp, checkpoint = graph_lib.resolve_checkpoint(run_or_checkpoint)
    prepare_out_dir(out_dir)
    graph_def = freeze_graph_def(hp, checkpoint, target, batch_size)
    check_graph_def(graph_def, target)
    binary = graph_def.SerializeToString()
    prefix = os.path.join(out_dir, base_name(target))
    manifest = {
        "target": target,
        "graph": base_name(target) + ".pb",
        "graph_text": base_name(target) + ".pbtxt",
        "input": {"name": graph_lib.INPUT_NAME, "tensor": graph_lib.INPUT_NAME + ":0", "dtype": "float32",
                  "shape": node_shape(graph_def, graph_lib.INPUT_NAME), "range": [0.0, 1.0]},
        "outputs": [{"name": graph_lib.OUTPUT_NAME, "tensor": graph_lib.OUTPUT_NAME + ":0", "dtype": "float32",
                     "shape": node_shape(graph_def, graph_lib.OUTPUT_NAME)}],
        "batch_size": batch_size,
        "hparams_preset": hp.preset,
        "hparams": hp.to_dict(),
        "checkpoint": os.path.abspath(checkpoint),
        "node_count": len(graph_def.node),
        "ops": sorted(set(node.op for node in graph_def.node)),
        "size_bytes": len(binary),
        "tf_version": tf.version.VERSION,
    }
    write_atomically({
        prefix + ".pb": binary,
        prefix + ".pbtxt": text_format.MessageToString(graph_def).encode("utf-8"),
        prefix + ".json": (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8"),
    })
    LOG.info("froze %s for %s: %s.pb (%d nodes, %d bytes)", checkpoint, target, prefix, manifest["node_count"],
             manifest["size_bytes"])
    return manifest


def main(argv=None):
    """Entrypoint: one `error: ...` line and exit status 2 on a boundary error."""
    parser = argparse.ArgumentParser(prog="python -m export.freeze", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="run directory (latest checkpoint) or model.ckpt-N prefix")
    parser.add_argument("--target", choices=devices.TARGETS, default="npu", help="decode loop to freeze (default npu)")
    parser.add_argument("--out", required=True, help="output directory for lip2wav_<target>.pb/.pbtxt/.json")
    parser.add_argument("--batch-size", type=int, default=1, help="static batch of the input (default 1)")
    args = parser.parse_args(argv)

    def body():
        print(os.path.join(args.out, freeze(args.checkpoint, args.out, args.target, args.batch_size)["graph"]))
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
