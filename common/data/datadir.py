"""The data directory's layout: the one module that names its entries and reads them back.

It imports no TensorFlow, so host tools (synthesis, evaluation, the run report) use it too. One speaker's data
directory (``--data``):

  videos/<id>.mp4           downloaded videos (common/prep/download.py); .part-<id>/ while one downloads
  intervals/<id>/           their cut-<N>.mp4 pieces, what `preprocess --speaker` reads; .done once all are cut
  download_report.json      the last download: videos fetched, already there, cut, failed and why
  preprocessed/             the clips training reads
    <clip id>/              one clip folder (an id may hold slashes, e.g. <video id>/cut-<N>)
      <frame>.jpg           face crops, 0-based (common/data/crops.py cuts, writes and reads them)
      audio.wav             the audio at hp.sample_rate (16 kHz), round(N * sample_rate / fps) samples for N frames
      mels.npz              key "spec": float32 [num_mels, mel frames]
      boxes.npy             float32 [N, 5]: the crop box (x0, y0, x1, y1) and the detector's score (NaN: no face)
      transcript.align      the clip's words, GRID clips only (common/data/align.py reads the format)
    .tmp/                   clips being preprocessed, each renamed into place when whole
  train.txt val.txt test.txt  split lists: one clip id, or folder of clip folders, per line; '#' comments
  crop_style.txt            the crop style of every crop (crops.py refuses a run of another style)
  preprocess_report.json    the last preprocessing run: options, kept clips with their sync record, dropped ones
  sync_offsets.png          the audio-video offset histogram `preprocess --report` draws

The GRID corpus (the input of `preprocess --grid`; `python -m common.synthetic --layout corpus` writes one):

  <speaker>/<id>.mpg              the videos (25 fps)
  alignments/<speaker>/<id>.align  their word timings; also found beside the video, in align/<speaker>/ or in
                                  <speaker>/align/
"""
import json
import os
import zipfile

import numpy as np

from common import atomic

PREPROCESSED = "preprocessed"
BUILDING = ".tmp"
CROP = "%d.jpg"
CROP_EXT = ".jpg"
AUDIO = "audio.wav"
MELS = "mels.npz"
MEL_KEY = "spec"
BOXES = "boxes.npy"
TRANSCRIPT = "transcript.align"
SPLITS = ("train", "val", "test")
SPLIT_LIST = "%s.txt"
CROP_STYLE = "crop_style.txt"
PREPROCESS_REPORT = "preprocess_report.json"
SYNC_PLOT = "sync_offsets.png"
VIDEOS = "videos"
DOWNLOADING = ".part-"
INTERVALS = "intervals"
PIECE_PREFIX = "cut-"
PIECE = PIECE_PREFIX + "%d.mp4"
CUT_DONE = ".done"
DOWNLOAD_REPORT = "download_report.json"
GRID_ALIGNMENTS = "alignments"
GRID_ALIGN = "align"
ALIGN_EXT = ".align"


# ------------------------------------------------------------------------------------------ clip folders

def clip_root(data_dir):
    """``DATA/preprocessed``, the folder of the clip folders."""
    return os.path.join(data_dir, PREPROCESSED)


def clip_folder(data_dir, clip_id):
    return os.path.join(clip_root(data_dir), clip_id)


def root_of(folder):
    """(clip root, clip id) of a clip folder ``.../preprocessed/<clip id>``; a folder outside that layout is its
    own id in its parent."""
    parts = os.path.normpath(folder).split(os.sep)
    if PREPROCESSED in parts:
        i = len(parts) - 1 - parts[::-1].index(PREPROCESSED)
        return os.sep.join(parts[:i + 1]) or os.sep, "/".join(parts[i + 1:])
    return os.path.dirname(folder), os.path.basename(folder)


def building_dir(root):
    """Where clips of the clip root ``root`` are built before they are renamed into place."""
    return os.path.join(root, BUILDING)


def building_clip(folder):
    """atomic.building_folder for a clip folder: this process builds it in the clip root's .tmp/, on the same file
    system, so one rename puts it in place whole."""
    root, clip_id = root_of(folder)
    tmp = os.path.join(building_dir(root), clip_id.replace("/", "__") + ".%d" % os.getpid())
    return atomic.building_folder(folder, tmp)


def crop_path(folder, number):
    return os.path.join(folder, CROP % number)


def crop_numbers(names):
    """Frame numbers of the crop files among ``names`` (``<frame>.jpg``)."""
    numbers = []
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() == CROP_EXT and stem.isdigit():
            numbers.append(int(stem))
    return numbers


def audio_path(folder):
    return os.path.join(folder, AUDIO)


def mels_path(folder):
    return os.path.join(folder, MELS)


def write_mels(folder, mel):
    np.savez(mels_path(folder), **{MEL_KEY: mel})


