"""What a preprocessed data directory holds: per-split hours, clips and usable windows, the last
preprocessing run's drops, and the audio-video offsets of its clips (`invoke dataset-report`)."""
import os

from common import plotting
from common import progress
from common.data import datadir
from common.data import dataset
from common.prep import sync
from common.prep.build_clip import PreprocessError


def dataset_report(data_dir, hp):
    """Per-split hours, clips, usable windows and missing frames, plus the last run's drops (one screen)."""
    if not os.path.isdir(data_dir):
        raise PreprocessError("data directory %s does not exist; pass --data DIR" % data_dir)
    hp = hp.replace(crop_style=datadir.recorded_style(data_dir) or hp.crop_style)  # report what is there
    lines = ["%-6s %6s %8s %9s %15s %15s" % ("split", "clips", "hours", "frames", "usable windows", "frames missing")]
    for split, facts in dataset.summarise(data_dir, hp).items():
        if "error" in facts:
            lines.append("%-6s %s" % (split, facts["error"]))
            continue
        lines.append("%-6s %6d %8.3f %9d %15d %15d" % (split, facts["clips"], facts["hours"], facts["frames"],
                                                     facts["usable_windows"], facts["frames_missing"]))
        if facts.get("skipped"):
            lines.append("       skipped: " + ", ".join("%s=%d" % kv for kv in sorted(facts["skipped"].items())))
    last = datadir.read_report(data_dir)
    if last is not None:
        lines.append("last preprocessing run: %d clips kept, %d dropped (%s); %d frames without a face interpolated" % (
            len(last.get("kept", {})), len(last.get("dropped", {})),
            ", ".join("%s=%d" % kv for kv in sorted(last.get("dropped_by_reason", {}).items())) or "none",
            last.get("frames_without_face_filled", 0)))
    lines.append(sync_report(data_dir, hp))
    return "\n".join(lines)


def sync_report(data_dir, hp, splits=datadir.SPLITS):
    """Offset histogram of the clips in the splits (text, and the data directory's sync plot).

    Offsets come from the last preprocessing report; clips it does not cover (the embedded
    speakers, older runs) are measured now.
    """
    last = datadir.read_report(data_dir) or {}
    recorded = {cid: s["sync"] for cid, s in last.get("kept", {}).items() if "sync" in s}
    clips = {}
    for split in splits:
        try:
            clips.update((clip.id, clip.path) for clip in dataset.ClipIndex(data_dir, split, hp).clips)
        except dataset.DatasetError:
            continue
    offsets, unsure = [], 0
    for clip_id, folder in progress.bar(sorted(clips.items()), desc="sync", unit="clip"):
        record = recorded.get(clip_id) or sync.as_record(sync.estimate_folder(folder, hp))
        offset = record.get("residual", record["offset"])
        if offset is None:
            unsure += 1
        else:
            offsets.append(offset)
    plot = datadir.sync_plot_path(data_dir)
    plotting.plot_histogram(plot, sync.histogram(offsets), "audio-video offset (frames; > 0: audio lags)",
                            "clips (%d unsure not shown)" % unsure)
    return sync.format_histogram(offsets, unsure) + "\nplot: %s" % plot
