"""common.prep.download and common.prep.video: yt-dlp against a local HTTP server / file URLs, frame-accurate cuts."""
import functools
import http.server
import os
import threading

import numpy as np
import pytest
import soundfile

from common.prep import download
from common.prep import video

FPS = 25
SR = 16000


def pattern_frames(n, height=48, width=80):
    """Frames that show their own index as 8 black/white bars (survives H.264)."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    for i in range(n):
        for bit in range(8):
            if (i >> bit) & 1:
                frames[i, :, bit * 10:(bit + 1) * 10] = 255
    return frames


def frame_index(frame):
    return sum(1 << bit for bit in range(8) if frame[frame.shape[0] // 2, bit * 10 + 5, 0] > 127)


def tone(seconds):
    t = np.arange(int(round(seconds * SR))) / float(SR)
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A folder of test clips served on 127.0.0.1: good (2.6 s), noaudio, corrupt."""
    root = tmp_path_factory.mktemp("served")
    video.write_video(pattern_frames(65), tone(65 / float(FPS)), FPS, str(root / "good.mp4"))
    video.write_video(pattern_frames(30), None, FPS, str(root / "noaudio.mp4"))
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, "http://127.0.0.1:%d/{id}.mp4" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_speaker_lists_ship_with_the_repo():
    assert set(download.speakers()) == {"chem", "chess", "dl", "eh", "hs"}
    assert len(download.speaker_ids("chess", "train")) > 100
    assert len(download.speaker_ids("eh", "val")) == 1  # the list file has no final newline
    with pytest.raises(download.DownloadError, match="unknown speaker"):
        download.speaker_ids("nobody")


def test_download_and_frame_accurate_cuts(served, tmp_path):
    _, url = served
    summary = download.run("chess", str(tmp_path), url_template=url, ids=["good"], cut_seconds=1.0)
    assert summary["downloaded"] == 1 and not summary["failed"]
    speaker = tmp_path / "chess"
    assert (speaker / "videos" / "good.mp4").is_file()
    assert not [p for p in os.listdir(str(speaker / "videos")) if p.startswith(".")]
    cuts = sorted(os.listdir(str(speaker / "intervals" / "good")))
    assert cuts == [".done", "cut-0.mp4", "cut-1.mp4"]  # the 0.6 s tail is shorter than a useful piece
    for n in (0, 1):
        path = str(speaker / "intervals" / "good" / ("cut-%d.mp4" % n))
        frames = np.concatenate(list(video.iter_frames(path)))
        assert [frame_index(f) for f in frames] == list(range(n * FPS, (n + 1) * FPS))
        wav_path = str(tmp_path / "cut.wav")
        video.extract_audio(path, wav_path, SR)
        samples = len(soundfile.read(wav_path)[0])
        assert abs(samples / float(SR) - len(frames) / float(FPS)) < 2.0 / FPS


def test_rerun_skips_finished_work(served, tmp_path):
    _, url = served
    download.run("chess", str(tmp_path), url_template=url, ids=["good"], cut_seconds=1.0)
    final = tmp_path / "chess" / "videos" / "good.mp4"
    stamp = final.stat().st_mtime_ns
    summary = download.run("chess", str(tmp_path), url_template=url, ids=["good"], cut_seconds=1.0)
    assert summary["existing"] == 1 and summary["downloaded"] == 0
    assert final.stat().st_mtime_ns == stamp


def test_failures_are_reported_and_the_run_continues(served, tmp_path):
    _, url = served
    summary = download.run("chess", str(tmp_path), url_template=url,
                           ids=["missing", "corrupt", "noaudio", "good"], cut_seconds=1.0)
    assert summary["downloaded"] == 1
    assert sorted(summary["failed"]) == ["corrupt", "missing", "noaudio"]
    assert "404" in summary["failed"]["missing"]
    assert "no audio" in summary["failed"]["noaudio"]
    assert sorted(os.listdir(str(tmp_path / "chess" / "videos"))) == ["good.mp4"]
    assert "3 failed" in download.format_summary(summary)


