"""Videos -> the preprocessed layout: face crops (JPEGs), 16 kHz audio.wav and mels.npz.

Per clip: the video is resampled to hp.fps by ffmpeg (so variable-frame-rate input
becomes constant), faces are detected in every frame on a downscaled copy, boxes are
filled across short gaps and median-smoothed over time (a jittering crop would teach the
model head motion instead of lip motion), then the frames are decoded again and cropped.
Audio is cut to exactly round(N * sample_rate / fps) samples for N frames so frames and
mels stay aligned. Each clip is built in a temp folder and renamed when whole, so a
re-run skips finished clips and a failure never leaves a half clip. Clip-level faults
are recorded and skipped; the run writes preprocess_report.json and prints a summary.
"""
import argparse
import collections
import json
import logging
import multiprocessing
import os
import resource
import shutil
import sys
import time

import cv2
import numpy as np

from common import atomic
from common import cli
from common import progress
from common.config import hparams as hparams_lib
from common.data import audio
from common.data import crops
from common.data import dataset
from common.data import timing
from common.prep import download
from common.prep import faces
from common.prep import grid
from common.prep import sync
from common.prep import video
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

REPORT = "preprocess_report.json"
TMP_DIR = ".tmp"


class PreprocessError(Lip2WavError, RuntimeError):
    """A run-level fault (nothing to do, bad folder, unknown speaker); the message names the fix."""


class ClipFault(Exception):
    """A clip that cannot be used; ``reason`` is a short key for the report."""

    def __init__(self, reason, message):
        Exception.__init__(self, message)
        self.reason = reason


Options = collections.namedtuple(
    "Options", "detector detect_max_side smooth_frames max_gap_seconds max_missing jpeg_quality min_frames "
               "fix_sync max_offset")


def default_options(hp, **overrides):
    """Preprocessing knobs."""
    values = dict(detector=faces.DEFAULT_DETECTOR, detect_max_side=640, smooth_frames=5, max_gap_seconds=0.5,
                  max_missing=0.2, jpeg_quality=crops.JPEG_QUALITY, min_frames=hp.T,
                  fix_sync=False, max_offset=None)
    unknown = set(overrides) - set(values)
    if unknown:
        raise PreprocessError("unknown preprocessing option(s) %s" % ", ".join(sorted(unknown)))
    values.update(overrides)
    return Options(**values)


def detect_clip(path, fps, detector, max_side):
    """Face boxes [N, 5] (x0, y0, x1, y1, score; NaN when none) in full-frame pixels, and (width, height)."""
    info = video.probe(path)
    detector.reset()
    chunks = []
    scale = 1.0
    for batch in video.iter_frames(path, fps=fps, max_side=max_side):
        scale = float(info.width) / batch.shape[2]
        chunks.append(detector.detect(batch))
    boxes = np.concatenate(chunks)
    boxes[:, :4] *= scale
    return boxes, (info.width, info.height)


def crop_video(path, out_dir, hp, opts, detector=None, max_frames=None):
    """Write the face crops of a video as ``out_dir/<i>.jpg`` (detect, fill and smooth boxes, crop, JPEG).

    At most ``max_frames`` frames are kept (the ones the audio covers). Returns (crop boxes
    [n, 4] of (x0, y0, x1, y1) cut by hp.crop_style, detections [n, 5], frames without a face, (width, height));
    raises ClipFault for a video that cannot give ``opts.min_frames`` usable frames.
    """
    detector = detector or faces.make_detector(opts.detector)
    try:
        boxes, (width, height) = detect_clip(path, hp.fps, detector, opts.detect_max_side)
    except video.VideoError as exc:
        raise ClipFault("unreadable", str(exc))
    n = len(boxes) if max_frames is None else min(len(boxes), max_frames)
    if n < max(1, opts.min_frames):
        raise ClipFault("too_short", "%d usable frames, fewer than min_frames=%d" % (n, opts.min_frames))
    boxes = boxes[:n]
    try:
        filled, n_missing = faces.fill_boxes(boxes[:, :4], hp.fps, opts)
    except faces.NoFaceError as exc:
        raise ClipFault("no_face", str(exc))
    boxes_out = crops.crop_boxes(filled, hp.crop_style, width, height)
    written = 0
    try:
        for batch in video.iter_frames(path, fps=hp.fps):
            for frame in batch[:n - written]:
                crops.write(out_dir, written, crops.cut(frame, boxes_out[written], hp.img_size, hp.crop_style),
                            opts.jpeg_quality)
                written += 1
    except video.VideoError as exc:
        raise ClipFault("unreadable", str(exc))
    if written != n:
        raise ClipFault("unreadable", "second decode gave %d frames, first gave %d" % (written, n))
    return boxes_out, boxes, n_missing, (width, height)


