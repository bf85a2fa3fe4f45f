"""One video -> one clip folder: face crops (JPEGs), 16 kHz audio.wav, mels.npz and boxes.npy.

The video is resampled to hp.fps by ffmpeg (so variable-frame-rate input becomes constant),
faces are detected in every frame on a downscaled copy, boxes are filled across short gaps and
median-smoothed over time (a jittering crop would teach the model head motion instead of lip
motion), then the frames are decoded again and cropped. Audio is cut to exactly
round(N * sample_rate / fps) samples for N frames so frames and mels stay aligned. The clip is
built in a temp folder and renamed when whole, so a failure never leaves a half clip.
common.prep.preprocess runs this over many videos; common.data.datadir names the files.
"""
import collections

import numpy as np

from common.data import audio
from common.data import crops
from common.data import datadir
from common.data import timing
from common.prep import faces
from common.prep import sync
from common.prep import video
from common.errors import Lip2WavError


class PreprocessError(Lip2WavError, RuntimeError):
    """A fault of the request (nothing to do, bad folder, unknown speaker or option); the message names the fix."""


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
    """Write the face crops of a video into ``out_dir`` (detect, fill and smooth boxes, crop, JPEG).

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
    try:
        with datadir.building_clip(out_dir) as tmp:
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
    wav_path = datadir.audio_path(tmp)
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
        datadir.write_mels(tmp, mel.astype(np.float32))
        stats["mel_frames"] = int(mel.shape[1])
    datadir.write_boxes(tmp, np.concatenate([boxes_out, boxes[:, 4:5]], axis=1).astype(np.float32))
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
