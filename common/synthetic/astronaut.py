"""Embedded default speaker: a talking astronaut generated offline from a seed.

One latent articulation track (vowel targets with closures inside words and
silences between them, smoothed like real articulators) drives both the mouth
drawn over skimage's astronaut photo and a formant synthesiser, so the video
truly predicts the audio. N video frames at hp.fps pair with exactly
round(N * sample_rate / fps) samples; frame i shows the articulation at time
i / fps, the centre of mel frame common.data.timing.mel_start(i).
"""
import functools
import logging
import os
import shutil

import cv2
import numpy as np
from scipy import signal
from scipy.ndimage import gaussian_filter1d

from common import progress
from common.data import audio
from common.data import crops
from common.data import datadir
from common.data import timing
from common.prep import faces
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

CONTROL_RATE = 400  # Hz at which articulation trajectories are defined.
# vowel -> (F1, F2, F3 in Hz, mouth opening 0..1, lip spread 0 = rounded .. 1 = spread)
VOWELS = {
    "a": (850.0, 1220.0, 2810.0, 1.0, 0.6),
    "e": (600.0, 2020.0, 2730.0, 0.6, 0.85),
    "i": (330.0, 2520.0, 3300.0, 0.3, 1.0),
    "o": (620.0, 920.0, 2650.0, 0.7, 0.25),
    "u": (350.0, 950.0, 2460.0, 0.35, 0.0),
}
VOWEL_NAMES = sorted(VOWELS)
BANDWIDTHS = (90.0, 120.0, 180.0)
BASE_F0 = 190.0
BLOCK = 64  # samples per formant-coefficient update (4 ms at 16 kHz)
FRAME_SIZE = 320  # default rendered frame: Haar finds the face in every frame (at 160 it misses ~39%)
LIP_RGB = (176, 84, 90)
MOUTH_RGB = (58, 18, 24)


class SyntheticError(Lip2WavError, ValueError):
    """A request the generator cannot satisfy; the message names the fix."""


@functools.lru_cache(maxsize=None)
def _astronaut():
    """skimage's 512x512 RGB astronaut photo, read once and shared read-only."""
    try:
        from skimage import data
    except ImportError:
        raise SyntheticError("scikit-image is not installed (the astronaut photo ships in it): "
                             "pip install scikit-image, as requirements.txt pins it") from None
    image = data.astronaut()
    image.flags.writeable = False
    return image


