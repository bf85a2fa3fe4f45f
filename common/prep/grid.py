"""The GRID corpus (Cooke et al. 2006) -> the preprocessed layout, with each clip's words.

GRID ships per-speaker video folders and per-speaker alignment archives; unpacked, they are
the corpus layout common.data.datadir draws. Videos go through common.prep.preprocess like any
other (resampled to hp.fps, faces cropped); each kept clip gets its .align as its transcript,
which is what makes evaluate report word scores. Splits are
fixed (per speaker, in sorted order, every tenth sentence from the 9th for val and from
the 10th for test) so WER figures compare between users.
"""
import logging
import os

from common import atomic
from common.data import align
from common.data import datadir
from common.errors import Lip2WavError
from common.prep import video

LOG = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mpg", ".mpeg") + video.VIDEO_EXTENSIONS


class GridLayoutError(Lip2WavError, ValueError):
    """A GRID folder that is not in the corpus layout; the message names the fix."""


def grid_clips(grid_dir):
    """[(clip id "<speaker>/<id>", video path, .align path)] of every GRID video that has an alignment."""
    if not os.path.isdir(grid_dir):
        raise GridLayoutError("GRID folder %s does not exist; pass --grid DIR (the unpacked corpus)"
                                         % grid_dir)
    clips, unaligned = [], []
    for speaker in sorted(os.listdir(grid_dir)):
        if not datadir.is_grid_speaker(grid_dir, speaker):
            continue
        folder = os.path.join(grid_dir, speaker)
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS or name.startswith("."):
                continue
            found = [p for p in datadir.grid_align_candidates(grid_dir, speaker, stem) if os.path.isfile(p)]
            if found:
                clips.append((speaker + "/" + stem, os.path.join(folder, name), found[0]))
            else:
                unaligned.append(speaker + "/" + stem)
    if unaligned:
        LOG.warning("%d GRID videos have no .align and are skipped (e.g. %s)", len(unaligned), unaligned[0])
    if not clips:
        raise GridLayoutError(
            "no GRID video with an alignment under %s; expected <speaker>/<id>.mpg and "
            "alignments/<speaker>/<id>.align" % grid_dir)
    return clips


def split_of(position):
    """The fixed split of a speaker's ``position``-th sentence (0-based, sorted by id)."""
    train, val, test = datadir.SPLITS
    return {8: val, 9: test}.get(position % 10, train)


def attach_words(clips, data_dir):
    """After preprocessing ``clips`` (from grid_clips) into DATA_DIR: copy each kept clip's words and write the
    fixed splits; returns {split: clip count}."""
    splits = dict((split, []) for split in datadir.SPLITS)
    position = {}
    for clip_id, _, align_path in clips:
        speaker = clip_id.split("/")[0]
        index = position.get(speaker, 0)
        position[speaker] = index + 1
        folder = datadir.clip_folder(data_dir, clip_id)
        if not os.path.isdir(folder):
            continue
        align.check_sentence([word for _, _, word in align.read_align(align_path)])
        with open(align_path) as f:
            atomic.write_text(datadir.transcript_path(folder), f.read())
        splits[split_of(index)].append(clip_id)
    for split, ids in splits.items():
        datadir.write_split(data_dir, split, ids)
    return {split: len(ids) for split, ids in splits.items()}
