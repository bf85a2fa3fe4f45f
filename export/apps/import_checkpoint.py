"""A checkpoint written by the original Lip2Wav code -> a run directory of this project.

Nothing here is a table of names typed by hand. This network gives its variables the original's names,
so the names of our training graph (built as a run builds it, then listed) are looked up in the
checkpoint by rules:
- a model variable (one the inference graph restores) keeps its name; the Ascend port's checkpoints
  differ by a rule of their own (see PORT_STYLE); the style is the one that finds the most names;
- an optimizer variable (Adam's slots, the beta powers) is looked up under network.original_name (the
  original builds its optimizer inside its model scope, hence ``Tacotron_model/Tacotron_model/...``),
  through the same style rule;
- the global step keeps its name and is cast to ours (the original's is int32).
A checkpoint that lacks a model variable, or holds one in another shape, is refused (exit 2) and nothing
is written; the optimizer's state is mapped when all of it is there, else started fresh.

CLI: ``python -m export.apps.import_checkpoint --checkpoint PATH --preset chess --run-dir RUN``.
"""
import argparse
import collections
import logging
import os
import re

import numpy as np

from common import atomic
from common import cli
from common.config import hparams as hparams_lib
from common.data import crops
from common.errors import Lip2WavError
from common.model import network
from common.tf_compat import tf
from common.training import checkpoints
from common.training import rundir
from export import targets

LOG = logging.getLogger("lip2wav.import_checkpoint")
# refusal: why a checkpoint of this style that lacks model variables cannot become a run, and the fix.
ImportStyle = collections.namedtuple("ImportStyle", ["name", "checkpoint_name", "differences", "refusal"])
Mapping = collections.namedtuple("Mapping", ["ours", "theirs", "value"])

ORIGINAL_STYLE = ImportStyle(
    "original Lip2Wav (github Rudrabha/Lip2Wav)", lambda name: name, (),
    "import a checkpoint of the original Lip2Wav code with the --preset/--hparams it was trained with")
# What the port's network (github Ascend-Huawei/Lip2Wav, main/synthesizer/models/) does differently from the
# original; printed whenever a checkpoint is in the port's style, since its variables alone cannot show it.
PORT_STYLE = ImportStyle(
    "Ascend port (github Ascend-Huawei/Lip2Wav)",
    lambda name: re.sub(r"(^|/)inference/decoder/", r"\1inference/", name, count=1),
    ("its decoder is opened with tf.name_scope, so its decoder variables lack the 'decoder/' segment: "
     "mapped by inserting it",
     "its attention_variable_projection and attention_bias are [1, 1, 128] (attention.py hard-codes 128 units): "
     "reshaped to [attention_dim]",
     "its postnet convolutions have no batch normalization (modules.py Postnet passes bn=False): this network's "
     "postnet batch-norm variables have no counterpart",
     "its encoder 3-D convolutions and its prenet skip the ReLU (modules.py, '# skip relu'): its weights were "
     "trained for another network than this one (and the original), so they cannot give the port's outputs here",
     "it always teacher-forces in training (a training difference only; the weights do not show it)"),
    "the port's network is another one (no postnet batch norm, no encoder or prenet ReLU), so its weights cannot "
    "make a run of this network; fine-tune from a checkpoint of the original code or train from scratch")
STYLES = (ORIGINAL_STYLE, PORT_STYLE)


