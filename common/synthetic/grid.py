"""Embedded GRID speaker: the astronaut saying GRID-grammar sentences with espeak-ng's voice.

Each clip is one sentence of GRID's six-slot grammar drawn from the clip's seed, spoken
by espeak-ng (one voice, rate and pitch for the speaker, small per-clip variation) after a
short random lead-in, inside a fixed-length clip as in GRID (3 s). The mouth follows
visemes derived from espeak-ng's phoneme timings (common.synthetic.visemes), so
look-alike phonemes (p/b/m, f/v, ...) look alike. Clips are written in the preprocessed
layout plus each clip's word timings as a GRID .align file, or with --layout corpus as
GRID's own corpus layout (videos + alignments) to exercise `preprocess --grid`.
"""
import collections
import logging
import os

import numpy as np

from common.data import align
from common.data import audio
from common.data import datadir
from common.synthetic import astronaut
from common.synthetic import espeak
from common.synthetic import visemes

LOG = logging.getLogger(__name__)

RATE = 150  # words per minute: GRID's talkers fit a sentence in about 1.5 s of a 3 s clip
PITCH = 50
RATE_JITTER = 8
PITCH_JITTER = 6
LEAD_SECONDS = (0.15, 0.45)
DEFAULT_SECONDS = 3.0
CORPUS_FPS = 25  # GRID's videos
SPOKEN = {"a": "eigh"}  # espeak-ng reads a lone "a" as the article; GRID's talkers say the letter

Clip = collections.namedtuple("Clip", "frames wav words spans")
Clip.__doc__ = "frames uint8 [N, S, S, 3], wav float32, six words, word spans [(start s, end s, word)]."


def speak_sentence(words, rate, pitch, sample_rate):
    """(wav float at ``sample_rate``, phonemes [(start s, mnemonic)], word spans [(start s, end s, word)])."""
    align.check_sentence(words)
    utterance = espeak.speak(" ".join(SPOKEN.get(w, w) for w in words), rate, pitch)
    if len(utterance.words) != len(words):
        raise astronaut.SyntheticError("espeak-ng split %r into %d words, not %d; check SPOKEN in %s"
                                       % (" ".join(words), len(utterance.words), len(words), __name__))
    wav = audio.resample(utterance.samples / 32768.0, utterance.sample_rate, sample_rate)
    starts = [start for start, _, _ in utterance.words]
    pauses = [start for start, name in utterance.phonemes if name.startswith("_") and start > starts[-1]]
    ends = starts[1:] + [pauses[0] if pauses else len(wav) / float(sample_rate)]
    return wav, utterance.phonemes, list(zip(starts, ends, words))


def render_clip(seed, hp, seconds=DEFAULT_SECONDS, frame_size=astronaut.FRAME_SIZE, fps=None):
    """One clip for ``seed``: N = round(seconds * fps) frames, round(N * sample_rate / fps) samples.

    fps defaults to hp.fps (the corpus layout renders at GRID's own 25 fps, whatever the preset's windows)."""
    fps = fps or hp.fps
    rng = np.random.RandomState(seed)
    words = align.sample_sentence(rng)
    rate = RATE + rng.randint(-RATE_JITTER, RATE_JITTER + 1)
    pitch = PITCH + rng.randint(-PITCH_JITTER, PITCH_JITTER + 1)
    speech, phonemes, spans = speak_sentence(words, rate, pitch, hp.sample_rate)
    num_frames = int(round(seconds * fps))
    num_samples = int(round(num_frames * hp.sample_rate / float(fps)))
    lead = rng.uniform(*LEAD_SECONDS)
    start = int(round(lead * hp.sample_rate))
    if start + len(speech) > num_samples:
        raise astronaut.SyntheticError("%r takes %.2f s, longer than a %.2f s clip; use --seconds %.1f or more"
                                       % (" ".join(words), lead + len(speech) / float(hp.sample_rate), seconds,
                                          np.ceil(2 * (LEAD_SECONDS[1] + len(speech) / float(hp.sample_rate))) / 2))
    wav = np.zeros(num_samples)
    wav[start:start + len(speech)] = speech
    wav = wav / np.abs(wav).max() * hp.rescaling_max
    lead = start / float(hp.sample_rate)
    track = visemes.viseme_track([(t + lead, name) for t, name in phonemes], num_samples / float(hp.sample_rate))
    frames = astronaut.draw_mouths(visemes.at_times(track, np.arange(num_frames) / float(fps)), frame_size)
    return Clip(frames, wav.astype(np.float32), words, [(a + lead, b + lead, w) for a, b, w in spans])


def make_speaker(data_dir, hp, num_clips=24, seconds=DEFAULT_SECONDS, seed=0):
    """Write the preprocessed layout (+ TRANSCRIPT per clip) for the GRID speaker; resumable, deterministic."""
    frame_size = astronaut.frame_size_for(hp)

    def write(folder, index):
        clip = render_clip(_clip_seed(seed, index), hp, seconds, frame_size)
        astronaut.write_clip(folder, clip.frames, clip.wav, hp)
        align.write_align(datadir.transcript_path(folder), clip.spans, len(clip.wav) / float(hp.sample_rate))
    splits = astronaut.write_speaker(data_dir, num_clips, write, "GRID speaker", hp.crop_style)
    LOG.info("GRID speaker: %d clips of %.1f s in %s", num_clips, seconds, data_dir)
    return splits


def _clip_seed(seed, index):
    return (seed * 1000003 + index + 7919) % 2 ** 32


def write_corpus(grid_dir, hp, num_clips=6, seconds=DEFAULT_SECONDS, seed=0, speaker="s1",
                 frame_size=astronaut.FRAME_SIZE):
    """GRID's corpus layout: GRID_DIR/<speaker>/<id>.mp4 (25 fps, full frames) + GRID_DIR/alignments/<speaker>/<id>.align.

    Sentence ids repeat rarely; a repeat is skipped for the next seed. Returns the ids written.
    """
    from common.prep import video
    ids = []
    index = 0
    while len(ids) < num_clips:
        clip = render_clip(_clip_seed(seed, index), hp, seconds, frame_size, fps=CORPUS_FPS)
        index += 1
        sentence = align.sentence_id(clip.words)
        if sentence in ids:
            continue
        ids.append(sentence)
        video.write_video(clip.frames, clip.wav, CORPUS_FPS,
                          datadir.grid_video_path(grid_dir, speaker, sentence, ".mp4"), hp.sample_rate)
        align_path = datadir.grid_align_path(grid_dir, speaker, sentence)
        if not os.path.isdir(os.path.dirname(align_path)):
            os.makedirs(os.path.dirname(align_path))
        align.write_align(align_path, clip.spans, len(clip.wav) / float(hp.sample_rate))
    return ids
