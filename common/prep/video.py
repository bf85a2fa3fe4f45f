"""Video I/O through the ffmpeg binary that ships in imageio-ffmpeg.

A system ffmpeg is never assumed: its version changes decoding, and the original
Lip2Wav's scores were traced to exactly that. Every writer is atomic (temp name,
then os.replace) so an interrupted run never leaves a half file under a final name.
"""
import logging
import os
import re
import subprocess
import tempfile

import numpy as np

from common import atomic
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


class VideoError(Lip2WavError, RuntimeError):
    """A video that cannot be read or written; the message says which and why."""


def find_videos(root, is_item_folder=None):
    """(id, path) of every video file below ``root``, in sorted order; the id is its relative path
    without extension. Hidden files and folders are skipped; a folder for which ``is_item_folder``
    is true is listed itself (id = its relative path) and not searched further."""
    found = []
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        if is_item_folder is not None and is_item_folder(folder):
            subdirs[:] = []
            found.append((os.path.relpath(folder, root).replace(os.sep, "/"), folder))
            continue
        for name in sorted(files):
            if name.lower().endswith(VIDEO_EXTENSIONS) and not name.startswith("."):
                rel = os.path.relpath(os.path.join(folder, name), root)
                found.append((os.path.splitext(rel)[0].replace(os.sep, "/"), os.path.join(folder, name)))
    return found


def ffmpeg_exe():
    """Path of the pinned ffmpeg binary shipped in the imageio-ffmpeg wheel."""
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


def _last_error_line(stderr):
    lines = [l.strip() for l in stderr.decode("utf-8", "replace").splitlines() if l.strip()]
    return lines[-1] if lines else "ffmpeg failed without a message"


