"""Preprocessed clips -> numpy training batches (no TensorFlow here).

The data directory's layout (clip folders of face crops, audio.wav and mels.npz; split lists naming clip
ids, each a clip folder or a folder of clip folders) is common.data.datadir's.

A window is ``T`` frames from frame ``s`` and ``mel_step_size`` mel frames from
``timing.mel_start(s)``; crops are read by common.data.crops. Training samples windows at random
(as the original did) and skips, with a count per reason, those that run past the end or lack a
crop. A clip whose data turns out corrupt when first read (a damaged mels.npz payload, non-finite
mels, a truncated JPEG) is quarantined: its windows are skipped and counted from then on, and only
when the share of such windows passes ``max_bad_share`` does training stop. Batches are built by
background threads because JPEG decoding dominates and cv2 releases the GIL; every failure in a
thread is re-raised in the consumer so a bad clip can never hang or silently kill training.
"""
import bisect
import collections
import logging
import os
import queue
import threading
import time
import zipfile

import numpy as np
from common.data import crops
from common.data import datadir
from common.data import timing
from common.data import windows
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

MAKE_DATA_HINT = ("make one with `python -m common.synthetic --out DIR` "
                  "or preprocess videos with `invoke preprocess`")
SKIP_REASONS = ("short_frames", "short_mels", "missing_frames", "unreadable_frames", "corrupt_clip")
# Consecutive rejected windows after which sampling gives up instead of spinning forever.
MAX_REJECTIONS = 10000
# Training stops when more than this share of sampled windows falls on quarantined clips: a few bad
# clips in a large set cost little, a quarter of the data broken means the data needs fixing first.
DEFAULT_MAX_BAD_SHARE = 0.25
# Windows sampled before that share is judged, so one early unlucky draw cannot end a run.
MIN_WINDOWS_FOR_SHARE = 100


class DatasetError(Lip2WavError, ValueError):
    """Data that cannot be used; the one-line message names the fix."""


class CorruptClipError(DatasetError):
    """One clip's files are damaged; training quarantines the clip, other readers report it."""


Clip = collections.namedtuple("Clip", "id path num_frames mel_frames missing")
Clip.__doc__ = """One preprocessed clip.

id: clip id relative to preprocessed/; path: its folder; num_frames: 1 + highest frame number;
mel_frames: length of mels.npz "spec"; missing: sorted tuple of frame numbers without a JPEG.
"""


def window_problem(clip, start, hp):
    """Why the training window starting at ``start`` is unusable, or None if it is usable."""
    if start < 0 or start + hp.T > clip.num_frames:
        return "short_frames"
    if timing.mel_start(start, hp) + hp.mel_step_size > clip.mel_frames:
        return "short_mels"
    first_missing = bisect.bisect_left(clip.missing, start)
    if first_missing < len(clip.missing) and clip.missing[first_missing] < start + hp.T:
        return "missing_frames"
    return None


def usable_starts(clip, hp):
    """All frame numbers a usable training window can start at (int64 array)."""
    starts = np.arange(max(clip.num_frames - hp.T + 1, 0), dtype=np.int64)
    if not len(starts):
        return starts
    ok = timing.mel_start(starts, hp) + hp.mel_step_size <= clip.mel_frames
    if clip.missing:
        present = np.ones(clip.num_frames, dtype=np.int64)
        present[list(clip.missing)] = 0
        cumulative = np.concatenate([[0], np.cumsum(present)])
        ok &= cumulative[starts + hp.T] - cumulative[starts] == hp.T
    return starts[ok]