def preprocess_clip(path, out_dir, hp, opts, detector=None, require_audio=True):
    """Turn one video into ``out_dir`` (built in a temp folder beside the other clips, then renamed).

    Training needs the audio, so a video without an audio track is a ClipFault("no_audio");
    with ``require_audio=False`` (synthesis from silent video) such a video gives only the
    crops and boxes.npy. Returns per-clip stats; raises ClipFault for a clip that cannot be
    used (nothing is left behind).
    """
    root, rel = _tmp_root(out_dir)
    tmp = os.path.join(root, TMP_DIR, rel.replace("/", "__") + ".%d" % os.getpid())
    try:
        with atomic.building_folder(out_dir, tmp):
            return _build_clip(path, tmp, hp, opts, detector, require_audio)
    except OSError as exc:
        raise ClipFault("write_failed", "%s" % exc)
    except audio.AudioError as exc:
        raise ClipFault("unreadable", str(exc))


def _build_clip(path, tmp, hp, opts, detector, require_audio):
    try:
        info = video.probe(path)
    except video.VideoError as exc:
        raise ClipFault("unreadable", str(exc))
    if require_audio and not info.has_audio:
        raise ClipFault("no_audio", "video has no audio track")
    wav_path = os.path.join(tmp, "audio.wav")
    max_frames = None
    if info.has_audio:
        try:
            video.extract_audio(path, wav_path, hp.sample_rate)
        except video.VideoError as exc:
            raise ClipFault("unreadable", str(exc))
        wav = audio.load_wav(wav_path, hp.sample_rate, rescaling_max=None)
        max_frames = timing.frames_in_samples(len(wav), hp)
    boxes_out, boxes, n_missing, (width, height) = crop_video(path, tmp, hp, opts, detector, max_frames)
    n = len(boxes_out)
    stats = {"frames": n, "no_face": n_missing, "seconds": timing.seconds(n, hp), "source_fps": info.fps,
             "size": [width, height]}
    if info.has_audio:
        stats["sync"], wav = check_sync(tmp, wav, n, hp, opts)
        audio.save_wav(wav, wav_path, hp.sample_rate)
        stored = audio.load_wav(wav_path, hp.sample_rate, rescaling_max=None)
        mel = audio.melspectrogram(mel_input(stored, hp), hp)
        np.savez(os.path.join(tmp, "mels.npz"), spec=mel.astype(np.float32))
        stats["mel_frames"] = int(mel.shape[1])
    np.save(os.path.join(tmp, "boxes.npy"), np.concatenate([boxes_out, boxes[:, 4:5]], axis=1).astype(np.float32))
    return stats


def check_sync(clip_dir, wav, n, hp, opts):
    """Measure the clip's audio-video offset; returns (report record, the clip's n frames of audio).

    With ``opts.fix_sync`` a confident non-zero offset is undone on the whole extracted
    ``wav`` (so audio past the clip's end fills in) and measured again; ``opts.max_offset``
    drops a clip whose confident offset, after any fix, is larger. A clip without a
    confident offset is kept: nothing says it is off.
    """
    samples_per_frame = hp.sample_rate / float(hp.fps)
    length = timing.num_samples(n, hp)
    mouth_frames = sync.read_crops(clip_dir, hp)
    found = sync.estimate(mouth_frames, wav[:length], hp.sample_rate, hp.fps)
    record = sync.as_record(found)
    residual = found.offset
    if opts.fix_sync and found.offset:
        fixed = sync.shift_audio(wav, found.offset, samples_per_frame, length)
        record["shifted"] = found.offset
        residual = sync.estimate(mouth_frames, fixed, hp.sample_rate, hp.fps).offset
        record["residual"] = residual
        wav = fixed
    if opts.max_offset is not None and residual is not None and abs(residual) > opts.max_offset:
        raise ClipFault("out_of_sync", "audio is %+d frames off the video (confidence %.1f), more than "
                        "--max-offset %d%s" % (residual, found.confidence, opts.max_offset,
                                               "" if opts.fix_sync else "; --fix-sync would shift it back"))
    return record, wav[:length]


def mel_input(wav, hp):
    """The audio a clip's mel is computed from: as stored (original), or peak-rescaled to hp.rescaling_max."""
    if hp.crop_style == crops.ORIGINAL:
        return wav
    peak = np.abs(wav).max() if wav.size else 0.0
    return wav / peak * hp.rescaling_max if peak > 0 else wav


def _tmp_root(out_dir):
    """(preprocessed root, clip id) of a clip folder ``.../preprocessed/<clip id>``."""
    parts = os.path.normpath(out_dir).split(os.sep)
    if "preprocessed" in parts:
        i = len(parts) - 1 - parts[::-1].index("preprocessed")
        return os.sep.join(parts[:i + 1]) or os.sep, "/".join(parts[i + 1:])
    return os.path.dirname(out_dir), os.path.basename(out_dir)


