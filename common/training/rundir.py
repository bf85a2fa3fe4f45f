"""The run directory's layout: the one module that names its entries and reads them back.

It imports no TensorFlow, so host tools (the report, the bench, the launcher, tasks.py) use it too. The layout
is the same for every device, so runs compare side by side:

  hparams.json              the resolved hyperparameters, restored on resume
  checkpoints/              model.ckpt-<step>.{index,data-*,meta}, written every --checkpoint-every steps and on
                            Ctrl-C or SIGTERM and found by scanning, so the directory can move; the `checkpoint`
                            state file TensorFlow tools read; corrupt/ holds damaged ones moved aside
                            (checkpoints.py writes and verifies them)
  plots/                    step-<N>-mel.png, step-<N>-alignment.png, loss.png
  events.out.tfevents.*     TensorBoard summaries (the run directory is the event folder)
  train_log.jsonl           one JSON line per logged step, with units (cut back to the checkpoint on resume)
  train_log.rank<N>.jsonl   rank N's own log lines; every other training file is written by rank 0 only
  run_summary.json          network, target, batch size, sec/step, samples/s, loss, wall time, and every
                            segment of the run (history.py); rewritten at every checkpoint
  distribution.json         world size and batch sizes of a data-parallel run (resume refuses another world size)
  rank_table.json           the HCCL rank table a multi-NPU launch writes (containers/launch.py)
  eval-<split>/             an evaluation: summary.json, scores.csv, wavs/<clip>.wav, plots/<clip>.png
  export/                   frozen graphs and .om models (`invoke export`)
  bench.json                benchmark figures the report shows beside the run
  report.html               the run's page (export/apps/report.py)
"""
import json
import logging
import os
import re

LOG = logging.getLogger("lip2wav.rundir")

HPARAMS = "hparams.json"
CHECKPOINTS = "checkpoints"
CHECKPOINT_NAME = "model.ckpt"
STATE_FILE = "checkpoint"
CORRUPT_DIR = "corrupt"
PLOTS = "plots"
LOSS_PLOT = "loss.png"
TRAIN_LOG = "train_log.jsonl"
RANK_LOG = "train_log.rank%d.jsonl"
SUMMARY = "run_summary.json"
DISTRIBUTION = "distribution.json"
RANK_TABLE = "rank_table.json"
EVAL_DIR = "eval-%s"
EVAL_SUMMARY = "summary.json"
EVAL_SCORES = "scores.csv"
EVAL_WAVS = "wavs"
EXPORT = "export"
BENCH = "bench.json"
REPORT = "report.html"

CHECKPOINT_INDEX = re.compile(r"^%s-(\d+)\.index$" % re.escape(CHECKPOINT_NAME))
# Any file of a checkpoint, including what a failed or killed save leaves (shards without an index, a
# <prefix>_temp* folder).
CHECKPOINT_FILE = re.compile(r"^%s-(\d+)(_temp.*|\.data-\d+-of-\d+|\.meta|\.index)$" % re.escape(CHECKPOINT_NAME))
STEP_PLOT = re.compile(r"^step-(\d+)-(\w+)\.png$")


def run_dir_of(run_or_checkpoint):
    """The run directory of a run directory or of a checkpoint prefix ``RUN/checkpoints/model.ckpt-N``."""
    path = str(run_or_checkpoint).rstrip("/")
    if os.path.isdir(path):
        return path
    return os.path.dirname(os.path.dirname(os.path.abspath(path)))


def checkpoint_dir(run_dir):
    return os.path.join(run_dir, CHECKPOINTS)


def checkpoint_prefix(folder, step):
    """``folder/model.ckpt-<step>``; ``folder/model.ckpt`` (what a Saver is given) when ``step`` is None."""
    return os.path.join(folder, CHECKPOINT_NAME if step is None else "%s-%d" % (CHECKPOINT_NAME, step))


def checkpoint_step(prefix):
    """``.../model.ckpt-1200`` -> 1200."""
    return int(prefix.rsplit("-", 1)[1])


def list_checkpoints(folder):
    """Prefixes of the checkpoints in ``folder`` that have an index, oldest first."""
    if not os.path.isdir(folder):
        return []
    steps = sorted(int(m.group(1)) for m in (CHECKPOINT_INDEX.match(name) for name in os.listdir(folder)) if m)
    return [checkpoint_prefix(folder, step) for step in steps]


def step_plot(run_dir, step, kind):
    """``plots/step-<step>-<kind>.png`` (kind: mel, alignment)."""
    return os.path.join(run_dir, PLOTS, "step-%d-%s.png" % (step, kind))


def train_log_name(rank=None):
    """The chief's log (rank None), or rank N's own."""
    return TRAIN_LOG if rank is None else RANK_LOG % rank


def eval_dir(run_dir, split):
    """Where `invoke evaluate` scores ``split`` by default."""
    return os.path.join(run_dir, EVAL_DIR % split)


def read_jsonl(path):
    """The records (JSON objects with an integer step) of a log; a line a killed process cut is skipped and logged."""
    if not os.path.isfile(path):
        return []
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                LOG.warning("%s:%d: not JSON (a line cut by an interruption?); skipped", path, number)
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                records.append(record)
    return records
