"""Lint a GraphDef for what the Ascend graph compiler (and ATC) cannot take.

What is flagged, and why (the Lip2Wav port hit the first three):
- Python callbacks (PyFunc, PyFuncStateless, EagerPyFunc): cannot run on the device nor be
  converted into an offline model.
- TF queue and staging ops (FIFOQueue & co., QueueEnqueue/Dequeue/Close/Size, Stage/Unstage):
  unsupported on the NPU; feed through placeholders (npu_training.feeder).
- Ops inside a while loop whose outputs lack a fully static shape, and TensorArrays with
  dynamic_size: the compiler needs static shapes; write the loop with a fixed iteration count.
- Placeholders without a fully static shape.
- Host-only ops: printing, string ops, file I/O, image/audio decoding.
- Summary ops, only when ``inference=True``: training graphs may keep summaries (the adapter
  runs them on the host), a frozen inference graph for ATC may not.
Not flagged: Assert (TF inserts it in many helpers; the adapter tolerates it), anything under a
tf.train.Saver scope (save/, save_1/...: checkpoint I/O runs on the host), shape ops outside
loops (gradients legitimately carry unknown-shape vectors), and loop nodes of unknown shape that
the compiler folds into constants (stateless ops of constants only, such as TF 1.15's
BroadcastGradientArgs of two constant shapes in a gradient loop).

Loop shapes come from the ``_output_shapes`` attr: lint a live graph with lint_graph(), or
write graph files from ``graph.as_graph_def(add_shapes=True)``.

CLI: ``python -m npu_training.lint --graph file.pb|file.pbtxt [--decode-loop-scope S] [--inference]``
prints one finding a line; exit status 0 clean, 1 findings, 2 error.
"""
import argparse
import collections
import logging
import re
import sys

from google.protobuf import text_format

from common import cli
from common.tf_compat import tf
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

Finding = collections.namedtuple("Finding", ["node", "op", "reason"])


class LintError(Lip2WavError, ValueError):
    """A graph file that cannot be read; the message names the fix."""


PY_FUNC_OPS = frozenset(["PyFunc", "PyFuncStateless", "EagerPyFunc"])
QUEUE_OPS = frozenset([
    "FIFOQueue", "FIFOQueueV2", "PaddingFIFOQueue", "PaddingFIFOQueueV2", "RandomShuffleQueue",
    "RandomShuffleQueueV2", "PriorityQueue", "PriorityQueueV2", "FakeQueue",
    "QueueEnqueue", "QueueEnqueueV2", "QueueEnqueueMany", "QueueEnqueueManyV2",
    "QueueDequeue", "QueueDequeueV2", "QueueDequeueMany", "QueueDequeueManyV2",
    "QueueDequeueUpTo", "QueueDequeueUpToV2", "QueueClose", "QueueCloseV2",
    "QueueSize", "QueueSizeV2", "QueueIsClosed", "QueueIsClosedV2",
    "Stage", "Unstage", "StagePeek", "StageSize", "StageClear",
])
HOST_ONLY_OPS = frozenset([
    "Print", "PrintV2", "StringFormat", "AsString", "StringJoin", "StringSplit", "StringSplitV2",
    "StringToNumber", "StringLength", "Substr", "RegexReplace", "StaticRegexReplace", "RegexFullMatch",
    "ReduceJoin", "ReadFile", "WriteFile", "DecodeJpeg", "DecodePng", "DecodeBmp", "DecodeGif",
    "DecodeImage", "DecodeAndCropJpeg", "EncodeJpeg", "EncodePng", "DecodeWav", "EncodeWav",
])
SUMMARY_OPS = frozenset([
    "ScalarSummary", "HistogramSummary", "ImageSummary", "AudioSummary", "AudioSummaryV2",
    "TensorSummary", "TensorSummaryV2", "MergeSummary", "WriteSummary", "WriteScalarSummary",
    "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary",
])
SAVER_SCOPE = re.compile(r"^save(_\d+)?/")
PLACEHOLDER_OPS = frozenset(["Placeholder", "PlaceholderV2", "PlaceholderWithDefault"])
FUNCTIONAL_WHILE_OPS = frozenset(["While", "StatelessWhile"])
TENSOR_ARRAY_OPS = frozenset(["TensorArrayV3", "TensorArrayV2", "TensorArray"])
CONTROL_FLOW_OPS = frozenset(["Enter", "RefEnter", "Exit", "RefExit", "Merge", "RefMerge", "Switch", "RefSwitch",
                              "NextIteration", "RefNextIteration", "LoopCond"])