def run_ffmpeg(args, timeout=None):
    """Run ffmpeg with ``args``; raise VideoError with its last stderr line on failure."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"] + list(args)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if proc.returncode != 0:
        raise VideoError(_last_error_line(proc.stderr))
    return proc


class VideoInfo(object):
    """What ``probe`` learns from the container header (no ffprobe needed)."""

    def __init__(self, path, duration, fps, width, height, has_video, has_audio):
        self.path = path
        self.duration = duration
        self.fps = fps
        self.width = width
        self.height = height
        self.has_video = has_video
        self.has_audio = has_audio

    def __repr__(self):
        return "VideoInfo(%r, duration=%s, fps=%s, size=%sx%s, audio=%s)" % (
            self.path, self.duration, self.fps, self.width, self.height, self.has_audio)


_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: .*?(\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")


def probe(path):
    """Header facts of ``path`` parsed from ``ffmpeg -i``; VideoError if it is not a video."""
    if not os.path.isfile(path):
        raise VideoError("no such video: %s" % path)
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    text = proc.stderr.decode("utf-8", "replace")
    video = None
    has_audio = False
    for line in text.splitlines():
        if " Video: " in line and video is None and "attached pic" not in line:
            video = line
        if " Audio: " in line:
            has_audio = True
    if video is None:
        why = _last_error_line(proc.stderr)
        if why.startswith(path + ": "):
            why = why[len(path) + 2:]
        raise VideoError("not a readable video (%s): %s" % (why, path))
    size = _VIDEO.search(video)
    fps = _FPS.search(video)
    dur = _DURATION.search(text)
    duration = None
    if dur:
        h, m, s = dur.groups()
        duration = int(h) * 3600 + int(m) * 60 + float(s)
    rate = None
    if fps:
        rate = float(fps.group(1)) * (1000.0 if fps.group(2) else 1.0)
    return VideoInfo(path, duration, rate, int(size.group(1)) if size else None,
                     int(size.group(2)) if size else None, True, has_audio)


def count_frames(path, fps=None):
    """Decoded frame count (after resampling to ``fps`` when given)."""
    args = ["-i", path, "-map", "0:v:0"]
    if fps:
        args += ["-vf", "fps=%s" % fps]
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin"] + args + ["-f", "null", "-"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise VideoError(_last_error_line(proc.stderr))
    found = re.findall(r"frame=\s*(\d+)", proc.stderr.decode("utf-8", "replace"))
    if not found:
        raise VideoError("ffmpeg reported no frames: %s" % path)
    return int(found[-1])


def iter_frames(path, fps=None, max_side=None, batch=64):
    """Yield uint8 RGB frame batches [n, H, W, 3] decoded by an ffmpeg pipe.

    ``fps`` resamples to a constant rate (handles variable-frame-rate input);
    ``max_side`` downscales (keeping the aspect ratio) for cheap face detection.
    Raises VideoError when ffmpeg fails or yields no frame.
    """
    info = probe(path)
    if not info.width or not info.height:
        raise VideoError("video size unknown: %s" % path)
    width, height = info.width, info.height
    filters = []
    if fps:
        filters.append("fps=%s" % fps)
    if max_side and max(width, height) > max_side:
        scale = float(max_side) / max(width, height)
        width = max(2, int(round(width * scale / 2.0)) * 2)
        height = max(2, int(round(height * scale / 2.0)) * 2)
        filters.append("scale=%d:%d" % (width, height))
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-noautorotate",
           "-i", path, "-map", "0:v:0"]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        total = 0
        try:
            while True:
                data = proc.stdout.read(frame_bytes * batch)
                n = len(data) // frame_bytes
                if n:
                    total += n
                    yield np.frombuffer(data[:n * frame_bytes], np.uint8).reshape(n, height, width, 3)
                if len(data) < frame_bytes * batch:
                    break
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            err.seek(0)
            raise VideoError("decoding failed (%s): %s" % (_last_error_line(err.read()), path))
    if total == 0:
        raise VideoError("no frames decoded: %s" % path)


def extract_audio(path, out_wav, sample_rate=16000):
    """Write ``path``'s first audio track as mono 16-bit PCM WAV at ``sample_rate``, atomically.

    ``aresample=async=1:first_pts=0`` pads a late-starting track so audio time 0 is video time 0.
    """
    with atomic.replacing(out_wav, ".wav") as tmp:
        run_ffmpeg(["-i", path, "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate),
                    "-af", "aresample=async=1:first_pts=0", "-c:a", "pcm_s16le", "-f", "wav", tmp])


def write_video(frames, wav, fps, path, sample_rate=16000, crf=18):
    """Mux uint8 RGB ``frames`` [N, H, W, 3] and float ``wav`` into an H.264/AAC mp4, atomically.

    ``wav`` may be None for a video without an audio track.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VideoError("frames must be uint8 [N, H, W, 3], got %s %s" % (frames.dtype, frames.shape))
    n, height, width = frames.shape[:3]
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        os.makedirs(parent)
    tmp_wav = None
    try:
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "%dx%d" % (width, height),
               "-r", str(fps), "-i", "-"]
        if wav is not None:
            tmp_wav = atomic.temp_path(path, ".wav")
            _write_pcm_wav(tmp_wav, wav, sample_rate)
            cmd += ["-i", tmp_wav, "-c:a", "aac", "-b:a", "128k"]
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast",
                "-crf", str(crf), "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4"]
        with atomic.replacing(path, ".mp4") as tmp, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd + [tmp], stdin=subprocess.PIPE, stderr=err)
            try:
                proc.stdin.write(np.ascontiguousarray(frames).tobytes())
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            code = proc.wait()
            if code != 0:
                err.seek(0)
                raise VideoError("writing %s failed: %s" % (path, _last_error_line(err.read())))
    finally:
        if tmp_wav:
            atomic.remove_quietly(tmp_wav)


def _write_pcm_wav(path, wav, sample_rate):
    import soundfile
    soundfile.write(path, np.clip(np.asarray(wav, np.float32), -1.0, 1.0), sample_rate,
                    subtype="PCM_16", format="WAV")


def cut(path, out_dir, name, seconds=30.0, min_seconds=1.0, duration=None):
    """Cut ``path`` into ``seconds``-long re-encoded pieces ``out_dir/<name % N>`` (an .mp4 name).

    Re-encoding with the seek before ``-i`` is frame-accurate (a stream copy cuts on
    keyframes and drifts audio against video, as the SLTS paper measured). Existing
    pieces are kept (resumable); a last piece shorter than ``min_seconds`` is not written.
    Returns the list of piece paths.
    """
    if duration is None:
        duration = probe(path).duration
    if not duration:
        raise VideoError("duration unknown, cannot cut: %s" % path)
    if not os.path.isdir(out_dir):
        os.makedirs(out_dir)
    pieces = []
    index = 0
    start = 0.0
    while start < duration - 1e-6:
        length = min(seconds, duration - start)
        if length < min_seconds:
            break
        out = os.path.join(out_dir, name % index)
        if not os.path.exists(out):
            with atomic.replacing(out, ".mp4") as tmp:
                run_ffmpeg(["-ss", "%.3f" % start, "-i", path, "-t", "%.3f" % length,
                            "-map", "0:v:0", "-map", "0:a:0?", "-c:v", "libx264",
                            "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                            "-c:a", "aac", "-b:a", "128k",
                            "-f", "mp4", tmp])
        pieces.append(out)
        index += 1
        start = index * seconds
    return pieces