def speaker_clips(data_dir):
    """(clip id, video path) of ``data_dir/intervals/<vid>/cut-N.mp4``; ids like ``<vid>/cut-N``."""
    intervals = os.path.join(data_dir, "intervals")
    if not os.path.isdir(intervals):
        raise PreprocessError("%s does not exist; run `invoke download --speaker ...` first" % intervals)
    clips = []
    for vid in sorted(os.listdir(intervals)):
        folder = os.path.join(intervals, vid)
        if not os.path.isdir(folder):
            continue
        names = [f for f in os.listdir(folder) if f.startswith("cut-") and f.endswith(".mp4")]
        for name in sorted(names, key=lambda f: int(f[4:-4]) if f[4:-4].isdigit() else -1):
            clips.append((vid + "/" + name[:-4], os.path.join(folder, name)))
    return clips


def folder_clips(videos_dir):
    """(clip id, path) of every video file below ``videos_dir``; the id is its relative path without extension."""
    if not os.path.isdir(videos_dir):
        raise PreprocessError("video folder %s does not exist; pass --videos DIR with .mp4 files" % videos_dir)
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
        stats = preprocess_clip(path, out_dir, hp, opts, _WORKER.get("detector"))
        stats["time"] = time.time() - start
        stats["cpu_seconds"] = _cpu_seconds() - cpu
        return clip_id, "kept", stats
    except ClipFault as exc:
        return clip_id, "dropped", {"reason": exc.reason, "message": str(exc)}
    except Exception as exc:  # a bug must not stop the other clips; the report names it
        LOG.exception("clip %s failed unexpectedly", clip_id)
        return clip_id, "dropped", {"reason": "error", "message": "%s: %s" % (type(exc).__name__, exc)}


def run(clips, data_dir, hp, opts=None, workers=2):
    """Preprocess ``clips`` [(clip id, video path)] into ``data_dir/preprocessed``; returns the report dict."""
    opts = opts or default_options(hp)
    faces.make_detector(opts.detector)
    if not clips:
        raise PreprocessError("no video to preprocess; check the --videos/--speaker folder")
    root = os.path.join(data_dir, "preprocessed")
    try:
        if not os.path.isdir(root):
            os.makedirs(root)
        shutil.rmtree(os.path.join(root, TMP_DIR), ignore_errors=True)
        os.makedirs(os.path.join(root, TMP_DIR))
    except OSError as exc:
        raise PreprocessError("cannot write to %s (%s); pass a writable --data DIR" % (root, exc.strerror or exc))
    crops.record_style(data_dir, hp.crop_style)
    report = collections.OrderedDict([
        ("data_dir", os.path.abspath(data_dir)), ("detector", opts.detector), ("options", opts._asdict()),
        ("fps", hp.fps), ("img_size", hp.img_size), ("crop_style", hp.crop_style), ("clips", len(clips)), ("kept", collections.OrderedDict()),
        ("already_done", 0), ("dropped", collections.OrderedDict())])
    tasks = []
    for clip_id, path in clips:
        out = os.path.join(root, clip_id)
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
        shutil.rmtree(os.path.join(root, TMP_DIR), ignore_errors=True)
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
    atomic.write_json(os.path.join(data_dir, REPORT), report, sort_keys=False)
    if tasks and not report["kept"]:
        first = next(iter(report["dropped"].items()))
        raise PreprocessError("all %d clips were dropped (first: %s: %s); see %s" % (
            len(tasks), first[0], first[1]["message"], os.path.join(data_dir, REPORT)))
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
        lines.append("dropped by reason: " + ", ".join("%s=%d" % kv for kv in sorted(report["dropped_by_reason"].items())))
        for clip_id, why in list(report["dropped"].items())[:limit]:
            lines.append("  %s: %s: %s" % (clip_id, why["reason"], why["message"]))
        if len(report["dropped"]) > limit:
            lines.append("  ... %d more in %s" % (len(report["dropped"]) - limit, REPORT))
    lines.append("report: %s" % os.path.join(report["data_dir"], REPORT))
    return "\n".join(lines)


def write_speaker_splits(data_dir, speaker):
    """Write ``data_dir/{train,val,test}.txt`` with the speaker's video ids that have preprocessed clips."""
    counts = {}
    for split in dataset.SPLITS:
        ids = [vid for vid in download.speaker_ids(speaker, split)
               if os.path.isdir(os.path.join(data_dir, "preprocessed", vid))]
        atomic.write_text(os.path.join(data_dir, split + ".txt"), "".join(i + "\n" for i in ids))
        counts[split] = len(ids)
    return counts