def read_mels(path):
    """The mel spectrogram of a mels.npz, float32 [num_mels, frames] (numpy's and zipfile's errors pass through)."""
    with np.load(path) as npz:
        return np.asarray(npz[MEL_KEY], dtype=np.float32)


def mel_shape(path):
    """Shape of the mel spectrogram in a mels.npz, read from the .npy header without loading the array."""
    with zipfile.ZipFile(path) as archive:
        with archive.open(MEL_KEY + ".npy") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(f)[0]
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(f)[0]
    with np.load(path) as npz:
        return npz[MEL_KEY].shape


def write_boxes(folder, boxes):
    np.save(os.path.join(folder, BOXES), boxes)


def transcript_path(folder):
    return os.path.join(folder, TRANSCRIPT)


# --------------------------------------------------------------------------------------- data directory

def split_list(data_dir, split):
    """``DATA/<split>.txt``."""
    return os.path.join(data_dir, SPLIT_LIST % split)


def read_split(path):
    """The ids a split list names (blank lines and '#' comments left out)."""
    with open(path) as f:
        ids = [line.strip() for line in f]
    return [clip_id for clip_id in ids if clip_id and not clip_id.startswith("#")]


def write_split(data_dir, split, ids):
    atomic.write_text(split_list(data_dir, split), "".join(i + "\n" for i in ids))


def recorded_style(data_dir):
    """The crop style recorded in ``data_dir``, or None for a directory without a record (hand-built)."""
    try:
        with open(os.path.join(data_dir, CROP_STYLE)) as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def write_style(data_dir, style):
    atomic.write_text(os.path.join(data_dir, CROP_STYLE), style + "\n")


def report_path(data_dir):
    return os.path.join(data_dir, PREPROCESS_REPORT)


def read_report(data_dir):
    """The last preprocessing report of ``data_dir``, or None when there is none."""
    path = report_path(data_dir)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def sync_plot_path(data_dir):
    return os.path.join(data_dir, SYNC_PLOT)


# ----------------------------------------------------------------------------------- downloads and pieces

def videos_dir(data_dir):
    return os.path.join(data_dir, VIDEOS)


def video_path(data_dir, vid):
    return os.path.join(videos_dir(data_dir), vid + ".mp4")


def downloading_dir(data_dir, vid):
    """yt-dlp's folder for a video being downloaded (kept between runs, so a download resumes)."""
    return os.path.join(videos_dir(data_dir), DOWNLOADING + vid)


def pieces_dir(data_dir, vid=None):
    """``DATA/intervals``, or the folder of video ``vid``'s pieces."""
    folder = os.path.join(data_dir, INTERVALS)
    return folder if vid is None else os.path.join(folder, vid)


def cut_marker(data_dir, vid):
    return os.path.join(pieces_dir(data_dir, vid), CUT_DONE)


def pieces(data_dir):
    """(clip id ``<vid>/cut-N``, path) of every piece under ``DATA/intervals``, by video then piece number."""
    found = []
    root = pieces_dir(data_dir)
    for vid in sorted(os.listdir(root)):
        folder = os.path.join(root, vid)
        if not os.path.isdir(folder):
            continue
        names = [f for f in os.listdir(folder) if f.startswith(PIECE_PREFIX) and f.endswith(".mp4")]
        for name in sorted(names, key=_piece_number):
            found.append((vid + "/" + name[:-4], os.path.join(folder, name)))
    return found


def _piece_number(name):
    number = name[len(PIECE_PREFIX):-4]
    return int(number) if number.isdigit() else -1


def download_report_path(data_dir):
    return os.path.join(data_dir, DOWNLOAD_REPORT)


# ---------------------------------------------------------------------------------------------- GRID corpus

def is_grid_speaker(grid_dir, name):
    """True for a speaker folder of a GRID corpus (not its alignment folders or a hidden entry)."""
    return (os.path.isdir(os.path.join(grid_dir, name)) and name not in (GRID_ALIGNMENTS, GRID_ALIGN)
            and not name.startswith("."))


def grid_align_candidates(grid_dir, speaker, stem):
    """Where the .align of ``<speaker>/<stem>`` may be, in order of preference."""
    name = stem + ALIGN_EXT
    return (os.path.join(grid_dir, speaker, name), grid_align_path(grid_dir, speaker, stem),
            os.path.join(grid_dir, GRID_ALIGN, speaker, name), os.path.join(grid_dir, speaker, GRID_ALIGN, name))


def grid_align_path(grid_dir, speaker, stem):
    """``GRID/alignments/<speaker>/<stem>.align``, where GRID's archives unpack and the synthetic corpus writes."""
    return os.path.join(grid_dir, GRID_ALIGNMENTS, speaker, stem + ALIGN_EXT)


def grid_video_path(grid_dir, speaker, stem, ext):
    return os.path.join(grid_dir, speaker, stem + ext)
