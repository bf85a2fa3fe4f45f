"""Download a speaker's listed videos with yt-dlp and cut them into 30 s pieces.

Into ``<data>/<speaker>``: ``videos/<id>.mp4`` and ``intervals/<id>/cut-N.mp4`` (common.data.datadir's layout).
A video reaches its final name only once complete (yt-dlp writes into a per-video temp
folder, kept between runs so partial downloads resume), so a re-run skips finished work.
A failing video is recorded and skipped; the run ends with a summary of what failed and why.
Cuts are re-encoded so they start on the exact frame (stream copy cuts on keyframes and
drifts audio against video). The URL template is configurable so tests can serve clips
from 127.0.0.1 or file:// URLs.
"""
import argparse
import collections
import logging
import os
import shutil
import sys

from common import cli
from common import atomic
from common import progress
from common.data import datadir
from common.prep import video
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

SPEAKERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "speakers")
DEFAULT_URL_TEMPLATE = "https://www.youtube.com/watch?v={id}"
URL_TEMPLATE_ENV = "LIP2WAV_URL_TEMPLATE"
CUT_SECONDS = 30.0
# What yt-dlp prints when YouTube's JavaScript challenges went unsolved (no runtime, or no solver scripts).
JS_RUNTIME_SIGNS = ("No supported JavaScript runtime", "challenge solving failed", "Signature solving failed",
                    "JS runtime", "JavaScript runtime")
# What yt-dlp prints when an extractor no longer matches the site (its bug-report text asks for `yt-dlp -U`).
OUTDATED_SIGNS = ("yt-dlp -U", "on the latest version", "Unable to extract", "nsig extraction failed")


class DownloadError(Lip2WavError, RuntimeError):
    """A run-level fault (unknown speaker, unusable folder, every video failed); names the fix."""


def speakers():
    """Names of the speakers whose video id lists ship in common/config/speakers/."""
    return sorted(d for d in os.listdir(SPEAKERS_DIR) if os.path.isdir(os.path.join(SPEAKERS_DIR, d)))


def speaker_ids(speaker, split=None):
    """Video ids listed for ``speaker`` (one split, or all splits in order, without duplicates)."""
    if speaker not in speakers():
        raise DownloadError("unknown speaker %r; choose one of %s" % (speaker, ", ".join(speakers())))
    splits = [split] if split else list(datadir.SPLITS)
    ids = []
    for name in splits:
        if name not in datadir.SPLITS:
            raise DownloadError("unknown split %r; choose one of %s" % (name, ", ".join(datadir.SPLITS)))
        path = os.path.join(SPEAKERS_DIR, speaker, name + ".txt")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            for line in f:
                vid = line.strip()
                if vid and not vid.startswith("#") and vid not in ids:
                    ids.append(vid)
    return ids


def _ydl_options(tmp_dir, vid):
    return {
        "outtmpl": os.path.join(tmp_dir, vid + ".%(ext)s"),
        "format": "bestvideo[ext=mp4][height<=720]+bestaudio[ext=m4a]/best[ext=mp4]/best",
        "merge_output_format": "mp4",
        "ffmpeg_location": video.ffmpeg_exe(),
        "enable_file_urls": True,
        "continuedl": True,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "retries": 3,
        "socket_timeout": 30,
        "logger": _YdlLogger(),
        "js_runtimes": _js_runtimes(),
    }


def _js_runtimes():
    """The JavaScript runtime yt-dlp solves YouTube's challenges with: the `deno` package's binary when
    installed (it is not necessarily on PATH), else yt-dlp's default (deno from PATH)."""
    try:
        import deno
    except ImportError:
        return {"deno": {}}
    return {"deno": {"path": deno.find_deno_bin()}}


def explain_failure(message, warnings=()):
    """One line for a failed extraction that says when the downloader, not the video, is the problem."""
    import yt_dlp
    said = _one_line(message)
    text = " ".join([message] + list(warnings))
    if any(sign in text for sign in JS_RUNTIME_SIGNS):
        return ("the JavaScript runtime yt-dlp needs for YouTube is missing or failed: pip install -r requirements.txt "
                "(yt-dlp-ejs, deno); yt-dlp said: %s" % said)
    if any(sign in text for sign in OUTDATED_SIGNS):
        return ("yt-dlp %s could not extract the video and is likely out of date: pip install -U yt-dlp yt-dlp-ejs, "
                "then rerun (it resumes); yt-dlp said: %s" % (yt_dlp.version.__version__, said))
    return said


class _YdlLogger(object):
    """Route yt-dlp's messages to logging so they do not clutter the summary; keep the warnings,
    which name a missing JavaScript runtime before the error does."""

    def __init__(self):
        self.warnings = []

    def debug(self, msg):
        LOG.debug("yt-dlp: %s", msg)

    def info(self, msg):
        LOG.debug("yt-dlp: %s", msg)

    def warning(self, msg):
        self.warnings.append(msg)
        LOG.info("yt-dlp: %s", msg)

    def error(self, msg):
        LOG.debug("yt-dlp: %s", msg)


