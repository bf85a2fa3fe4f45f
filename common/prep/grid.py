"""The GRID corpus (Cooke et al. 2006) -> the preprocessed layout, with each clip's words.

GRID ships per-speaker video folders and per-speaker alignment archives; unpacked, the
usual layout is GRID_DIR/<speaker>/<id>.mpg (25 fps) with GRID_DIR/alignments/<speaker>/<id>.align.
Also accepted: the .align beside its video, under GRID_DIR/align/<speaker>/ or under
GRID_DIR/<speaker>/align/. Videos go through common.prep.preprocess like any other
(resampled to hp.fps, faces cropped); each kept clip gets its .align as
common.data.align.TRANSCRIPT, which is what makes evaluate report word scores. Splits are
fixed (per speaker, in sorted order, every tenth sentence from the 9th for val and from
the 10th for test) so WER figures compare between users.
"""
import logging
import os

from common import atomic
from common.data import align
from common.errors import Lip2WavError
from common.prep import video

LOG = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mpg", ".mpeg") + video.VIDEO_EXTENSIONS


class GridLayoutError(Lip2WavError, ValueError):
    """A GRID folder that is not in the corpus layout; the message names the fix."""


def _align_candidates(grid_dir, speaker, folder, stem):
    return (os.path.join(folder, stem + ".align"),
            os.path.join(grid_dir, "alignments", speaker, stem + ".align"),
            os.path.join(grid_dir, "align", speaker, stem + ".align"),
            os.path.join(grid_dir, speaker, "align", stem + ".align"))


def grid_clips(grid_dir):
    """[(clip id "<speaker>/<id>", video path, .align path)] of every GRID video that has an alignment."""
    if not os.path.isdir(grid_dir):
        raise GridLayoutError("GRID folder %s does not exist; pass --grid DIR (the unpacked corpus)"
                                         % grid_dir)
    clips, unaligned = [], []
    for speaker in sorted(os.listdir(grid_dir)):
        folder = os.path.join(grid_dir, speaker)
        if not os.path.isdir(folder) or speaker in ("alignments", "align") or speaker.startswith("."):
            continue
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in VIDEO_EXTENSIONS or name.startswith("."):
                continue
            found = [p for p in _align_candidates(grid_dir, speaker, folder, stem) if os.path.isfile(p)]
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
    return {8: "val", 9: "test"}.get(position % 10, "train")


def attach_words(clips, data_dir):
    """After preprocessing ``clips`` (from grid_clips) into DATA_DIR: copy each kept clip's words and write the
    fixed splits; returns {split: clip count}."""
    splits = {"train": [], "val": [], "test": []}
    position = {}
    for clip_id, _, align_path in clips:
        speaker = clip_id.split("/")[0]
        index = position.get(speaker, 0)
        position[speaker] = index + 1
        folder = os.path.join(data_dir, "preprocessed", clip_id)
        if not os.path.isdir(folder):
            continue
        align.check_sentence([word for _, _, word in align.read_align(align_path)])
        with open(align_path) as f:
            atomic.write_text(os.path.join(folder, align.TRANSCRIPT), f.read())
        splits[split_of(index)].append(clip_id)
    for split, ids in splits.items():
        atomic.write_text(os.path.join(data_dir, split + ".txt"), "".join(i + "\n" for i in ids))
    return {split: len(ids) for split, ids in splits.items()}