_REASONS = {
    "py_func": "Python callback: cannot run on the NPU or be converted to an offline model; remove tf.py_func",
    "queue": "TF queue op: unsupported on the NPU; feed placeholders from npu_training.feeder",
    "host": "host-only op (print/string/file/codec): not compiled for the NPU; keep it out of the device graph",
    "summary": "summary op in an inference graph: ATC cannot convert it; build the inference graph without summaries",
    "placeholder": "placeholder without a fully static shape: give every dimension, including the batch",
    "tensor_array": "TensorArray with dynamic_size=True: the NPU needs a fixed size; size it with the iteration count",
    "loop_shape": "output %d has shape %s inside while loop %r: the NPU needs static shapes; use a fixed "
                  "iteration count and static slices",
    "no_shapes": "graph without _output_shapes attrs: export the graph with as_graph_def(add_shapes=True) "
                 "so the loop's shapes can be checked",
}


def lint_graph_def(graph_def, decode_loop_scope=None, inference=False):
    """Return the list of Findings (node, op, reason) for ``graph_def``; empty means clean.

    decode_loop_scope: when given, only while loops whose name contains this scope are
    shape-checked, and a finding is reported if there is none (a wrong scope would hide bugs).
    """
    findings = []
    for node in graph_def.node:
        if SAVER_SCOPE.match(node.name):
            continue
        if node.op in PY_FUNC_OPS:
            findings.append(Finding(node.name, node.op, _REASONS["py_func"]))
        elif node.op in QUEUE_OPS:
            findings.append(Finding(node.name, node.op, _REASONS["queue"]))
        elif node.op in HOST_ONLY_OPS:
            findings.append(Finding(node.name, node.op, _REASONS["host"]))
        elif node.op in SUMMARY_OPS and inference:
            findings.append(Finding(node.name, node.op, _REASONS["summary"]))
        elif node.op in PLACEHOLDER_OPS and not _placeholder_is_static(node):
            findings.append(Finding(node.name, node.op, _REASONS["placeholder"]))
        elif node.op in TENSOR_ARRAY_OPS and "dynamic_size" in node.attr and node.attr["dynamic_size"].b:
            findings.append(Finding(node.name, node.op, _REASONS["tensor_array"]))
    findings.extend(_loop_shape_findings(graph_def, decode_loop_scope))
    return findings


def lint_graph(graph, decode_loop_scope=None, inference=False):
    """lint_graph_def for a tf.Graph, with the shapes the Python graph knows."""
    return lint_graph_def(graph.as_graph_def(add_shapes=True), decode_loop_scope, inference)


def load_graph_def(path):
    """Read a binary (.pb) or text (.pbtxt) GraphDef."""
    graph_def = tf.GraphDef()
    try:
        with tf.io.gfile.GFile(path, "rb") as handle:
            data = handle.read()
    except (IOError, tf.errors.OpError) as error:
        raise LintError("cannot read %s (%s): pass an existing .pb or .pbtxt graph file" % (path, error)) from None
    try:
        if path.endswith(".pbtxt"):
            text_format.Merge(data.decode("utf-8"), graph_def)
        else:
            graph_def.ParseFromString(data)
    except Exception as error:  # protobuf's DecodeError/ParseError have no stable import path across versions
        raise LintError("cannot parse %s as a GraphDef (%s): pass a binary .pb or a text .pbtxt graph"
                        % (path, error)) from None
    return graph_def


def _placeholder_is_static(node):
    if "shape" not in node.attr:
        return False
    shape = node.attr["shape"].shape
    return not shape.unknown_rank and all(dim.size >= 0 for dim in shape.dim)


def _loop_scope(frame_name):
    """'decoder/while/while_context' -> 'decoder/while/' (v1 while_loop nodes are named under it)."""
    return frame_name.rsplit("/", 1)[0] + "/" if "/" in frame_name else frame_name + "/"


