"""Silent face video -> speech: face crops, sliding windows, predicted mels, Griffin-Lim.

Inputs are a video file, a preprocessed clip folder (``<i>.jpg`` crops, optionally with
``audio.wav``/``mels.npz`` as ground truth) or a folder of videos (one wav each). Videos go
through common.prep.build_clip into a temporary clip folder and are read back by
common.data.dataset.windows_for_clip, so synthesis sees exactly the crops training saw (same
detector, smoothing, margin and JPEG round trip). Windows of T frames start every
T - overlap frames; their mel windows are joined by common.data.windows.join (hp.stitch).
Every output is written under a temporary name and renamed when whole.

    python -m export.apps.synthesize --checkpoint RUN_OR_CKPT --video clip.mp4 --out speech.wav
"""
import argparse
import logging
import os
import shutil
import sys
import tempfile

import numpy as np

from common import cli
from common import atomic
from common.data import audio
from common.data import crops
from common.data import datadir
from common.data import dataset
from common.data import timing
from common.data import windows
from common.prep import build_clip
from common.prep import video
from common import plotting
from common import progress as progress_lib
from export import graph
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

class SynthesisError(Lip2WavError, RuntimeError):
    """An input or output that synthesis cannot use; the one-line message names the fix."""


class Result(object):
    """One synthesised input: wav float32 [num_samples], mel [frames, num_mels] (predicted), and the
    ground truth mel [frames, num_mels] / wav when the input carried audio (else None)."""

    def __init__(self, name, wav, mel, target_mel=None, target_wav=None):
        self.name = name
        self.wav = wav
        self.mel = mel
        self.target_mel = target_mel
        self.target_wav = target_wav


def fit_length(wav, length):
    """Trim or zero-pad ``wav`` to ``length`` samples."""
    wav = np.asarray(wav, dtype=np.float32)[:length]
    if len(wav) < length:
        wav = np.concatenate([wav, np.zeros(length - len(wav), np.float32)])
    return wav


def vocode(mel, hp, length):
    """Mel [frames, num_mels] -> Griffin-Lim wav of exactly ``length`` samples."""
    return fit_length(audio.inv_mel_spectrogram(np.asarray(mel).T, hp), length)


def clip_from_folder(path, hp, clip_id=None):
    """A preprocessed clip folder (``<i>.jpg`` crops) as a dataset.Clip; audio and mels are optional here."""
    numbers = datadir.crop_numbers(os.listdir(path))
    if not numbers:
        raise SynthesisError("%s holds no face crops (<frame>.jpg); pass a video or a preprocessed clip folder"
                             % path)
    count = max(numbers) + 1
    missing = tuple(sorted(set(range(count)) - set(numbers)))
    return dataset.Clip(clip_id or os.path.basename(os.path.normpath(path)), path, count,
                        timing.mel_frames(count, hp), missing)


def ground_truth(clip, hp):
    """(mel [frames, num_mels], wav) of a clip folder that has audio.wav, else (None, None)."""
    wav_path = datadir.audio_path(clip.path)
    if not os.path.isfile(wav_path):
        return None, None
    wav = audio.load_wav(wav_path, hp.sample_rate, rescaling_max=None)
    wav = fit_length(wav, timing.num_samples(clip.num_frames, hp))
    return audio.melspectrogram(wav, hp).T, wav


def preprocess_video(path, clip_dir, hp):
    """Crop the faces of one video into ``clip_dir`` with the training preprocessing; returns its Clip.

    A silent video gives only the crops; a video with audio also gives audio.wav and
    mels.npz, used as the ground truth.
    """
    opts = build_clip.default_options(hp, min_frames=1)
    try:
        build_clip.preprocess_clip(path, clip_dir, hp, opts, require_audio=False)
    except build_clip.ClipFault as exc:
        raise SynthesisError("%s: %s; %s" % (path, exc, _CLIP_FAULT_FIX.get(exc.reason, "check the video")))
    return clip_from_folder(clip_dir, hp, os.path.splitext(os.path.basename(path))[0])


_CLIP_FAULT_FIX = {
    "no_face": "pass a video where one frontal face is visible in most frames",
    "unreadable": "pass a video ffmpeg can decode that has at least one frame",
    "too_short": "pass a longer video",
    "write_failed": "free disk space or set TMPDIR to a writable folder",
}