def write_split(data_dir, split, clip_ids):
    """Write ``data_dir/<split>.txt`` with those of ``clip_ids`` that have a preprocessed folder."""
    done = [cid for cid in clip_ids if os.path.isdir(os.path.join(data_dir, "preprocessed", cid))]
    atomic.write_text(os.path.join(data_dir, split + ".txt"), "".join(i + "\n" for i in done))
    return done


def preprocess_speaker(speaker, data_root, hp, opts=None, workers=2):
    """Preprocess ``data_root/<speaker>/intervals`` and write its split lists; returns the report."""
    try:
        download.speaker_ids(speaker)
    except download.DownloadError as exc:
        raise PreprocessError(str(exc))
    data_dir = os.path.join(data_root, speaker)
    report = run(speaker_clips(data_dir), data_dir, hp, opts, workers)
    report["splits"] = write_speaker_splits(data_dir, speaker)
    atomic.write_json(os.path.join(data_dir, REPORT), report, sort_keys=False)
    return report


def dataset_report(data_dir, hp):
    """Per-split hours, clips, usable windows and missing frames, plus the last run's drops (one screen)."""
    if not os.path.isdir(data_dir):
        raise PreprocessError("data directory %s does not exist; pass --data DIR" % data_dir)
    hp = hp.replace(crop_style=crops.recorded_style(data_dir) or hp.crop_style)  # report what is there
    lines = ["%-6s %6s %8s %9s %15s %15s" % ("split", "clips", "hours", "frames", "usable windows", "frames missing")]
    for split, facts in dataset.summarise(data_dir, hp).items():
        if "error" in facts:
            lines.append("%-6s %s" % (split, facts["error"]))
            continue
        lines.append("%-6s %6d %8.3f %9d %15d %15d" % (split, facts["clips"], facts["hours"], facts["frames"],
                                                     facts["usable_windows"], facts["frames_missing"]))
        if facts.get("skipped"):
            lines.append("       skipped: " + ", ".join("%s=%d" % kv for kv in sorted(facts["skipped"].items())))
    path = os.path.join(data_dir, REPORT)
    if os.path.isfile(path):
        with open(path) as f:
            last = json.load(f)
        lines.append("last preprocessing run: %d clips kept, %d dropped (%s); %d frames without a face interpolated" % (
            len(last.get("kept", {})), len(last.get("dropped", {})),
            ", ".join("%s=%d" % kv for kv in sorted(last.get("dropped_by_reason", {}).items())) or "none",
            last.get("frames_without_face_filled", 0)))
    lines.append(sync_report(data_dir, hp))
    return "\n".join(lines)


def import_grid(grid_dir, data_dir, hp, opts=None, workers=2):
    """Preprocess the GRID corpus in GRID_DIR into DATA_DIR with each kept clip's words; returns the report."""
    clips = grid.grid_clips(grid_dir)
    report = run([(clip_id, path) for clip_id, path, _ in clips], data_dir, hp, opts, workers)
    report["splits"] = grid.attach_words(clips, data_dir)
    return report


SYNC_PLOT = "sync_offsets.png"


def sync_report(data_dir, hp, splits=("train", "val", "test")):
    """Offset histogram of the clips in the splits (text, and DATA/sync_offsets.png).

    Offsets come from the last preprocessing report; clips it does not cover (the embedded
    speakers, older runs) are measured now.
    """
    from common import plotting  # matplotlib: paid only when a sync plot is drawn
    recorded = {}
    path = os.path.join(data_dir, REPORT)
    if os.path.isfile(path):
        with open(path) as f:
            recorded = {cid: s["sync"] for cid, s in json.load(f).get("kept", {}).items() if "sync" in s}
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
    plot = os.path.join(data_dir, SYNC_PLOT)
    plotting.plot_histogram(plot, sync.histogram(offsets), "audio-video offset (frames; > 0: audio lags)",
                            "clips (%d unsure not shown)" % unsure)
    return sync.format_histogram(offsets, unsure) + "\nplot: %s" % plot


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
    parser.add_argument("--detector", default=faces.DEFAULT_DETECTOR, help="one of %s" % ", ".join(sorted(faces.DETECTORS)))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--detect-max-side", type=int, default=640,
                        help="frames are downscaled to this longest side for face detection (faces under ~25 px there are missed)")
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
        print(dataset_report(args.report, hp))
        return
    if args.max_offset is not None and args.max_offset < 0:
        raise PreprocessError("--max-offset %d is negative; pass 0 or more frames" % args.max_offset)
    opts = default_options(hp, detector=args.detector, detect_max_side=args.detect_max_side, fix_sync=args.fix_sync,
                           max_offset=args.max_offset)
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