def load_mels(clip, hp):
    """The clip's mel spectrogram, float32 [num_mels, frames]; DatasetError names the clip."""
    path = datadir.mels_path(clip.path)
    try:
        spec = datadir.read_mels(path)
    except (IOError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptClipError("clip %s: cannot read %s (%s: %s); re-run preprocessing for it or drop it "
                               "from the split list" % (clip.id, path, type(exc).__name__, exc))
    if spec.ndim != 2 or spec.shape[0] != hp.num_mels or spec.shape[1] < clip.mel_frames:
        raise CorruptClipError("clip %s: %s has shape %s, expected [%d, >=%d]; re-run preprocessing for it"
                               % (clip.id, path, spec.shape, hp.num_mels, clip.mel_frames))
    finite = np.isfinite(spec)
    if not finite.all():
        raise CorruptClipError("clip %s: %s holds %d non-finite values (NaN or inf); re-run preprocessing for it "
                               "or drop it from the split list" % (clip.id, path, int(finite.size - finite.sum())))
    return spec


def read_training_crop(clip, number, hp):
    """Crop ``number`` of ``clip`` for training: None if missing, CorruptClipError if truncated."""
    try:
        return crops.read(clip.path, number, hp.img_size, hp.crop_style, strict=True)
    except crops.TruncatedCropError as exc:
        raise CorruptClipError("clip %s: %s; re-run preprocessing for it" % (clip.id, exc))


def _unit_float(pixels):
    """uint8 -> float32 in [0, 1] in one pass (no float64 or second temporary)."""
    return np.true_divide(pixels, np.float32(255.0), dtype=np.float32)


class ClipIndex(object):
    """The usable clips of one split, with counts of what was skipped and why.

    Attributes: clips (list of Clip), skipped (reason -> clip or id count), hours (video hours of
    the usable clips), usable_windows (training windows that fit), missing_frames (crops absent).
    """

    def __init__(self, data_dir, split, hp):
        self.data_dir = data_dir
        self.split = split
        self.hp = hp
        self.root = datadir.clip_root(data_dir)
        if not os.path.isdir(data_dir):
            raise DatasetError("data directory %s does not exist; %s" % (data_dir, MAKE_DATA_HINT))
        if not os.path.isdir(self.root):
            raise DatasetError("%s has no preprocessed/ folder; %s" % (data_dir, MAKE_DATA_HINT))
        crops.check_style(data_dir, hp)
        list_path = datadir.split_list(data_dir, split)
        if not os.path.isfile(list_path):
            raise DatasetError("split list %s does not exist; write one clip or video id per line "
                               "(`python -m common.synthetic` writes train/val/test.txt)" % list_path)
        ids = datadir.read_split(list_path)
        self.skipped = collections.Counter()
        self.clips = []
        seen = set()
        for clip_id in ids:
            for clip in self._expand(clip_id):
                if clip.path not in seen:
                    seen.add(clip.path)
                    self.clips.append(clip)
        if self.skipped:
            LOG.warning("%s: skipped %s", list_path, ", ".join("%s=%d" % kv for kv in sorted(self.skipped.items())))
        if not self.clips:
            reasons = ", ".join("%s=%d" % kv for kv in sorted(self.skipped.items())) or "the list is empty"
            raise DatasetError("split list %s has no usable clip (%s); list ids of folders under %s that hold "
                               "%s, %s and frame JPEGs" % (list_path, reasons, self.root, datadir.MELS, datadir.AUDIO))
        self.windows_per_clip = [len(usable_starts(clip, hp)) for clip in self.clips]
        self.usable_windows = int(sum(self.windows_per_clip))
        self.total_frames = int(sum(clip.num_frames for clip in self.clips))
        self.hours = timing.seconds(self.total_frames, hp) / 3600.0
        self.missing_frames = int(sum(len(clip.missing) for clip in self.clips))
        LOG.info("%s: %d clips, %.3f h, %d usable windows", list_path, len(self.clips), self.hours,
                 self.usable_windows)

    def _expand(self, clip_id):
        """Clips named by ``clip_id``: the folder itself if it is a clip, else clip folders below it."""
        path = os.path.normpath(os.path.join(self.root, clip_id))
        if os.path.isabs(clip_id) or not path.startswith(os.path.normpath(self.root) + os.sep):
            self.skipped["bad_id"] += 1
            return []
        if not os.path.isdir(path):
            self.skipped["missing_id"] += 1
            return []
        found = []
        skipped_before = sum(self.skipped.values())
        for folder, subdirs, files in os.walk(path):
            subdirs.sort()
            frames = datadir.crop_numbers(files)
            if datadir.MELS not in files and datadir.AUDIO not in files and not frames:
                continue
            subdirs[:] = []
            clip = self._clip(os.path.relpath(folder, self.root).replace(os.sep, "/"), folder, files, frames)
            if clip is not None:
                found.append(clip)
        if not found and sum(self.skipped.values()) == skipped_before:
            self.skipped["empty_id"] += 1
        return found

    def _clip(self, clip_id, folder, files, frames):
        if datadir.MELS not in files:
            self.skipped["no_mels"] += 1
            return None
        if datadir.AUDIO not in files:
            self.skipped["no_audio"] += 1
            return None
        if not frames:
            self.skipped["no_frames"] += 1
            return None
        try:
            shape = datadir.mel_shape(datadir.mels_path(folder))
        except (IOError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            LOG.warning("clip %s: unreadable %s (%s)", clip_id, datadir.MELS, exc)
            self.skipped["bad_mels"] += 1
            return None
        if len(shape) != 2 or shape[0] != self.hp.num_mels:
            LOG.warning("clip %s: %s has shape %s, expected [%d, frames]", clip_id, datadir.MELS, shape,
                        self.hp.num_mels)
            self.skipped["bad_mels"] += 1
            return None
        num_frames = max(frames) + 1
        missing = tuple(sorted(set(range(num_frames)) - set(frames)))
        return Clip(clip_id, folder, num_frames, int(shape[1]), missing)


def windows_for_clip(clip, hp):
    """Deterministic evaluation windows covering a whole clip.

    Windows start at ``windows.window_starts`` (``windows.stitch`` is the inverse); the last is
    padded by repeating the last frame, and a missing crop is replaced by its nearest earlier (else
    later) frame. Returns (frames float32 [W, T, S, S, 3] in [0, 1], mel_starts list of int).
    """
    starts = windows.window_starts(clip.num_frames, hp)
    images = [crops.read(clip.path, number, hp.img_size, hp.crop_style) for number in range(clip.num_frames)]
    present = [i for i, image in enumerate(images) if image is not None]
    if not present:
        raise DatasetError("clip %s: no readable frame JPEG in %s; re-run preprocessing for it" % (clip.id, clip.path))
    for i, image in enumerate(images):
        if image is None:
            earlier = bisect.bisect_right(present, i) - 1
            images[i] = images[present[earlier] if earlier >= 0 else present[0]]
    frames = np.empty((len(starts),) + windows.window_shape(hp), dtype=np.uint8)
    for w, start in enumerate(starts):
        for t in range(hp.T):
            frames[w, t] = images[min(start + t, clip.num_frames - 1)]
    return _unit_float(frames), [timing.mel_start(start, hp) for start in starts]


def summarise(data_dir, hp, splits=datadir.SPLITS):
    """Per-split facts for `invoke dataset-report`; a split that cannot be read reports its error."""
    report = {}
    for split in splits:
        try:
            index = ClipIndex(data_dir, split, hp)
        except DatasetError as exc:
            report[split] = {"error": str(exc)}
            continue
        report[split] = {
            "clips": len(index.clips),
            "hours": index.hours,
            "frames": index.total_frames,
            "usable_windows": index.usable_windows,
            "clips_without_windows": sum(1 for n in index.windows_per_clip if n == 0),
            "frames_missing": index.missing_frames,
            "skipped": dict(index.skipped),
        }
    return report


class _Failure(object):
    """What a worker hands the consumer instead of a batch when it fails."""

    def __init__(self, exc):
        self.exc = exc


class BatchSource(object):
    """Endless random training batches, prefetched by worker threads into bounded queues.

    Batch k is drawn from its own RNG seeded with (seed, k) by worker k % workers and consumed in
    order, so the sequence depends only on the seed (also with several workers). Use as a context
    manager or call close(); after close() iteration stops. A worker's exception is re-raised by
    the next ``next()``. ``first_batch`` lets a resumed run continue the same sequence.
    ``shard_index`` of ``shard_count`` (data-parallel ranks) keeps the windows whose start frame
    % shard_count == shard_index, so ranks read disjoint windows of every clip.
    """

    def __init__(self, data_dir, split, hp, batch_size=None, seed=None, workers=2, depth=4, index=None,
                 first_batch=0, max_bad_share=DEFAULT_MAX_BAD_SHARE, shard_index=0, shard_count=1):
        self.hp = hp
        self.index = index if index is not None else ClipIndex(data_dir, split, hp)
        self.batch_size = int(batch_size or hp.tacotron_batch_size)
        self.seed = int(hp.tacotron_random_seed if seed is None else seed) & 0xffffffff
        self.workers = max(int(workers), 1)
        self.first_batch = int(first_batch)
        self.max_bad_share = float(max_bad_share)
        if not 0 <= shard_index < shard_count:
            raise DatasetError("shard %d of %d does not exist: ranks are 0..%d" % (shard_index, shard_count,
                                                                                  shard_count - 1))
        self.shard_index, self.shard_count = int(shard_index), int(shard_count)
        if self.index.usable_windows == 0:
            raise DatasetError("no window of T=%d frames and mel_step_size=%d mel frames fits any clip of split %s; "
                               "use longer clips or smaller T/mel_step_size" % (hp.T, hp.mel_step_size, split))
        weights = np.array([clip.num_frames if n else 0 for clip, n in zip(self.index.clips, self.index.windows_per_clip)],
                           dtype=np.float64)
        self._weights = weights / weights.sum()
        per_worker = max(1, -(-int(depth) // self.workers))
        self._queues = [queue.Queue(maxsize=per_worker) for _ in range(self.workers)]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._skipped = collections.Counter()
        self._quarantined = {}
        self._bad_windows = 0
        self._windows_used = 0
        self._batches_made = 0
        self._consumed = 0
        self._wait_seconds = 0.0
        self._started_at = None
        self._error = None
        self._closed = False
        self.threads = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __iter__(self):
        return self

    def _start(self):
        self._started_at = time.time()
        for w in range(self.workers):
            thread = threading.Thread(target=self._work, args=(w,), name="BatchSource-%d" % w)
            thread.daemon = True
            thread.start()
            self.threads.append(thread)

    def __next__(self):
        if self._error is not None:
            raise self._error
        if self._closed:
            raise StopIteration
        if not self.threads:
            self._start()
        w = self._consumed % self.workers
        began = time.time()
        item = None
        while item is None:
            try:
                item = self._queues[w].get(timeout=0.1)
            except queue.Empty:
                if not self.threads[w].is_alive() and self._queues[w].empty():
                    item = _Failure(RuntimeError("batch worker %d stopped without a batch or an error" % w))
        with self._lock:
            self._wait_seconds += time.time() - began
        if isinstance(item, _Failure):
            self._fail(item.exc)
        self._consumed += 1
        return item

    def _fail(self, exc):
        self._error = exc
        self.close()
        raise exc

    def close(self):
        """Stop and join the workers; safe to call more than once."""
        self._closed = True
        self._stop.set()
        for q in self._queues:
            _drain(q)
        for thread in self.threads:
            thread.join(timeout=30)
            if thread.is_alive():
                LOG.warning("%s did not stop within 30 s", thread.name)

    @property
    def stats(self):
        """Snapshot: batches made/consumed, windows used, windows skipped by reason, consumer wait."""
        with self._lock:
            return {
                "batches_made": self._batches_made,
                "batches_consumed": self._consumed,
                "windows_used": self._windows_used,
                "windows_skipped": dict((reason, self._skipped[reason]) for reason in SKIP_REASONS),
                "quarantined_clips": dict(self._quarantined),
                "consumer_wait_seconds": self._wait_seconds,
            }

    @property
    def batches_per_second(self):
        """Batches consumed per second since the first next()."""
        if self._started_at is None or not self._consumed:
            return 0.0
        return self._consumed / max(time.time() - self._started_at, 1e-9)

    def _work(self, w):
        q = self._queues[w]
        k = self.first_batch + w
        try:
            while not self._stop.is_set():
                batch = self.make_batch(k)
                if not self._put(q, batch):
                    return
                k += self.workers
        except Exception as exc:  # handed to the consumer, which re-raises it
            self._put(q, _Failure(exc))

    def _put(self, q, item):
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def make_batch(self, k):
        """Batch number ``k`` of this seed (what the workers compute)."""
        hp = self.hp
        rng = np.random.RandomState([self.seed, k & 0xffffffff])
        frames = np.empty((self.batch_size,) + windows.window_shape(hp), dtype=np.uint8)
        mels = np.empty((self.batch_size, hp.mel_step_size, hp.num_mels), dtype=np.float32)
        skipped = collections.Counter()
        spectrograms = {}
        b = rejections = 0
        while b < self.batch_size:
            if rejections >= MAX_REJECTIONS:
                raise DatasetError("%d windows in a row were unusable (%s); check the crops of split %s"
                                   % (rejections, dict(skipped), self.index.split))
            clip = self.index.clips[rng.choice(len(self.index.clips), p=self._weights)]
            start = self._shard_start(rng, clip.num_frames)
            if clip.id in self._quarantined:
                problem = "corrupt_clip"
            else:
                problem = window_problem(clip, start, hp) or self._fill(clip, start, frames[b], mels[b], spectrograms)
            if problem:
                skipped[problem] += 1
                rejections += 1
                if problem == "corrupt_clip":
                    self._count_bad_window()
                continue
            b += 1
            rejections = 0
        with self._lock:
            self._skipped.update(skipped)
            self._windows_used += self.batch_size
            self._batches_made += 1
        return {
            "inputs": _unit_float(frames),
            "mel_targets": mels,
            "speaker_embeddings": np.zeros((self.batch_size, hp.speaker_embedding_dim), dtype=np.float32),
        }

    def _shard_start(self, rng, num_frames):
        """A random start frame of this shard (any start frame with one shard)."""
        starts_in_shard = max(-(-(num_frames - self.shard_index) // self.shard_count), 1)
        return self.shard_index + self.shard_count * int(rng.randint(starts_in_shard))

    def _fill(self, clip, start, frames_out, mels_out, spectrograms):
        """Read one window into the batch arrays; returns a skip reason or None.

        ``spectrograms`` caches mels per clip within one batch only, so memory stays bounded.
        """
        hp = self.hp
        try:
            for t in range(hp.T):
                image = read_training_crop(clip, start + t, hp)
                if image is None:
                    return "unreadable_frames"
                frames_out[t] = image
            first = timing.mel_start(start, hp)
            if clip.path not in spectrograms:
                spectrograms[clip.path] = load_mels(clip, hp)
        except CorruptClipError as exc:
            self._quarantine(clip, exc)
            return "corrupt_clip"
        mels_out[:] = spectrograms[clip.path][:, first:first + hp.mel_step_size].T
        return None

    def _quarantine(self, clip, exc):
        with self._lock:
            first_time = clip.id not in self._quarantined
            self._quarantined.setdefault(clip.id, str(exc))
            count = len(self._quarantined)
        if first_time:
            LOG.warning("quarantined %s; its windows are skipped from now on (%d clip(s) quarantined; training stops "
                        "if more than %.0f%% of sampled windows fall on them)", exc, count, 100 * self.max_bad_share)

    def _count_bad_window(self):
        """Count one window of a quarantined clip; DatasetError once they are too large a share to train on."""
        with self._lock:
            self._bad_windows += 1
            sampled = self._bad_windows + self._windows_used
            quarantined = sorted(self._quarantined)
            first_reason = self._quarantined[quarantined[0]]
        every_clip = len(quarantined) >= int(np.count_nonzero(self._weights))
        share = self._bad_windows / float(sampled)
        if every_clip or (sampled >= MIN_WINDOWS_FOR_SHARE and share > self.max_bad_share):
            raise DatasetError("%d of %d sampled windows (%.0f%%) fell on corrupt clips of split %s, more than the "
                               "allowed %.0f%% (--max-bad-share): %s (first: %s)"
                               % (self._bad_windows, sampled, 100 * share, self.index.split, 100 * self.max_bad_share,
                                  ", ".join(quarantined), first_reason))


def _drain(q):
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
