"""Plant a known bug in a copy of the repository and check that the tests meant to catch it fail.

    python -m tests.mutations --list            # the planted bugs and the tests expected to catch each
    python -m tests.mutations                   # plant each in turn; report caught / missed
    python -m tests.mutations stitch-reversed demo-exits-0
    python -m tests.mutations --runslow         # also the bugs only a slow (minutes of training) test catches

Each mutation replaces one exact snippet of one file in a temporary copy of the working tree
(uncommitted edits included; .git, caches, runs and demo output left out) and runs its tests
there with `python -m pytest -x`. A mutation whose snippet is no longer in the file is reported
as stale: update it with the code it targets. Exit status: 0 when every mutation run was caught.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", "*.pyc", "runs", "demo", ".venv")


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    bug: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    slow: bool = False


MUTATIONS = (
    Mutation("profile-overlap-counted-twice", "the profile gives ops running side by side their whole duration",
             "export/tools/profile.py",
             "slice_each = (moment - previous) / float(len(running))",
             "slice_each = float(moment - previous)",
             ("tests/test_profile.py", "-k", "wall_shares")),
    Mutation("stitch-reversed", "synthesis stitches a video's windows in reverse order",
             "export/apps/synthesize.py",
             "windows.join(np.concatenate(mels), mel_starts,",
             "windows.join(np.concatenate(mels)[::-1], mel_starts,",
             ("tests/test_synthesize.py", "-k", "oracle")),
    Mutation("eval-baseline-as-model", "evaluation scores the baseline's wav as the model's",
             "export/apps/evaluate.py",
             'systems = [("model", result.wav), ("baseline", synth_lib.vocode(',
             'systems = [("model", synth_lib.vocode(mels["baseline"], hp, len(result.wav))), '
             '("baseline", synth_lib.vocode(',
             ("tests/test_evaluate.py", "-k", "oracle")),
    Mutation("eval-systems-swapped", "evaluation files the model's scores under the baseline and vice versa",
             "export/apps/evaluate.py",
             'systems = [("model", result.wav), ("baseline", synth_lib.vocode(',
             'systems = [("baseline", result.wav), ("model", synth_lib.vocode(',
             ("tests/test_evaluate.py", "-k", "oracle")),
    Mutation("resume-ignores-hparams-json", "a run directory's hparams.json is ignored on resume",
             "common/training/loop.py",
             "    return restored\n",
             "    return requested\n",
             ("tests/test_training.py", "-k", "without_flags")),
    Mutation("resume-data-from-batch-0", "resume restarts the data at batch 0",
             "common/training/loop.py",
             "first_batch=start_step,",
             "first_batch=0,",
             ("tests/test_training.py", "-k", "resume_continues")),
    Mutation("ctrl-c-saves-nothing", "Ctrl-C stops training without writing a checkpoint",
             "common/training/loop.py",
             '        _save_checkpoint(graph, sess, run, step, "stopped by %s" % name)\n',
             "        pass\n",
             ("tests/test_training.py", "-k", "ctrl_c")),
    Mutation("npu-teacher-frame-off-by-one", "the NPU decode loop feeds the next step's target frame",
             "npu_training/decoder.py",
             "tf.stack([0, step, 0])",
             "tf.stack([0, tf.minimum(step + 1, max_iters - 1), 0])",
             ("tests/test_parity.py", "-k", "teacher_forced")),
    Mutation("freeze-without-restore", "freezing initialises the variables instead of restoring the checkpoint",
             "export/freeze.py",
             "                saver.restore(session, checkpoint)\n",
             "                session.run(tf.global_variables_initializer())\n",
             ("tests/test_export.py", "-k", "frozen_runner_matches")),
    Mutation("demo-exits-0", "the demo exits 0 when the baseline wins",
             "export/apps/demo.py",
             "        require_model_wins(summary)\n",
             "",
             ("tests/test_demo.py", "-k", "shrunk")),
    Mutation("preset-value-changed", "a speaker preset file drifts from the reference (chess img_size 48 -> 96)",
             "common/config/presets/chess.json",
             '"img_size" : 48,',
             '"img_size" : 96,',
             ("tests/test_hparams.py", "-k", "pinned")),
    Mutation("mixed-precision-ignored", "--mixed-precision does not wrap the optimizer for loss scaling",
             "gpu_training/session.py",
             "    if not mixed_precision:\n        return opt\n",
             "    return opt\n",
             ("tests/test_training.py", "-k", "mixed_precision")),
    Mutation("xla-ignored", "--xla does not turn on the JIT",
             "gpu_training/session.py",
             "    if xla:\n        config.graph_options.optimizer_options.global_jit_level",
             "    if False:\n        config.graph_options.optimizer_options.global_jit_level",
             ("tests/test_training.py", "-k", "xla")),
    Mutation("zoneout-zoned-output", "the zoneout LSTM emits its zoned state instead of the plain LSTM output",
             "common/model/layers.py",
             "return new_h, tf.nn.rnn_cell.LSTMStateTuple(c, h), kernel_input",
             "return h, tf.nn.rnn_cell.LSTMStateTuple(c, h), kernel_input",
             ("tests/test_original_network.py", "-k", "reproduces and gpu and free")),
    Mutation("residual-after-relu", "the encoder adds the residual after the ReLU (x + relu(bn(conv(x))))",
             "common/model/layers.py",
             "return tf.nn.relu(y + x if residual else y)",
             "return x + tf.nn.relu(y) if residual else tf.nn.relu(y)",
             ("tests/test_original_network.py", "-k", "reproduces and npu and free")),
    Mutation("prenet-dropout-switch-ignored", "prenet_dropout_at_inference=false leaves the dropout on",
             "common/model/network.py",
             "self.prenet_dropout = is_training or hp.prenet_dropout_at_inference",
             "self.prenet_dropout = True",
             ("tests/test_original_network.py", "-k", "reproduces and gpu and teacher")),
    Mutation("l2-on-projections", "the L2 term also covers the projections the original leaves out",
             "common/model/network.py",
             'L2_EXCLUDED = ("bias", "Bias", "_projection", ',
             'L2_EXCLUDED = ("bias", "Bias", ',
             ("tests/test_original_network.py", "-k", "l2")),
    Mutation("old-architecture-accepted", "a run directory without an architecture in hparams.json is resumed",
             "common/config/hparams.py",
             "if architecture != ARCHITECTURE:",
             "if architecture not in (ARCHITECTURE, None):",
             ("tests/test_reliability.py", "-k", "old_architecture")),
    Mutation("import-port-rule-lost", "the importer looks the port's decoder variables up under 'decoder/'",
             "export/apps/import_checkpoint.py",
             'lambda name: re.sub(r"(^|/)inference/decoder/", r"\\1inference/", name, count=1),',
             "lambda name: name,",
             ("tests/test_import_checkpoint.py", "-k", "ascend_port")),
    Mutation("import-no-reshape", "the importer refuses the port's [1, 1, n] attention vector instead of reshaping",
             "export/apps/import_checkpoint.py",
             "while len(squeezed) > len(shape) and squeezed[0] == 1:",
             "while False:",
             ("tests/test_import_checkpoint.py", "-k", "ascend_port")),
    Mutation("import-slots-swapped", "the importer fills Adam's first moment from the second",
             "export/apps/import_checkpoint.py",
             "theirs = self.style.checkpoint_name(network.original_name(_name(variable)))",
             "theirs = self.style.checkpoint_name(network.original_name(re.sub(r'Adam(_1)?$', lambda m: "
             "'Adam' if m.group(1) else 'Adam_1', _name(variable))))",
             ("tests/test_import_checkpoint.py", "-k", "adam_state")),
    Mutation("import-values-shifted", "the importer stores each model variable reversed along its first axis",
             "export/apps/import_checkpoint.py",
             "        self.model.append(Mapping(variable, theirs, value))",
             "        self.model.append(Mapping(variable, theirs, value[::-1] if value.ndim else value))",
             ("tests/test_import_checkpoint.py", "-k", "holds_every")),
    Mutation("import-missing-accepted", "the importer writes a run directory although a model variable is missing",
             "export/apps/import_checkpoint.py",
             "    if plan.problems:\n        raise",
             "    if plan.problems and False:\n        raise",
             ("tests/test_import_checkpoint.py", "-k", "missing_a_model")),
    Mutation("lips-ignored", "the encoder sees blank frames, so the model can only learn the mean speech",
             "common/model/network.py",
             "conv_output, encoder_output = encode(inputs, hp, is_training, noise)",
             "conv_output, encoder_output = encode(tf.zeros_like(inputs), hp, is_training, noise)",
             ("tests/test_training.py", "-k", "free_running", "--runslow"), slow=True),
)


@dataclasses.dataclass
class Outcome:
    mutation: Mutation
    verdict: str  # caught, missed, stale or error
    failed: list[str]
    seconds: float
    detail: str = ""


def plant(copy: str, mutation: Mutation) -> bool:
    """Replace the snippet once in the copy; False when the snippet is not (exactly once) in the file."""
    path = os.path.join(copy, mutation.path)
    with open(path) as f:
        text = f.read()
    if text.count(mutation.old) != 1:
        return False
    with open(path, "w") as f:
        f.write(text.replace(mutation.old, mutation.new))
    return True


def run_one(mutation: Mutation, python: str, pytest_args: list[str]) -> Outcome:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lip2wav-mutant-") as scratch:
        copy = os.path.join(scratch, "repo")
        shutil.copytree(ROOT, copy, ignore=COPY_IGNORE)
        shared = os.path.join(os.path.dirname(ROOT), "shared")
        if os.path.isdir(shared):  # the copy keeps its sibling ../shared, where the original's fixtures are
            os.symlink(os.path.realpath(shared), os.path.join(scratch, "shared"))
        if not plant(copy, mutation):
            return Outcome(mutation, "stale", [], time.monotonic() - started,
                           "snippet not found once in %s; update the mutation" % mutation.path)
        proc = subprocess.run([python, "-m", "pytest", "-q", "-x", "-rf", "-p", "no:cacheprovider",
                               *mutation.tests, *pytest_args], cwd=copy, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True)
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.MULTILINE)
    seconds = time.monotonic() - started
    if proc.returncode == 0:
        return Outcome(mutation, "missed", [], seconds)
    if proc.returncode == 1 and failed:
        return Outcome(mutation, "caught", failed, seconds)
    return Outcome(mutation, "error", failed, seconds, proc.stdout[-2000:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    parser.add_argument("--runslow", action="store_true", help="also run the mutations only slow tests catch")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs pytest in the copy")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, e.g. '--runslow'")
    args = parser.parse_args(argv)
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        print("error: unknown mutation %s; choose from: %s" % (", ".join(unknown), ", ".join(known)),
              file=sys.stderr)
        return 2
    chosen = [known[n] for n in args.names] or [m for m in MUTATIONS if args.runslow or not m.slow]
    if args.list:
        for m in chosen:
            print("%-30s %s%s\n%30s %s: %s" % (m.name, m.bug, " (slow)" if m.slow else "", "", m.path,
                                                 " ".join(m.tests)))
        return 0
    outcomes = []
    for m in chosen:
        print("planting %s (%s) ..." % (m.name, m.bug), file=sys.stderr, flush=True)
        outcome = run_one(m, args.python, args.pytest_args.split())
        outcomes.append(outcome)
        print("  %s in %.0f s%s%s" % (outcome.verdict, outcome.seconds,
                                      (": " + ", ".join(outcome.failed)) if outcome.failed else "",
                                      ("\n" + outcome.detail) if outcome.detail else ""),
              file=sys.stderr, flush=True)
    print("%-30s %-7s %s" % ("mutation", "verdict", "failing test"))
    for o in outcomes:
        print("%-30s %-7s %s" % (o.mutation.name, o.verdict, ", ".join(o.failed) or "-"))
    return 0 if all(o.verdict == "caught" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