def test_file_urls_work(served, tmp_path):
    root, _ = served
    summary = download.run("chess", str(tmp_path), url_template="file://" + str(root) + "/{id}.mp4",
                           ids=["good"], cut_seconds=1.0)
    assert summary["downloaded"] == 1


def test_run_level_faults_exit_2_with_one_line(served, tmp_path, capsys, monkeypatch):
    assert download.main(["--speaker", "nobody", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown speaker")
    _, url = served
    monkeypatch.setattr(download, "speaker_ids", lambda speaker, split=None: ["missing"])
    assert download.main(["--speaker", "eh", "--data", str(tmp_path), "--url-template", url]) == 2
    assert "all 1 videos failed" in capsys.readouterr().err
    assert download.main(["--speaker", "eh", "--data", str(tmp_path), "--url-template", "http://x/"]) == 2
    assert "{id}" in capsys.readouterr().err


def test_write_video_is_atomic_and_probe_reads_it(tmp_path):
    path = str(tmp_path / "v.mp4")
    with pytest.raises(video.VideoError):
        video.write_video(np.zeros((3, 8, 8), np.uint8), None, FPS, path)
    assert not os.listdir(str(tmp_path))
    video.write_video(pattern_frames(10), tone(0.4), FPS, path)
    info = video.probe(path)
    assert (info.width, info.height, info.fps, info.has_audio) == (80, 48, FPS, True)
    assert video.count_frames(path) == 10
    assert os.listdir(str(tmp_path)) == ["v.mp4"]
    with pytest.raises(video.VideoError, match="no such video"):
        video.probe(str(tmp_path / "absent.mp4"))


class _FailingYoutubeDL(object):
    """Stands in for yt_dlp.YoutubeDL: warns through the logger it was given, then fails like an extractor."""

    def __init__(self, warning, error):
        self.warning, self.error = warning, error

    def __call__(self, options):
        self.options = options
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def download(self, urls):
        import yt_dlp
        if self.warning:
            self.options["logger"].warning(self.warning)
        raise yt_dlp.utils.DownloadError(self.error)


# Messages as yt-dlp 2026.10.26 words them (extractor/youtube/_video.py, utils/_utils.py bug_reports_message).
NO_RUNTIME = ("[youtube] abc: No supported JavaScript runtime could be found. Only deno is enabled by default; "
              "YouTube extraction without a JS runtime has been deprecated, and some formats may be missing.")
NO_FORMATS = ("ERROR: [youtube] abc: Requested format is not available. Use --list-formats for a list of available "
              "formats")
OUTDATED = ("ERROR: [youtube] abc: Unable to extract yt initial data; please report this issue on "
            "https://github.com/yt-dlp/yt-dlp/issues?q= , filling out the appropriate issue template. "
            "Confirm you are on the latest version using  yt-dlp -U")


@pytest.mark.parametrize("warning, error, expected", [
    (NO_RUNTIME, NO_FORMATS, "the JavaScript runtime yt-dlp needs for YouTube is missing or failed: pip install"),
    (None, OUTDATED, "yt-dlp %s could not extract the video and is likely out of date: pip install -U yt-dlp"),
    (None, "ERROR: [youtube] abc: Video unavailable. This video is private", "[youtube] abc: Video unavailable."),
])
def test_extraction_failures_name_the_downloader_when_it_is_the_cause(tmp_path, monkeypatch, warning, error,
                                                                      expected):
    import yt_dlp
    monkeypatch.setattr(yt_dlp, "YoutubeDL", _FailingYoutubeDL(warning, error))
    with pytest.raises(download.DownloadError) as caught:
        download.download_video("abc", str(tmp_path))
    message = str(caught.value)
    expected = expected % yt_dlp.version.__version__ if "%s" in expected else expected
    assert message.startswith(expected) and "\n" not in message, message


def test_the_javascript_runtime_yt_dlp_needs_is_installed(tmp_path):
    runtime = download._ydl_options(str(tmp_path), "abc")["js_runtimes"]["deno"]["path"]
    assert os.access(runtime, os.X_OK), runtime