class Synthesizer(object):
    """Checkpoint -> speech for clips and videos; the model is loaded on first use and reused.

    ``predictor`` (anything with ``hp`` and ``predict(windows) -> mel windows``, like
    graph.CheckpointPredictor) replaces the checkpoint's model, so the windowing,
    stitching and vocoding can be checked against a predictor with known answers; the
    caller keeps ownership of it. ``checkpoint`` is then only a label.
    """

    def __init__(self, checkpoint, target="gpu", batch_size=graph.DEFAULT_BATCH_SIZE, predictor=None):
        self.hp = predictor.hp if predictor is not None else graph.resolve_checkpoint(checkpoint)[0]
        self.checkpoint = checkpoint
        self.target = target
        self.batch_size = batch_size
        self._given = predictor
        self._loaded = None

    @property
    def predictor(self):
        if self._given is not None:
            return self._given
        if self._loaded is None:
            self._loaded = graph.CheckpointPredictor(self.checkpoint, self.target, self.batch_size)
        return self._loaded

    def close(self):
        if self._loaded is not None:
            self._loaded.close()
            self._loaded = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def predict_mel(self, clip, progress=True):
        """Clip -> stitched predicted mel [num_mels columns; the clip's duration, or less with stitch=concat]."""
        hp = self.hp
        faces, mel_starts = dataset.windows_for_clip(clip, hp)
        mels = []
        with progress_lib.bar(total=len(faces), desc="synthesize %s" % clip.id, unit="window", leave=False,
                              disable=not progress) as bar:
            for start in range(0, len(faces), self.batch_size):
                mels.append(self.predictor.predict(faces[start:start + self.batch_size]))
                bar.update(len(mels[-1]))
        return windows.join(np.concatenate(mels), mel_starts, timing.mel_frames(clip.num_frames, hp), hp)

    def synthesize_clip(self, clip, progress=True):
        """Clip -> Result with the wav trimmed to the clip's duration or the mel's, the shorter (and its ground
        truth if any)."""
        mel = self.predict_mel(clip, progress)
        target_mel, target_wav = ground_truth(clip, self.hp)
        wav = vocode(mel, self.hp, min(timing.num_samples(clip.num_frames, self.hp), len(mel) * self.hp.hop_size))
        return Result(clip.id, wav, mel, target_mel, target_wav)

    def synthesize_path(self, path, work_dir, progress=True):
        """A video file or a preprocessed clip folder -> Result."""
        if os.path.isdir(path):
            return self.synthesize_clip(clip_from_folder(path, self.hp), progress)
        clip_dir = datadir.clip_folder(tempfile.mkdtemp(dir=work_dir), os.path.splitext(os.path.basename(path))[0])
        return self.synthesize_clip(preprocess_video(path, clip_dir, self.hp), progress)


def find_inputs(path):
    """[(name, path)] to synthesise: the file or clip folder itself, else every video and clip folder below."""
    if not os.path.exists(path):
        raise SynthesisError("input %s does not exist; pass a video, a preprocessed clip folder or a folder "
                             "of videos" % path)
    if os.path.isfile(path) or _is_clip_folder(path):
        return [(os.path.splitext(os.path.basename(os.path.normpath(path)))[0], path)]
    found = video.find_videos(path, _is_clip_folder)
    if not found:
        raise SynthesisError("%s holds no video (%s) and no clip folder of <frame>.jpg crops"
                             % (path, ", ".join(video.VIDEO_EXTENSIONS)))
    return found


def _is_clip_folder(path):
    return os.path.isdir(path) and bool(datadir.crop_numbers(os.listdir(path)))


