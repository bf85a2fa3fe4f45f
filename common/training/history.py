"""One history per run directory, across every process that trained it.

A run is trained in segments (preempted, killed, resumed). Steps after the last surviving checkpoint
are trained again by the next segment, so on every start the step log is cut back to the restored
step (what was dropped is logged), and run_summary.json lists every segment, clipped the same way:
the log, loss.png and the summary describe exactly the training the checkpoints hold.
"""
import json
import logging
import os
import time

import numpy as np

from common import atomic
from common import plotting
from common.training import rundir

LOG = logging.getLogger("lip2wav.train")
# How a segment that was still running when its summary was last written ended: killed, no handler ran.
KILLED = "killed (resumed from its last checkpoint)"


def read_log(run_dir, name=rundir.TRAIN_LOG):
    """The logged records of the chief's log or a rank's own."""
    return rundir.read_jsonl(os.path.join(run_dir, name))


def truncate_log(run_dir, last_step, name=rundir.TRAIN_LOG):
    """Keep each step <= ``last_step`` once, in order; the file is rewritten only when that changes it."""
    path = os.path.join(run_dir, name)
    if not os.path.isfile(path):
        return
    with open(path) as f:
        original = f.read()
    by_step = {}
    for record in read_log(run_dir, name):
        if record["step"] <= last_step:
            by_step[record["step"]] = record
    text = "".join(json.dumps(by_step[step], sort_keys=True) + "\n" for step in sorted(by_step))
    if text != original:
        dropped = len([line for line in original.splitlines() if line.strip()]) - len(by_step)
        atomic.write_text(path, text)
        LOG.info("%s: dropped %d records of steps no surviving checkpoint covers (after step %d); "
                 "those steps are trained again", path, dropped, last_step)


def append_log(path, record):
    """One JSON line appended to a log (the chief's rundir.TRAIN_LOG, or a rank's own)."""
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def plot_losses(run_dir):
    """loss.png over the whole run, resumed segments included (read back from the cleaned log)."""
    records = read_log(run_dir)
    if records:
        plotting.plot_losses(os.path.join(run_dir, rundir.PLOTS, rundir.LOSS_PLOT),
                             [r["step"] for r in records], [r["loss"] for r in records])


def previous_segments(run_dir, restored_step):
    """Segments of earlier processes that the restored checkpoint covers, clipped to its step."""
    path = os.path.join(run_dir, rundir.SUMMARY)
    if not os.path.isfile(path):
        return []
    try:
        with open(path) as f:
            segments = json.load(f).get("segments", [])
    except (ValueError, AttributeError):
        LOG.warning("%s is damaged; the new summary starts from this segment", path)
        return []
    kept = []
    for segment in segments:
        if segment["first_step"] > restored_step:
            continue
        segment = dict(segment)
        if segment["last_step"] > restored_step:
            segment["last_step"] = restored_step
            segment["ended"] = KILLED
        elif segment["ended"] == "running":
            segment["ended"] = KILLED
        kept.append(segment)
    return kept


class Segment(object):
    """What this process trained: step times and losses, for its entry in the run summary."""

    def __init__(self):
        self.started = time.time()
        self.steps = []
        self.losses = []
        self.step_seconds = []

    def add(self, step, loss, seconds):
        self.steps.append(step)
        self.losses.append(loss)
        self.step_seconds.append(seconds)

    def sec_per_step_median(self):
        """Median step time without the first step (graph warm-up), unless it is the only one."""
        seconds = self.step_seconds[1:] or self.step_seconds
        return float(np.median(seconds)) if seconds else None

    def entry(self, last_step, ended, source_stats):
        """This segment up to ``last_step`` as a run-summary entry; None when it trained nothing."""
        if not self.steps or self.steps[0] > last_step:
            return None
        return {
            "first_step": self.steps[0],
            "last_step": last_step,
            "wall_seconds": time.time() - self.started,
            "sec_per_step_median": self.sec_per_step_median(),
            "ended": ended,
            "windows_skipped": source_stats["windows_skipped"],
            "quarantined_clips": source_stats["quarantined_clips"],
        }


def whole_run(run_dir, segments):
    """Run-wide figures from all segments and the cleaned log (every surviving logged step but each
    segment's first, which includes graph warm-up)."""
    warm_up = set(segment["first_step"] for segment in segments)
    logged = [r["sec_per_step"] for r in read_log(run_dir) if "sec_per_step" in r and r["step"] not in warm_up]
    skipped, quarantined = {}, {}
    for segment in segments:
        for reason, count in segment["windows_skipped"].items():
            skipped[reason] = skipped.get(reason, 0) + count
        quarantined.update(segment["quarantined_clips"])
    return {
        "first_step": segments[0]["first_step"] if segments else None,
        "last_step": segments[-1]["last_step"] if segments else None,
        "sec_per_step_median": float(np.median(logged)) if logged else None,
        "wall_seconds": float(sum(s["wall_seconds"] for s in segments)),
        "windows_skipped": skipped,
        "quarantined_clips": quarantined,
        "segments": segments,
    }
