"""Videos -> the preprocessed layout, many at once: ``python -m common.prep.preprocess`` (`invoke preprocess`).

Each video becomes one clip folder (common.prep.build_clip) in a pool of worker processes; a
re-run skips finished clips. Clip-level faults are recorded and skipped; the run writes the
preprocessing report and the split lists and prints a summary. ``--report`` summarises a data
directory instead (common.prep.reports).
"""
import argparse
import collections
import logging
import multiprocessing
import os
import resource
import shutil
import sys
import time

import cv2

from common import atomic
from common import cli
from common import progress
from common.config import hparams as hparams_lib
from common.data import crops
from common.data import datadir
from common.prep import build_clip
from common.prep import download
from common.prep import faces
from common.prep import grid
from common.prep import reports
from common.prep import sync
from common.prep import video

LOG = logging.getLogger(__name__)


def speaker_clips(data_dir):
    """(clip id, video path) of the pieces `invoke download` cut; ids like ``<vid>/cut-N``."""
    intervals = datadir.pieces_dir(data_dir)
    if not os.path.isdir(intervals):
        raise build_clip.PreprocessError("%s does not exist; run `invoke download --speaker ...` first"
                                         % intervals)
    return datadir.pieces(data_dir)


def folder_clips(videos_dir):
    """(clip id, path) of every video file below ``videos_dir``; the id is its relative path without extension."""
    if not os.path.isdir(videos_dir):
        raise build_clip.PreprocessError("video folder %s does not exist; pass --videos DIR with .mp4 files"
                                         % videos_dir)
    return video.find_videos(videos_dir)


_WORKER = {}


def _cpu_seconds():
    """CPU time of this process and its finished children (ffmpeg): throughput that ignores machine load."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _init_worker(detector_name):
    cv2.setNumThreads(1)
    _WORKER["detector"] = faces.make_detector(detector_name)


def _work(task):
    clip_id, path, out_dir, hp, opts = task
    start = time.time()
    cpu = _cpu_seconds()
    try:
        stats = build_clip.preprocess_clip(path, out_dir, hp, opts, _WORKER.get("detector"))
        stats["time"] = time.time() - start
        stats["cpu_seconds"] = _cpu_seconds() - cpu
        return clip_id, "kept", stats
    except build_clip.ClipFault as exc:
        return clip_id, "dropped", {"reason": exc.reason, "message": str(exc)}
    except Exception as exc:  # a bug must not stop the other clips; the report names it
        LOG.exception("clip %s failed unexpectedly", clip_id)
        return clip_id, "dropped", {"reason": "error", "message": "%s: %s" % (type(exc).__name__, exc)}


def run(clips, data_dir, hp, opts=None, workers=2):
    """Preprocess ``clips`` [(clip id, video path)] into ``data_dir/preprocessed``; returns the report dict."""
    opts = opts or build_clip.default_options(hp)
    faces.make_detector(opts.detector)
    if not clips:
        raise build_clip.PreprocessError("no video to preprocess; check the --videos/--speaker folder")
    root = datadir.clip_root(data_dir)
    try:
        if not os.path.isdir(root):
            os.makedirs(root)
        shutil.rmtree(datadir.building_dir(root), ignore_errors=True)
        os.makedirs(datadir.building_dir(root))
    except OSError as exc:
        raise build_clip.PreprocessError("cannot write to %s (%s); pass a writable --data DIR"
                                         % (root, exc.strerror or exc))
    crops.record_style(data_dir, hp.crop_style)
    report = collections.OrderedDict([
        ("data_dir", os.path.abspath(data_dir)), ("detector", opts.detector), ("options", opts._asdict()),
        ("fps", hp.fps), ("img_size", hp.img_size), ("crop_style", hp.crop_style), ("clips", len(clips)),
        ("kept", collections.OrderedDict()), ("already_done", 0), ("dropped", collections.OrderedDict())])
    tasks = []
    for clip_id, path in clips:
        out = datadir.clip_folder(data_dir, clip_id)
        if os.path.isdir(out):
            report["already_done"] += 1
        else:
            tasks.append((clip_id, path, out, hp, opts))
    start = time.time()
    bar = progress.bar(total=len(tasks), desc="preprocess", unit="clip")
    try:
        if workers > 1 and len(tasks) > 1:
            # spawn, not fork: a child forked after OpenCV started its thread pool can deadlock in cv2.
            context = multiprocessing.get_context("spawn")
            pool = context.Pool(min(workers, len(tasks)), _init_worker, (opts.detector,))
            try:
                results = pool.imap_unordered(_work, tasks)
                for result in results:
                    _record(report, result)
                    bar.update(1)
            finally:
                pool.terminate()
                pool.join()
        else:
            _init_worker(opts.detector)
            for task in tasks:
                _record(report, _work(task))
                bar.update(1)
    finally:
        bar.close()
        shutil.rmtree(datadir.building_dir(root), ignore_errors=True)
    elapsed = time.time() - start
    frames = sum(s["frames"] for s in report["kept"].values())
    report["seconds"] = elapsed
    report["frames"] = frames
    report["frames_per_second"] = frames / elapsed if elapsed > 0 else 0.0
    cpu = sum(s.get("cpu_seconds", 0.0) for s in report["kept"].values())
    report["frames_per_cpu_second"] = frames / cpu if cpu > 0 else 0.0
    report["frames_without_face_filled"] = sum(s["no_face"] for s in report["kept"].values())
    report["dropped_by_reason"] = dict(collections.Counter(d["reason"] for d in report["dropped"].values()))
    report["sync"] = sync_summary([s["sync"] for s in report["kept"].values() if "sync" in s])
    atomic.write_json(datadir.report_path(data_dir), report, sort_keys=False)
    if tasks and not report["kept"]:
        first = next(iter(report["dropped"].items()))
        raise build_clip.PreprocessError("all %d clips were dropped (first: %s: %s); see %s" % (
            len(tasks), first[0], first[1]["message"], datadir.report_path(data_dir)))
    return report


def sync_summary(records):
    """Run-level view of the clips' sync records: counts, confident-offset histogram, clips shifted."""
    offsets = [r["offset"] for r in records if r["offset"] is not None]
    counts = sync.histogram(offsets)
    return collections.OrderedDict([
        ("measured", len(records)), ("unsure", len(records) - len(offsets)),
        ("shifted", sum(1 for r in records if r.get("shifted"))),
        ("histogram", collections.OrderedDict((str(k), v) for k, v in counts.items() if v))])