class CheckpointImportError(Lip2WavError, ValueError):
    """A checkpoint that cannot become a run directory of this network; the message names the fix."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m export.apps.import_checkpoint",
        description="Write a run directory of this project from a checkpoint of the original Lip2Wav code.")
    parser.add_argument("--checkpoint", required=True,
                        help="The original's checkpoint: a prefix (tacotron_model.ckpt-N) or its folder (with a "
                             "'checkpoint' state file, else the newest .index).")
    parser.add_argument("--run-dir", required=True, help="New run directory to write (must not exist or be empty).")
    parser.add_argument("--preset", default="chess",
                        help="Hyperparameter preset the checkpoint was trained with: %s."
                             % ", ".join(hparams_lib.preset_names()))
    parser.add_argument("--hparams-json", default=None, help="JSON file of overrides applied after the preset.")
    parser.add_argument("--hparams", default="", help="Overrides applied last, e.g. 'decoder_lstm_units=96'.")
    return parser


def checkpoint_prefix(path):
    """A checkpoint prefix, or a folder -> the prefix its state file names (else its newest by step)."""
    path = path.rstrip("/") or "/"
    if os.path.isdir(path):
        prefix = tf.train.latest_checkpoint(path)
        if prefix is None:
            found = sorted((f[:-len(".index")] for f in os.listdir(path) if f.endswith(".index")),
                           key=lambda name: [int(d) for d in re.findall(r"\d+", name)] or [0])
            prefix = os.path.join(path, found[-1]) if found else None
        if prefix is None:
            raise CheckpointImportError("%s holds no checkpoint (no *.index file); pass the folder the original's "
                                        "train.py saved to, or a tacotron_model.ckpt-N prefix" % path)
        path = prefix
    if not os.path.isfile(path + ".index"):
        raise CheckpointImportError("checkpoint %s does not exist (no %s.index); pass a tacotron_model.ckpt-N prefix "
                                    "or its folder" % (path, os.path.basename(path)))
    return path


class OurVariables(object):
    """The variables a run of this network saves, in three kinds: model, optimizer state, global step."""

    def __init__(self, hp):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.training = targets.training_graph(hp, "gpu")
            self.step = tf.train.get_global_step()
            self.model = network.model_variables()
            model_names = set(_name(v) for v in self.model)
            self.optimizer = [v for v in tf.global_variables() if _name(v) not in model_names and v is not self.step]


def _name(variable):
    return variable.op.name


def pick_style(ours, available):
    """The style whose rule finds the most of our model variables in the checkpoint (the original on a tie)."""
    return max(STYLES, key=lambda style: sum(style.checkpoint_name(_name(v)) in available for v in ours.model))


def _fits(value, variable):
    """``value`` as ``variable``'s shape and dtype, or None; leading unit axes may go ([1, 1, n] -> [n])."""
    shape = variable.shape.as_list()
    if list(value.shape) != shape:
        squeezed = list(value.shape)
        while len(squeezed) > len(shape) and squeezed[0] == 1:
            squeezed.pop(0)
        if squeezed != shape:
            return None
        value = value.reshape(shape)
    return value.astype(variable.dtype.base_dtype.as_numpy_dtype)


class Plan(object):
    """What goes where: mapped model and optimizer variables, the step, and everything that did not map."""

    def __init__(self, ours, reader):
        self.reader = reader
        self.shapes = reader.get_variable_to_shape_map()
        self.dtypes = reader.get_variable_to_dtype_map()
        self.style = pick_style(ours, self.shapes)
        self.model, self.problems, self.reshaped = [], [], []
        for variable in ours.model:
            self._map_model(variable, self.style.checkpoint_name(_name(variable)))
        self._map_optimizer(ours)
        theirs = network.original_name(_name(ours.step))
        self.step = Mapping(ours.step, theirs, int(reader.get_tensor(theirs))) if theirs in self.shapes else None
        used = set([m.theirs for m in self.model + ([self.step] if self.step else [])] + self.optimizer_found)
        self.unmapped = ["not mapped: %s %s %s" % (name, list(self.shapes[name]), self.dtypes[name].name)
                         for name in sorted(self.shapes) if name not in used]

    def _map_model(self, variable, theirs):
        if theirs not in self.shapes:
            self.problems.append("missing: %s %s%s" % (_name(variable), variable.shape.as_list(),
                                                          "" if theirs == _name(variable) else " (as %s)" % theirs))
            return
        value = _fits(self.reader.get_tensor(theirs), variable)
        if value is None:
            self.problems.append("shape: %s is %s here and %s in the checkpoint (%s)"
                                 % (_name(variable), variable.shape.as_list(), self.shapes[theirs], theirs))
            return
        if list(self.shapes[theirs]) != variable.shape.as_list():
            self.reshaped.append(theirs)
        self.model.append(Mapping(variable, theirs, value))

    def _map_optimizer(self, ours):
        """All of the optimizer's state, or none of it (Adam's moments and beta powers only make sense together)."""
        self.optimizer, self.optimizer_missing = [], []
        for variable in ours.optimizer:
            theirs = self.style.checkpoint_name(network.original_name(_name(variable)))
            value = _fits(self.reader.get_tensor(theirs), variable) if theirs in self.shapes else None
            if value is None:
                self.optimizer_missing.append(_name(variable))
            else:
                self.optimizer.append(Mapping(variable, theirs, value))
        self.optimizer_found = [m.theirs for m in self.optimizer]
        if self.optimizer_missing:
            self.optimizer = []

    def lines(self, ours, prefix):
        """What the import did, one line each (printed before anything is written or refused)."""
        lines = ["checkpoint: %s" % prefix, "style: %s" % self.style.name]
        lines += ["port: %s" % difference for difference in self.style.differences]
        lines.append("model: %d of %d variables mapped%s" % (
            len(self.model), len(ours.model),
            " (%d reshaped: %s)" % (len(self.reshaped), ", ".join(sorted(self.reshaped))) if self.reshaped else ""))
        if self.optimizer:
            lines.append("optimizer: %d Adam variables mapped (slots and beta powers): fine-tuning continues "
                         "the original's moments" % len(self.optimizer))
        else:
            lines.append("optimizer: started fresh (%d of %d Adam variables not in the checkpoint, e.g. %s)"
                         % (len(self.optimizer_missing), len(ours.optimizer), self.optimizer_missing[0]))
        if self.step is None:
            lines.append("global_step: not in the checkpoint; the run starts at step 0")
        else:
            lines.append("global_step: %d (%s %s -> %s)" % (self.step.value, self.step.theirs,
                                                              self.dtypes[self.step.theirs].name,
                                                              ours.step.dtype.base_dtype.name))
        return lines + self.unmapped + self.problems