def download_video(vid, data_dir, url_template=DEFAULT_URL_TEMPLATE):
    """Fetch one video to ``data_dir/videos/<vid>.mp4``; returns "exists" or "downloaded".

    Raises DownloadError (one line: why) when yt-dlp fails or the result is not a readable video.
    """
    import yt_dlp
    final = datadir.video_path(data_dir, vid)
    if os.path.isfile(final):
        return "exists"
    tmp_dir = datadir.downloading_dir(data_dir, vid)
    if not os.path.isdir(tmp_dir):
        os.makedirs(tmp_dir)
    url = url_template.format(id=vid)
    options = _ydl_options(tmp_dir, vid)
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([url])
    except yt_dlp.utils.DownloadError as exc:
        if not os.listdir(tmp_dir):
            os.rmdir(tmp_dir)
        raise DownloadError(explain_failure(str(exc), options["logger"].warnings))
    done = [f for f in os.listdir(tmp_dir) if f.startswith(vid + ".") and not f.endswith((".part", ".ytdl"))
            and ".f" not in f[len(vid):]]
    if not done:
        raise DownloadError("yt-dlp finished without writing a file for %s" % url)
    got = os.path.join(tmp_dir, done[0])
    try:
        info = video.probe(got)
    except video.VideoError as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise DownloadError("downloaded file is not a video: %s" % str(exc).split(": /")[0])
    if not info.has_audio:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise DownloadError("downloaded video has no audio track")
    if not got.endswith(".mp4"):
        remuxed = os.path.join(tmp_dir, vid + ".remux.mp4")
        video.run_ffmpeg(["-i", got, "-map", "0:v:0", "-map", "0:a:0", "-c:v", "libx264", "-preset",
                          "veryfast", "-crf", "18", "-c:a", "aac", "-f", "mp4", remuxed])
        got = remuxed
    os.replace(got, final)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return "downloaded"


def cut_video(vid, data_dir, seconds=CUT_SECONDS):
    """Cut ``videos/<vid>.mp4`` into ``intervals/<vid>/cut-N.mp4``; a ``.done`` marker skips it next time."""
    out_dir = datadir.pieces_dir(data_dir, vid)
    marker = datadir.cut_marker(data_dir, vid)
    if os.path.isfile(marker):
        return sorted(f for f in os.listdir(out_dir) if f.endswith(".mp4"))
    try:
        pieces = video.cut(datadir.video_path(data_dir, vid), out_dir, datadir.PIECE, seconds=seconds)
    except video.VideoError as exc:
        raise DownloadError("cutting failed: %s" % exc)
    with open(marker, "w") as f:
        f.write("%d\n" % len(pieces))
    return pieces


def run(speaker, data_root, split=None, url_template=None, cut_seconds=CUT_SECONDS, ids=None):
    """Download and cut every listed video of ``speaker`` under ``data_root/<speaker>``.

    Returns a summary dict: downloaded, existing, cut, failed (id -> reason). Raises
    DownloadError when every video failed.
    """
    url_template = url_template or os.environ.get(URL_TEMPLATE_ENV) or DEFAULT_URL_TEMPLATE
    if "{id}" not in url_template:
        raise DownloadError("url template %r has no {id} placeholder; e.g. %s" % (url_template, DEFAULT_URL_TEMPLATE))
    ids = list(ids) if ids is not None else speaker_ids(speaker, split)
    data_dir = os.path.join(data_root, speaker)
    videos_dir = datadir.videos_dir(data_dir)
    try:
        if not os.path.isdir(videos_dir):
            os.makedirs(videos_dir)
    except OSError as exc:
        raise DownloadError("cannot create %s (%s); pass a writable --data DIR" % (videos_dir, exc.strerror))
    summary = collections.OrderedDict([("speaker", speaker), ("videos", len(ids)), ("downloaded", 0),
                                       ("existing", 0), ("cut", 0), ("pieces", 0),
                                       ("failed", collections.OrderedDict())])
    for vid in progress.bar(ids, desc="download %s" % speaker, unit="video"):
        try:
            state = download_video(vid, data_dir, url_template)
            summary["downloaded" if state == "downloaded" else "existing"] += 1
            pieces = cut_video(vid, data_dir, cut_seconds)
            summary["cut"] += 1
            summary["pieces"] += len(pieces)
        except (DownloadError, video.VideoError, OSError) as exc:
            LOG.warning("video %s failed: %s", vid, exc)
            summary["failed"][vid] = _one_line(str(exc))
    atomic.write_json(datadir.download_report_path(data_dir), summary, sort_keys=False)
    if ids and len(summary["failed"]) == len(ids):
        raise DownloadError("all %d videos failed (first: %s: %s); see %s" % (
            len(ids), ids[0], summary["failed"][ids[0]], datadir.download_report_path(data_dir)))
    return summary


def format_summary(summary):
    lines = ["%s: %d videos listed, %d downloaded, %d already present, %d cut into %d pieces, %d failed" % (
        summary["speaker"], summary["videos"], summary["downloaded"], summary["existing"], summary["cut"],
        summary["pieces"], len(summary["failed"]))]
    for vid, why in list(summary["failed"].items())[:15]:
        lines.append("  failed %s: %s" % (vid, why))
    if len(summary["failed"]) > 15:
        lines.append("  ... and %d more (see %s)" % (len(summary["failed"]) - 15, datadir.DOWNLOAD_REPORT))
    return "\n".join(lines)


def _one_line(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    line = lines[0] if lines else "unknown error"
    return line[len("ERROR: "):] if line.startswith("ERROR: ") else line


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m common.prep.download", description=__doc__.split("\n")[0])
    parser.add_argument("--speaker", required=True, help="one of: %s" % ", ".join(speakers()))
    parser.add_argument("--split", choices=datadir.SPLITS, help="only this split's videos (default: all)")
    parser.add_argument("--data", default="data", help="data root; the speaker's files go in DATA/<speaker>")
    parser.add_argument("--url-template", help="URL with {id} (default $%s or %s)" % (URL_TEMPLATE_ENV,
                                                                                      DEFAULT_URL_TEMPLATE))
    parser.add_argument("--cut-seconds", type=float, default=CUT_SECONDS)
    args = parser.parse_args(argv)

    def body():
        print(format_summary(run(args.speaker, args.data, args.split, args.url_template, args.cut_seconds)))
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
