"""Run a frozen Lip2Wav graph (export.freeze) with no model code: GraphDef + import_graph_def only.

This is how a deployment without this repository's model code would use the export, and it
proves the frozen file alone reproduces the checkpoint's mels.
"""
import json
import os

import numpy as np

from common.tf_compat import tf
from export.batching import SessionRunner, run_in_batches
from common.errors import Lip2WavError

DEFAULT_INPUT = "face_windows:0"
DEFAULT_OUTPUT = "mel_outputs:0"


class FrozenGraphError(Lip2WavError, ValueError):
    """A frozen graph or manifest that cannot be used; the message names the fix."""


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


class FrozenGraphRunner(SessionRunner):
    """Face windows -> mel windows from a frozen .pb, in fixed-size batches (the last one padded).

    manifest_json defaults to the .json next to the .pb; without one, the standard tensor
    names are used and the batch size is read from the input placeholder.
    """

    def __init__(self, pb_path, manifest_json=None):
        self.manifest = self._read_manifest(pb_path, manifest_json)
        graph_def = tf.GraphDef()
        try:
            with tf.io.gfile.GFile(pb_path, "rb") as f:
                graph_def.ParseFromString(f.read())
        except (IOError, tf.errors.OpError) as error:
            raise FrozenGraphError("cannot read frozen graph %s (%s): run `python -m export.freeze` first"
                                   % (pb_path, error))
        input_name = self.manifest["input"]["tensor"] if self.manifest else DEFAULT_INPUT
        output_name = self.manifest["outputs"][0]["tensor"] if self.manifest else DEFAULT_OUTPUT
        self.graph = tf.Graph()
        with self.graph.as_default():
            try:
                self.inputs, self.mels = tf.import_graph_def(graph_def, return_elements=[input_name, output_name],
                                                             name="")
            except (ValueError, KeyError, tf.errors.OpError) as error:  # an op it lacks: NotFoundError
                frozen_with = self.manifest.get("tf_version") if self.manifest else None
                if frozen_with and frozen_with != tf.version.VERSION:
                    raise FrozenGraphError(
                        "%s was frozen with TensorFlow %s and does not load in TensorFlow %s (%s): re-freeze it "
                        "with this TensorFlow (`python -m export.freeze`; in an image, its `export` command)"
                        % (pb_path, frozen_with, tf.version.VERSION, _first_line(error)))
                raise FrozenGraphError("%s has no tensors %s and %s (%s): pass a graph made by export.freeze"
                                       % (pb_path, input_name, output_name, _first_line(error)))
        self.batch_size = self.inputs.shape[0].value
        if self.batch_size is None:
            raise FrozenGraphError("%s has no static batch size: re-export it with export.freeze" % pb_path)
        self.window_shape = tuple(self.inputs.shape.as_list()[1:])
        self.session = tf.Session(graph=self.graph)

    @staticmethod
    def _read_manifest(pb_path, manifest_json):
        path = manifest_json or os.path.splitext(pb_path)[0] + ".json"
        if not os.path.isfile(path):
            if manifest_json:
                raise FrozenGraphError("manifest %s does not exist: pass the .json written next to the .pb"
                                       % manifest_json)
            return None
        with open(path) as f:
            return json.load(f)

    def predict(self, windows):
        """windows [N, T, S, S, 3] in [0, 1] -> mels [N, mel_step_size, num_mels]."""
        windows = np.asarray(windows, np.float32)
        if tuple(windows.shape[1:]) != self.window_shape:
            raise FrozenGraphError("windows have shape %s, the graph takes [N, %s]: crop faces to the exported "
                                   "hparams" % (list(windows.shape), ", ".join(str(d) for d in self.window_shape)))
        return run_in_batches(lambda batch: [self.session.run(self.mels, {self.inputs: batch})],
                              windows, self.batch_size)[0]