def check_writable(path):
    """Create the output's folder and prove it can hold a new file, before any expensive work."""
    if os.path.isdir(path):
        raise SynthesisError("output %s is a folder; pass a file name like speech.wav" % path)
    try:
        atomic.check_writable_dir(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise SynthesisError("cannot write %s (%s); pass a writable --out path" % (path, exc.strerror or exc))


def write_outputs(result, out_wav, hp, plot=False, mux_source=None):
    """Write result.wav to ``out_wav`` at its mel's level (and .png mel plot, .mp4 with the speech muxed in);
    all atomic."""
    stem = os.path.splitext(out_wav)[0]
    written = [out_wav]
    try:
        audio.save_speech(result.wav, result.mel.T, out_wav, hp)
        if plot:
            plotting.plot_mels(stem + ".png", result.mel, result.target_mel, title=result.name)
            written.append(stem + ".png")
        if mux_source is not None:
            mux(mux_source, out_wav, stem + ".mp4", hp)
            written.append(stem + ".mp4")
    except OSError as exc:
        raise SynthesisError("cannot write %s (%s); pass a writable --out path" % (out_wav, exc.strerror or exc))
    return written


def mux(source, wav_path, out_path, hp):
    """The source video (or a clip folder's crops) with ``wav_path`` as its only audio track, atomically."""
    if os.path.isdir(source):
        clip = clip_from_folder(source, hp)
        frames = np.stack([_frame_or_black(clip, i, hp) for i in range(clip.num_frames)])
        video.write_video(frames, audio.load_wav(wav_path, hp.sample_rate, rescaling_max=None), hp.fps, out_path,
                          hp.sample_rate)
        return
    try:
        with atomic.replacing(out_path, ".mp4") as tmp:
            video.run_ffmpeg(["-i", source, "-i", wav_path, "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                              "-c:a", "aac", "-b:a", "128k", "-shortest", "-f", "mp4", tmp])
    except video.VideoError as exc:
        raise SynthesisError("muxing %s failed (%s); drop --mux or check the video" % (source, exc))


def _frame_or_black(clip, number, hp):
    image = crops.read(clip.path, number, hp.img_size, hp.crop_style)
    return crops.to_rgb(image, hp.crop_style) if image is not None else np.zeros((hp.img_size, hp.img_size, 3),
                                                                                  np.uint8)


def synthesize(checkpoint, input_path, out, target="gpu", batch_size=graph.DEFAULT_BATCH_SIZE, plot=False, mux_video=False):
    """Synthesise a video, a clip folder or a folder of them; returns the list of files written.

    One input writes ``out`` (a .wav path); a folder writes ``out/<name>.wav`` per input. All
    inputs are attempted; SynthesisError names the first failure if any failed.
    """
    inputs = find_inputs(input_path)
    single = len(inputs) == 1 and (os.path.isfile(input_path) or _is_clip_folder(input_path))
    targets = [(name, path, out if single else os.path.join(out, name + ".wav")) for name, path in inputs]
    for _, _, out_wav in targets:
        check_writable(out_wav)
    written, failed = [], []
    work_dir = tempfile.mkdtemp(prefix="lip2wav-synthesize-")
    try:
        with Synthesizer(checkpoint, target, batch_size) as synth:
            for name, path, out_wav in progress_lib.bar(targets, desc="synthesize", unit="input", disable=single):
                try:
                    result = synth.synthesize_path(path, work_dir)
                    written += write_outputs(result, out_wav, synth.hp, plot, path if mux_video else None)
                except (SynthesisError, dataset.DatasetError, audio.AudioError) as exc:
                    if single:
                        raise
                    LOG.warning("%s: %s", name, exc)
                    failed.append((name, str(exc)))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    if failed:
        raise SynthesisError("%d of %d inputs failed (first: %s: %s); the others were written"
                             % (len(failed), len(targets), failed[0][0], failed[0][1]))
    return written


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m export.apps.synthesize", description=__doc__.split("\n")[0])
    graph.add_checkpoint_arguments(parser)
    parser.add_argument("--video", required=True,
                        help="A video, a preprocessed clip folder (<frame>.jpg crops) or a folder of videos.")
    parser.add_argument("--out", required=True, help="Output .wav for one input; output folder for a folder.")
    parser.add_argument("--plot", action="store_true", help="Also write <out>.png: predicted (and true) mel.")
    parser.add_argument("--mux", action="store_true", help="Also write <out>.mp4: the input video with the speech.")
    return parser


def main(argv=None):
    """Entrypoint: one `error: ...` line and exit 2 on any input, checkpoint or output problem."""
    args = build_parser().parse_args(argv)

    def body():
        for path in synthesize(args.checkpoint, args.video, args.out, args.target, args.batch_size, args.plot,
                               args.mux):
            print(path)
    return cli.run(body, level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