@functools.lru_cache(maxsize=None)
def face_geometry():
    """Face box and mouth of the astronaut photo in its own 512x512 pixels.

    Found once with OpenCV's Haar cascades (frontal face, then smile in the lower
    half of the face) and cached. Returns dict face=(x, y, w, h), mouth=(cx, cy, width).
    """
    gray = cv2.cvtColor(_astronaut(), cv2.COLOR_RGB2GRAY)
    faces = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = faces.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
    if len(found) == 0:
        raise SyntheticError("no face found in skimage.data.astronaut(); reinstall opencv-python-headless")
    x, y, w, h = (int(v) for v in max(found, key=lambda b: b[2] * b[3]))
    top = y + h // 2
    smiles = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_smile.xml")
    found = smiles.detectMultiScale(gray[top:y + h + h // 10, x:x + w], scaleFactor=1.05, minNeighbors=10)
    if len(found) == 0:
        LOG.warning("smile cascade found no mouth; using typical face proportions")
        mouth = (x + 0.5 * w, y + 0.8 * h, 0.45 * w)
    else:
        sx, sy, sw, sh = max(found, key=lambda b: b[2] * b[3])
        mouth = (x + sx + sw / 2.0, top + sy + sh / 2.0, 0.7 * sw)
    return {"face": (x, y, w, h), "mouth": mouth}


@functools.lru_cache(maxsize=None)
def detected_face():
    """Face box (x0, y0, x1, y1) in the photo's 512x512 pixels as preprocessing's detector sees it.

    The median box of common.prep.faces' default detector over a rendered 2 s reference clip at
    FRAME_SIZE, found once (~1 s) and cached. Cropping with this box instead of the cascade
    box of face_geometry() makes synthetic crops the ones preprocessing cuts from raw videos.
    """
    frames = _draw_frames(articulation(0, 2.0), 60, 30, FRAME_SIZE)
    boxes = faces.make_detector(faces.DEFAULT_DETECTOR).detect(frames)[:, :4]
    if np.isnan(boxes[:, 0]).mean() > 0.5:
        raise SyntheticError("the face detector misses the rendered astronaut; reinstall opencv-python-headless")
    return tuple(float(v) for v in np.nanmedian(boxes, axis=0) * _astronaut().shape[0] / float(FRAME_SIZE))


def face_box(frame_size, style):
    """The crop box (x0, y0, x1, y1) in a rendered frame of ``frame_size`` pixels.

    The detected face box cut by crop style ``style``, as preprocessing crops it.
    """
    box = np.array([detected_face()]) * frame_size / float(_astronaut().shape[0])
    return tuple(int(v) for v in crops.crop_boxes(box, style, frame_size, frame_size)[0])


@functools.lru_cache(maxsize=None)
def _neutral_face():
    """The astronaut with her smile painted over by skin, as the canvas for the moving mouth."""
    img = _astronaut().astype(np.float32)
    x, y, w, h = face_geometry()["face"]
    cx, cy, mw = face_geometry()["mouth"]
    patches = []
    for dx in (-0.28 * w, 0.28 * w):
        px, py = int(cx + dx), int(cy - 0.12 * h)
        patches.append(img[py - 4:py + 4, px - 4:px + 4].reshape(-1, 3))
    skin = np.median(np.concatenate(patches), axis=0)
    mask = np.zeros(img.shape[:2], np.float32)
    cv2.ellipse(mask, (int(round(cx)), int(round(cy))), (int(mw * 0.85), int(mw * 0.3)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), mw * 0.08)[..., None]
    img = img * (1 - mask) + skin * mask
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def articulation(seed, seconds):
    """Latent articulation at CONTROL_RATE: dict of f1, f2, f3, opening, spread arrays.

    Words of 1-4 vowels with short lip closures between syllables and 150-450 ms
    silences between words, smoothed with a Gaussian (articulators move smoothly).
    """
    rng = np.random.RandomState(seed)
    n = int(round(seconds * CONTROL_RATE)) + 1
    targets = np.full((5, n), np.nan)
    targets[3] = 0.0

    def fill(start, end, values):
        a, b = int(round(start * CONTROL_RATE)), int(round(end * CONTROL_RATE))
        for row, value in zip((0, 1, 2, 3, 4), values):
            targets[row, a:b] = value

    t = rng.uniform(0.1, 0.3)
    while t < seconds:
        for syllable in range(rng.randint(1, 5)):
            if syllable:
                t += rng.uniform(0.03, 0.07)
            duration = rng.uniform(0.12, 0.28)
            fill(t, t + duration, VOWELS[VOWEL_NAMES[rng.randint(len(VOWEL_NAMES))]])
            t += duration
        t += rng.uniform(0.15, 0.45)
    for row, rest in zip((0, 1, 2, 4), (500.0, 1500.0, 2500.0, 0.5)):
        targets[row] = _hold(targets[row], rest)
    smooth = gaussian_filter1d(targets, sigma=0.018 * CONTROL_RATE, axis=1, mode="nearest")
    smooth[3] = np.clip(smooth[3], 0.0, 1.0)
    return dict(zip(("f1", "f2", "f3", "opening", "spread"), smooth))


def _hold(row, rest):
    """Fill NaNs (silences) with the preceding vowel's value (the first vowel's before it):
    articulators rest in place. A clip without any vowel rests at ``rest``."""
    known = np.flatnonzero(~np.isnan(row))
    if known.size == 0:
        return np.full_like(row, rest)
    index = np.maximum.accumulate(np.where(np.isnan(row), 0, np.arange(row.size)))
    index[:known[0]] = known[0]
    return row[index]


def _sample(track, times):
    grid = np.arange(track["opening"].size) / float(CONTROL_RATE)
    return {key: np.interp(times, grid, value) for key, value in track.items()}


def _synthesise(track, num_samples, sample_rate, rng):
    """Glottal pulses with jitter -> F1/F2/F3 cascade following the track; amplitude from opening."""
    params = _sample(track, np.arange(num_samples) / float(sample_rate))
    drift = gaussian_filter1d(rng.randn(num_samples // 400 + 2), 3.0)
    drift = np.interp(np.arange(num_samples) / 400.0, np.arange(drift.size), drift)
    f0 = BASE_F0 * (1.0 + 0.06 * drift / (np.abs(drift).max() + 1e-9)) * (1.0 + 0.01 * rng.randn(num_samples))
    phase = np.cumsum(f0 / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    pole = 0.96
    source = signal.lfilter([1.0, -1.0], [1.0, -2 * pole, pole * pole], pulses)
    source += 0.02 * rng.randn(num_samples) * source.std()
    amplitude = np.sqrt(np.clip((params["opening"] - 0.03) / 0.97, 0.0, 1.0))
    out = source * amplitude
    for formant, bandwidth in zip(("f1", "f2", "f3"), BANDWIDTHS):
        out = _resonator(out, params[formant], bandwidth, sample_rate)
    return out


def _resonator(x, freqs, bandwidth, sample_rate):
    """Klatt two-pole resonator (unity DC gain) with coefficients updated every BLOCK samples.

    The filter state is rebuilt from the last two outputs at each update (direct
    form I), so coefficient changes do not click.
    """
    y = np.zeros(x.size + 2)
    c = -np.exp(-2 * np.pi * bandwidth / sample_rate)
    for start in range(0, x.size, BLOCK):
        freq = freqs[start:start + BLOCK].mean()
        b = 2 * np.exp(-np.pi * bandwidth / sample_rate) * np.cos(2 * np.pi * freq / sample_rate)
        y1, y2 = y[start + 1], y[start]
        state = [b * y1 + c * y2, c * y1]
        y[start + 2:start + 2 + BLOCK] = signal.lfilter([1 - b - c, 0.0, 0.0], [1.0, -b, -c],
                                                        x[start:start + BLOCK], zi=state)[0]
    return y[2:]


def _draw_frames(track, num_frames, fps, frame_size):
    return draw_mouths(_sample(track, np.arange(num_frames) / float(fps)), frame_size)


def draw_mouths(params, frame_size):
    """One frame per entry of params' arrays: opening and spread (0..1), optionally jaw and rounding.

    The jaw drop lowers the mouth; rounding narrows it and thickens the lips (protrusion).
    Without jaw and rounding the mouth is the astronaut speaker's (the one its formant voice follows).
    """
    num_frames = len(params["opening"])
    jaw = params.get("jaw", np.zeros(num_frames))
    rounding = params.get("rounding", np.zeros(num_frames))
    base = _neutral_face()
    cx, cy, mw = face_geometry()["mouth"]
    shift = 4
    frames = np.empty((num_frames, frame_size, frame_size, 3), np.uint8)
    for i in range(num_frames):
        img = base.copy()
        center = (int(round(cx * 2 ** shift)), int(round((cy + 0.1 * mw * jaw[i]) * 2 ** shift)))
        lip = 0.09 * mw * (1.0 + 0.6 * rounding[i])
        half_w = 0.5 * mw * (0.75 + 0.45 * params["spread"][i]) * (1.0 - 0.3 * rounding[i])
        half_h = 0.5 * 0.45 * mw * params["opening"][i]
        outer = (int(round(half_w * 2 ** shift)), int(round((half_h + lip) * 2 ** shift)))
        cv2.ellipse(img, center, outer, 0, 0, 360, LIP_RGB, -1, cv2.LINE_AA, shift)
        inner = (int(round((half_w - 0.6 * lip) * 2 ** shift)), int(round(max(half_h, 0.12 * lip) * 2 ** shift)))
        cv2.ellipse(img, center, inner, 0, 0, 360, MOUTH_RGB, -1, cv2.LINE_AA, shift)
        frames[i] = cv2.resize(img, (frame_size, frame_size), interpolation=cv2.INTER_AREA)
    return frames


def render_clip(seed, hp, seconds, frame_size=FRAME_SIZE):
    """Render one clip: (frames uint8 [N, frame_size, frame_size, 3] RGB full frames, wav float32).

    N = round(seconds * fps); the wav has round(N * sample_rate / fps) samples,
    peak-normalised to hp.rescaling_max.
    """
    num_frames = timing.num_frames(seconds, hp)
    if num_frames < 1:
        raise SyntheticError("seconds=%r gives no video frame; ask for at least 1/fps seconds" % seconds)
    num_samples = timing.num_samples(num_frames, hp)
    track = articulation(seed, num_samples / float(hp.sample_rate))
    rng = np.random.RandomState((seed + 1) % 2 ** 32)
    wav = _synthesise(track, num_samples, hp.sample_rate, rng)
    peak = np.abs(wav).max()
    if peak > 0:
        wav = wav / peak * hp.rescaling_max
    return _draw_frames(track, num_frames, hp.fps, frame_size), wav.astype(np.float32)


def crop_face(frames, hp):
    """Face crops uint8 [N, H, W, 3] RGB cut with the known face box as hp.crop_style stores them."""
    box = face_box(frames.shape[1], hp.crop_style)
    return np.stack([crops.cut(frame, box, hp.img_size, hp.crop_style) for frame in frames])


def frame_size_for(hp):
    """Smallest frame (at least 160) whose face box is not upscaled to img_size."""
    x0, y0, x1, y1 = face_box(512, hp.crop_style)
    return int(max(160, min(512, np.ceil(hp.img_size * 512.0 / max(x1 - x0, y1 - y0)))))


def write_clip(folder, frames, wav, hp):
    """Crops, audio.wav and mels.npz (from the 16-bit audio as stored) into ``folder``."""
    for i, crop in enumerate(crop_face(frames, hp)):
        crops.write(folder, i, crop)
    path = datadir.audio_path(folder)
    audio.save_wav(wav, path, hp.sample_rate)
    stored = audio.load_wav(path, hp.sample_rate, rescaling_max=None)
    datadir.write_mels(folder, audio.melspectrogram(stored, hp))


def make_speaker(data_dir, hp, num_clips=24, seconds=4.0, seed=0):
    """Write the preprocessed layout for a synthetic speaker; resumable, deterministic.

    Each clip is built in a temporary folder and renamed when complete, so an
    existing clip folder is always whole and is skipped on re-runs. Mels are
    computed from the 16-bit audio.wav as stored, like real preprocessing.
    """
    frame_size = frame_size_for(hp)

    def write(folder, index):
        frames, wav = render_clip(_clip_seed(seed, index), hp, seconds, frame_size)
        write_clip(folder, frames, wav, hp)
    splits = write_speaker(data_dir, num_clips, write, "synthetic speaker", hp.crop_style)
    LOG.info("synthetic speaker: %d clips of %.1f s in %s (%s)", num_clips, seconds, data_dir,
             ", ".join("%s %d" % (k, len(v)) for k, v in sorted(splits.items())))
    return splits


def _clip_seed(seed, index):
    """The seed of clip ``index`` of the speaker drawn with ``seed``."""
    return (seed * 1000003 + index) % 2 ** 32


def write_speaker(data_dir, num_clips, write, description, style):
    """Clips clip000.. of an embedded speaker, each built by ``write(folder, index)`` in a temporary folder and
    renamed when whole (an existing clip folder is complete and skipped on re-runs), then the split lists; the
    data directory records crop style ``style``."""
    if num_clips < 5:
        raise SyntheticError("num_clips=%d is too few for train/val/test; use --clips 5 or more" % num_clips)
    root = datadir.clip_root(data_dir)
    if not os.path.isdir(root):
        os.makedirs(root)
    crops.record_style(data_dir, style)
    ids = ["clip%03d" % i for i in range(num_clips)]
    try:
        for i, clip_id in enumerate(progress.bar(ids, desc=description, unit="clip")):
            final = datadir.clip_folder(data_dir, clip_id)
            if not os.path.isdir(final):
                with datadir.building_clip(final) as tmp:
                    write(tmp, i)
    finally:
        shutil.rmtree(datadir.building_dir(root), ignore_errors=True)
    return write_splits(data_dir, ids)


def write_splits(data_dir, ids):
    """train/val/test.txt: the last 10% (at least 2) of ``ids`` for test, the 10% before for val."""
    held_out = max(2, int(round(0.1 * len(ids))))
    train, val, test = datadir.SPLITS
    splits = {train: ids[:len(ids) - 2 * held_out], val: ids[len(ids) - 2 * held_out:len(ids) - held_out],
              test: ids[len(ids) - held_out:]}
    for name, split_ids in splits.items():
        datadir.write_split(data_dir, name, split_ids)
    return splits