def _loop_shape_findings(graph_def, decode_loop_scope):
    scopes = sorted({_loop_scope(tf.compat.as_str(node.attr["frame_name"].s))
                     for node in graph_def.node if node.op in ("Enter", "RefEnter") and "frame_name" in node.attr})
    functional = [node for node in graph_def.node if node.op in FUNCTIONAL_WHILE_OPS]
    if decode_loop_scope:
        scopes = [scope for scope in scopes if decode_loop_scope in scope]
        functional = [node for node in functional if decode_loop_scope in node.name]
        if not scopes and not functional:
            return [Finding(decode_loop_scope, "", "no while loop found under the decode loop scope: "
                                                   "pass the scope the decode loop is built in")]
    if not scopes and not functional:
        return []
    functional_names = {node.name for node in functional}
    shapes = _output_shapes(graph_def)
    findings = []
    unshaped = set()
    for node in graph_def.node:
        scope = next((s for s in reversed(scopes) if node.name.startswith(s)), None)
        if node.name in functional_names:
            scope = node.name
        if scope is None:
            continue
        if not shapes:
            if scope not in unshaped:
                unshaped.add(scope)
                findings.append(Finding(scope, "", _REASONS["no_shapes"]))
            continue
        for index, shape in enumerate(shapes.get(node.name, ())):  # no attr: the op has no outputs
            if not shape.is_fully_defined():
                findings.append(Finding(node.name, node.op, _REASONS["loop_shape"] % (index, shape, scope)))
    if findings and shapes:
        folded = _constant_folded(graph_def)
        findings = [finding for finding in findings if finding.node not in folded]
    return findings


def _constant_folded(graph_def):
    """Names of the nodes whose values the graph compiler computes once: Const, and every stateless op
    (control flow aside) whose data inputs all are such nodes, GE's and grappler's constant folding.

    Their shapes need not be static: they become constants before the NPU sees them. TF 1.15's
    gradients of broadcasting ops inside a while loop are such nodes (BroadcastGradientArgs of two Const
    shape vectors); TF 2 computes the same reduction axes in Python and leaves no op.
    """
    stateful = _stateful_op_types(graph_def)
    folded = set()
    changed = True
    while changed:  # nodes come in creation order: one pass folds forward chains, a second confirms
        changed = False
        for node in graph_def.node:
            if node.name in folded or node.op in CONTROL_FLOW_OPS or node.op in stateful:
                continue
            data = [name.split(":")[0] for name in node.input if not name.startswith("^")]
            if node.op == "Const" or (data and all(name in folded for name in data)):
                folded.add(node.name)
                changed = True
    return folded


def _stateful_op_types(graph_def):
    """Op types of ``graph_def`` that keep state or draw random numbers (never folded), from their OpDefs."""
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return {op.type for op in graph.get_operations() if op.op_def.is_stateful}


def _output_shapes(graph_def):
    """node name -> list of TensorShape, from the ``_output_shapes`` attr (add_shapes=True).

    Re-importing the GraphDef is no substitute: C++ shape inference leaves every Merge of a v1
    while loop (and all that follows it) unknown, while the attr keeps the shapes the Python
    graph had, including those set on the stack pops of gradient loops.
    """
    return {node.name: [tf.TensorShape(proto) for proto in node.attr["_output_shapes"].list.shape]
            for node in graph_def.node if "_output_shapes" in node.attr}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m npu_training.lint", description=__doc__.splitlines()[0])
    parser.add_argument("--graph", required=True, help="GraphDef file: binary .pb or text .pbtxt")
    parser.add_argument("--decode-loop-scope", default=None,
                        help="shape-check only while loops under this name scope (default: all loops)")
    parser.add_argument("--inference", action="store_true", help="also flag summary ops (inference/ATC graphs)")
    args = parser.parse_args(argv)

    def body():
        findings = lint_graph_def(load_graph_def(args.graph), args.decode_loop_scope, args.inference)
        for finding in findings:
            print("%s\t%s\t%s" % finding)
        LOG.info("%d finding(s) in %s", len(findings), args.graph)
        return 1 if findings else 0
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