def import_checkpoint(source, run_dir, hp):
    """Write ``run_dir`` (hparams.json, checkpoints/model.ckpt-<step>) from ``source``; returns the Plan."""
    if hp.crop_style != crops.ORIGINAL:
        raise CheckpointImportError("crop_style=%s: the original's checkpoints were trained on its own crops; drop "
                                    "the crop_style override (the run must read crop_style=%s data)"
                                    % (hp.crop_style, crops.ORIGINAL))
    prefix = checkpoint_prefix(source)
    if os.path.exists(run_dir) and (not os.path.isdir(run_dir) or os.listdir(run_dir)):
        raise CheckpointImportError("--run-dir %s already exists; pass a new folder (an import never overwrites a "
                                    "run)" % run_dir)
    damage = checkpoints.problem(prefix)
    if damage is not None:
        raise CheckpointImportError("checkpoint %s is unreadable (%s); copy it again from its source"
                                    % (prefix, damage))
    reader = tf.train.load_checkpoint(prefix)
    ours = OurVariables(hp)
    plan = Plan(ours, reader)
    for line in plan.lines(ours, prefix):
        print(line)
    if plan.problems:
        raise CheckpointImportError("%s does not hold this network's model (%d model variable(s) missing or of another "
                                    "shape, listed above): %s" % (prefix, len(plan.problems), plan.style.refusal))
    step = plan.step.value if plan.step else 0
    parent = os.path.dirname(os.path.abspath(run_dir))
    with atomic.building_folder(run_dir, os.path.join(parent, ".tmp-import-" + os.path.basename(run_dir))) as tmp:
        hp.save(os.path.join(tmp, rundir.HPARAMS))
        checkpoint_dir = rundir.checkpoint_dir(tmp)
        os.makedirs(checkpoint_dir)
        with ours.graph.as_default(), tf.Session() as session:
            session.run(tf.global_variables_initializer())
            # Each variable's initializer fed its value, all in one run (a run per variable re-prunes the graph
            # every time: minutes on the chess graph).
            values = [(m.ours, m.value) for m in plan.model + plan.optimizer] + [(ours.step, step)]
            session.run([v.initializer for v, _ in values], dict((v.initializer.inputs[1], x) for v, x in values))
            checkpoints.save(ours.training.saver, session, checkpoint_dir, step)
    print("wrote %s (hparams.json, %s/%s-%d)" % (run_dir, rundir.CHECKPOINTS, rundir.CHECKPOINT_NAME, step))
    return plan


def main(argv=None):
    args = build_parser().parse_args(argv)

    def body():
        hp = hparams_lib.resolve(args.preset, args.hparams_json, args.hparams)
        import_checkpoint(args.checkpoint, args.run_dir, hp)
    return cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