def _record(report, result):
    clip_id, state, stats = result
    report[state][clip_id] = stats
    if state == "dropped":
        LOG.warning("clip %s dropped (%s): %s", clip_id, stats["reason"], stats["message"])


def format_report(report, limit=10):
    """One-screen summary of a run's report."""
    kept = report["kept"]
    lines = ["preprocessed %d clips: %d kept, %d already done, %d dropped; %d frames in %.1f s "
             "(%.1f frames/s, %.1f frames per CPU second)" % (
                 report["clips"], len(kept), report["already_done"], len(report["dropped"]), report["frames"],
                 report["seconds"], report["frames_per_second"], report.get("frames_per_cpu_second", 0.0))]
    if report["frames"]:
        lines.append("frames without a face (boxes interpolated): %d (%.2f%%)" % (
            report["frames_without_face_filled"], 100.0 * report["frames_without_face_filled"] / report["frames"]))
    sync_facts = report.get("sync")
    if sync_facts and sync_facts["measured"]:
        lines.append("audio-video offset: %d clips measured, %d unsure, %d shifted back; offsets %s" % (
            sync_facts["measured"], sync_facts["unsure"], sync_facts["shifted"],
            ", ".join("%+d: %d" % (int(k), v) for k, v in sync_facts["histogram"].items()) or "none confident"))
    if report["dropped"]:
        lines.append("dropped by reason: "
                     + ", ".join("%s=%d" % kv for kv in sorted(report["dropped_by_reason"].items())))
        for clip_id, why in list(report["dropped"].items())[:limit]:
            lines.append("  %s: %s: %s" % (clip_id, why["reason"], why["message"]))
        if len(report["dropped"]) > limit:
            lines.append("  ... %d more in %s" % (len(report["dropped"]) - limit, datadir.PREPROCESS_REPORT))
    lines.append("report: %s" % datadir.report_path(report["data_dir"]))
    return "\n".join(lines)


def write_split(data_dir, split, clip_ids):
    """Write the split list ``split`` with those of ``clip_ids`` that have a preprocessed folder."""
    done = [cid for cid in clip_ids if os.path.isdir(datadir.clip_folder(data_dir, cid))]
    datadir.write_split(data_dir, split, done)
    return done


def write_speaker_splits(data_dir, speaker):
    """Write the split lists with the speaker's video ids that have preprocessed clips."""
    return dict((split, len(write_split(data_dir, split, download.speaker_ids(speaker, split))))
                for split in datadir.SPLITS)


def preprocess_speaker(speaker, data_root, hp, opts=None, workers=2):
    """Preprocess ``data_root/<speaker>/intervals`` and write its split lists; returns the report."""
    try:
        download.speaker_ids(speaker)
    except download.DownloadError as exc:
        raise build_clip.PreprocessError(str(exc))
    data_dir = os.path.join(data_root, speaker)
    report = run(speaker_clips(data_dir), data_dir, hp, opts, workers)
    report["splits"] = write_speaker_splits(data_dir, speaker)
    atomic.write_json(datadir.report_path(data_dir), report, sort_keys=False)
    return report


def import_grid(grid_dir, data_dir, hp, opts=None, workers=2):
    """Preprocess the GRID corpus in GRID_DIR into DATA_DIR with each kept clip's words; returns the report."""
    clips = grid.grid_clips(grid_dir)
    report = run([(clip_id, path) for clip_id, path, _ in clips], data_dir, hp, opts, workers)
    report["splits"] = grid.attach_words(clips, data_dir)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m common.prep.preprocess", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--speaker", help="preprocess DATA/<speaker>/intervals (after `invoke download`)")
    source.add_argument("--videos", help="preprocess every video below this folder into DATA/preprocessed")
    source.add_argument("--grid", metavar="GRID_DIR",
                        help="import the GRID corpus (<speaker>/<id>.mpg + alignments/<speaker>/<id>.align) into DATA")
    source.add_argument("--report", metavar="DATA_DIR", help="summarise a preprocessed data directory and exit")
    parser.add_argument("--data", default="data", help="data root (speaker mode) or data dir (--videos mode)")
    parser.add_argument("--preset", help="hparams preset: sets fps and img_size (default: the speaker's, else default)")
    parser.add_argument("--hparams", default="", help="overrides k=v,...")
    parser.add_argument("--crop-style", choices=hparams_lib.CROP_STYLES, default=None,
                        help="how faces are cropped and audio levelled (hparams crop_style; default: the original's)")
    parser.add_argument("--detector", default=faces.DEFAULT_DETECTOR,
                        help="one of %s" % ", ".join(sorted(faces.DETECTORS)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--detect-max-side", type=int, default=640,
                        help="frames are downscaled to this longest side for face detection (faces under ~25 px "
                             "there are missed)")
    parser.add_argument("--split", help="--videos mode: also write DATA/<split>.txt listing the kept clips")
    parser.add_argument("--fix-sync", action="store_true",
                        help="shift the audio of clips with a confident non-zero audio-video offset before the mels")
    parser.add_argument("--max-offset", type=int, default=None, metavar="N",
                        help="drop clips still confidently more than N frames off (after --fix-sync, if given)")
    args = parser.parse_args(argv)
    return cli.run(lambda: _run_cli(args))


def _run_cli(args):
    preset = args.preset or (args.speaker if args.speaker else "default")
    overrides = hparams_lib.parse_overrides(args.hparams)
    if args.crop_style:
        overrides["crop_style"] = args.crop_style
    hp = hparams_lib.resolve(preset, overrides=overrides)
    if args.report:
        print(reports.dataset_report(args.report, hp))
        return
    if args.max_offset is not None and args.max_offset < 0:
        raise build_clip.PreprocessError("--max-offset %d is negative; pass 0 or more frames" % args.max_offset)
    opts = build_clip.default_options(hp, detector=args.detector, detect_max_side=args.detect_max_side,
                                      fix_sync=args.fix_sync, max_offset=args.max_offset)
    faces.make_detector(args.detector)
    if args.speaker:
        report = preprocess_speaker(args.speaker, args.data, hp, opts, args.workers)
    elif args.grid:
        report = import_grid(args.grid, args.data, hp, opts, args.workers)
    else:
        report = run(folder_clips(args.videos), args.data, hp, opts, args.workers)
        if args.split:
            write_split(args.data, args.split, [cid for cid, _ in folder_clips(args.videos)])
    print(format_report(report))


if __name__ == "__main__":
    sys.exit(main())
