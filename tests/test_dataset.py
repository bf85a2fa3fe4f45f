"""common.data.dataset on tiny hand-built clips whose pixels and mels encode their own indices."""
import os

import cv2
import numpy as np
import pytest
import soundfile

from common.config import hparams
from common.data.dataset import (BatchSource, ClipIndex, DatasetError, load_mels, summarise, usable_starts,
                                 window_problem, windows_for_clip)
from common.data.timing import mel_start

# T=6 frames at 30 fps = 0.2 s = 16 mel frames at 80 per second.
HP = hparams.resolve("synthetic", overrides={"img_size": 16, "T": 6, "mel_step_size": 16, "overlap": 2,
                                             "mel_overlap": 4, "num_mels": 8, "speaker_embedding_dim": 4})


def make_clip(root, clip_id, num_frames, mel_frames=None, size=16, missing=(), mels=True, audio=True, base=0):
    """A clip whose frame i is uniform gray base + 2*i and whose mel column j is all j."""
    folder = os.path.join(root, "preprocessed", clip_id)
    os.makedirs(folder)
    for i in range(num_frames):
        if i not in missing:
            cv2.imwrite(os.path.join(folder, "%d.jpg" % i), np.full((size, size, 3), base + 2 * i, dtype=np.uint8))
    if mel_frames is None:
        mel_frames = mel_start(num_frames, HP) + 1
    if mels:
        spec = np.tile(np.arange(mel_frames, dtype=np.float32), (HP.num_mels, 1))
        np.savez_compressed(os.path.join(folder, "mels.npz"), spec=spec)
    if audio:
        soundfile.write(os.path.join(folder, "audio.wav"), np.zeros(mel_frames * HP.hop_size, np.float32),
                        HP.sample_rate)
    return folder


def write_split(root, split, ids):
    with open(os.path.join(str(root), split + ".txt"), "w") as f:
        f.write("\n".join(ids) + "\n")


def frame_number(image):
    return int(round(float(image.mean()) * 255 / 2))


def test_nested_ids_expand_and_bad_clips_are_counted(tmp_path):
    root = str(tmp_path)
    make_clip(root, "vidA/cut-0", 20)
    make_clip(root, "vidA/cut-1", 20)
    make_clip(root, "vidA/deeper/cut-2", 20)
    make_clip(root, "vidA/cut-3", 20, mels=False)
    make_clip(root, "vidB", 20, audio=False)
    make_clip(root, "single", 30)
    os.makedirs(os.path.join(root, "preprocessed", "emptyvid"))
    write_split(root, "train", ["vidA", "vidB", "single", "single", "nosuch", "emptyvid", "# a comment", ""])
    index = ClipIndex(root, "train", HP)
    assert [c.id for c in index.clips] == ["vidA/cut-0", "vidA/cut-1", "vidA/deeper/cut-2", "single"]
    assert dict(index.skipped) == {"no_mels": 1, "no_audio": 1, "missing_id": 1, "empty_id": 1}
    assert index.clips[0].num_frames == 20
    assert index.clips[0].mel_frames == mel_start(20, HP) + 1
    assert index.usable_windows == 3 * (20 - HP.T + 1) + (30 - HP.T + 1)
    assert index.hours == pytest.approx(90 / 30.0 / 3600)


def test_window_problems_and_usable_starts(tmp_path):
    root = str(tmp_path)
    make_clip(root, "a", 20, missing=(10,))
    make_clip(root, "shortmel", 20, mel_frames=30)
    write_split(root, "train", ["a", "shortmel"])
    clip, shortmel = ClipIndex(root, "train", HP).clips
    assert clip.missing == (10,)
    assert window_problem(clip, 0, HP) is None
    assert window_problem(clip, 5, HP) == "missing_frames"
    assert window_problem(clip, 11, HP) is None
    assert window_problem(clip, 15, HP) == "short_frames"
    assert list(usable_starts(clip, HP)) == [0, 1, 2, 3, 4, 11, 12, 13, 14]
    # mel_start(s) + 16 <= 30 holds up to s = 5.
    assert list(usable_starts(shortmel, HP)) == [0, 1, 2, 3, 4, 5]
    assert window_problem(shortmel, 6, HP) == "short_mels"


def test_batches_align_frames_with_mels_and_count_skips(tmp_path):
    root = str(tmp_path)
    make_clip(root, "a", 40, missing=(20,))
    make_clip(root, "b", 25, size=24, base=100)  # crops larger than img_size are resized; numbered from 50
    write_split(root, "train", ["a", "b"])
    with BatchSource(root, "train", HP, batch_size=8, seed=3, workers=2) as source:
        batches = [next(source) for _ in range(6)]
        stats = source.stats
        assert source.batches_per_second > 0
    for batch in batches:
        assert batch["inputs"].shape == (8, HP.T, 16, 16, 3) and batch["inputs"].dtype == np.float32
        assert batch["mel_targets"].shape == (8, HP.mel_step_size, HP.num_mels)
        assert batch["speaker_embeddings"].shape == (8, 4) and not batch["speaker_embeddings"].any()
        assert 0.0 <= batch["inputs"].min() and batch["inputs"].max() <= 1.0
        for inputs, mels in zip(batch["inputs"], batch["mel_targets"]):
            first = frame_number(inputs[0])
            assert [frame_number(image) for image in inputs] == list(range(first, first + HP.T))
            start = first - 50 if first >= 50 else first
            assert first >= 50 or 20 not in range(first, first + HP.T)
            assert np.array_equal(mels[:, 0], mel_start(start, HP) + np.arange(HP.mel_step_size))
    assert stats["windows_used"] >= 48
    assert stats["windows_skipped"]["short_frames"] > 0
    assert stats["windows_skipped"]["missing_frames"] > 0
    assert stats["batches_consumed"] == 6


def test_unreadable_frame_is_skipped_not_fatal(tmp_path):
    root = str(tmp_path)
    folder = make_clip(root, "a", 12)
    with open(os.path.join(folder, "3.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    write_split(root, "train", ["a"])
    with BatchSource(root, "train", HP, batch_size=4, seed=0, workers=1) as source:
        batch = next(source)
        for _ in range(3):
            next(source)
        skipped = source.stats["windows_skipped"]["unreadable_frames"]
    assert skipped > 0
    for inputs in batch["inputs"]:
        assert 3 not in [frame_number(image) for image in inputs]


def test_same_seed_same_batches_regardless_of_workers(tmp_path):
    root = str(tmp_path)
    make_clip(root, "a", 30)
    make_clip(root, "b", 30)
    write_split(root, "train", ["a", "b"])

    def take(seed, workers):
        with BatchSource(root, "train", HP, batch_size=4, seed=seed, workers=workers) as source:
            return [next(source) for _ in range(4)]

    first, again, parallel, other = take(7, 1), take(7, 1), take(7, 2), take(8, 1)
    for x, y, z in zip(first, again, parallel):
        for key in x:
            assert np.array_equal(x[key], y[key]) and np.array_equal(x[key], z[key])
    assert not all(np.array_equal(x["mel_targets"], w["mel_targets"]) for x, w in zip(first, other))


def test_worker_error_surfaces_with_clip_name_and_threads_stop(tmp_path):
    root = str(tmp_path)
    folder = make_clip(root, "vid/cut-7", 30)
    write_split(root, "train", ["vid"])
    source = BatchSource(root, "train", HP, batch_size=4, seed=0, workers=2)
    os.remove(os.path.join(folder, "mels.npz"))
    with pytest.raises(DatasetError, match="vid/cut-7"):
        next(source)
    with pytest.raises(DatasetError, match="vid/cut-7"):
        next(source)
    assert source.threads and not any(thread.is_alive() for thread in source.threads)
    source.close()


def test_corrupt_mels_surface_in_consumer(tmp_path):
    root = str(tmp_path)
    folder = make_clip(root, "a", 30)
    write_split(root, "train", ["a"])
    source = BatchSource(root, "train", HP, batch_size=2, seed=0, workers=1)
    with open(os.path.join(folder, "mels.npz"), "wb") as f:
        f.write(b"garbage")
    with pytest.raises(DatasetError, match="clip a: cannot read"):
        next(source)
    source.close()


def test_close_joins_threads_and_stops_iteration(tmp_path):
    root = str(tmp_path)
    make_clip(root, "a", 30)
    write_split(root, "train", ["a"])
    source = BatchSource(root, "train", HP, batch_size=2, seed=0, workers=2, depth=2)
    next(source)
    source.close()
    assert len(source.threads) == 2 and not any(thread.is_alive() for thread in source.threads)
    with pytest.raises(StopIteration):
        next(source)
    source.close()


def test_missing_data_and_split_errors_name_the_fix(tmp_path):
    root = str(tmp_path)
    with pytest.raises(DatasetError, match="python -m common.synthetic --out DIR"):
        ClipIndex(os.path.join(root, "nowhere"), "train", HP)
    os.makedirs(os.path.join(root, "preprocessed"))
    with pytest.raises(DatasetError, match="split list .*train.txt does not exist"):
        ClipIndex(root, "train", HP)
    write_split(root, "train", [""])
    with pytest.raises(DatasetError, match="no usable clip .*the list is empty"):
        ClipIndex(root, "train", HP)
    make_clip(root, "nomels", 10, mels=False)
    write_split(root, "train", ["nomels", "ghost"])
    with pytest.raises(DatasetError, match="missing_id=1, no_mels=1"):
        ClipIndex(root, "train", HP)
    make_clip(root, "tiny", 3)
    write_split(root, "train", ["tiny"])
    with pytest.raises(DatasetError, match="no window of T=6"):
        BatchSource(root, "train", HP, batch_size=2)
    assert issubclass(DatasetError, ValueError)


def test_windows_for_clip_cover_the_clip(tmp_path):
    root = str(tmp_path)
    make_clip(root, "a", 15, missing=(7,))
    write_split(root, "test", ["a"])
    clip = ClipIndex(root, "test", HP).clips[0]
    frames, mel_starts = windows_for_clip(clip, HP)
    # stride T - overlap = 4: windows at 0, 4, 8, 12; the last is padded with frame 14.
    assert frames.shape == (4, HP.T, 16, 16, 3) and frames.dtype == np.float32
    assert mel_starts == [mel_start(s, HP) for s in (0, 4, 8, 12)]
    assert [frame_number(image) for image in frames[3]] == [12, 13, 14, 14, 14, 14]
    assert [frame_number(image) for image in frames[1]] == [4, 5, 6, 6, 8, 9]
    spec = load_mels(clip, HP)
    assert spec.shape == (HP.num_mels, clip.mel_frames)


def test_summarise_reports_each_split(tmp_path):
    root = str(tmp_path)
    make_clip(root, "a", 20, missing=(3,))
    make_clip(root, "b", 10)
    write_split(root, "train", ["a", "b"])
    write_split(root, "val", ["b"])
    report = summarise(root, HP)
    assert report["train"]["clips"] == 2
    assert report["train"]["frames_missing"] == 1
    assert report["train"]["usable_windows"] == len(usable_starts(ClipIndex(root, "train", HP).clips[0], HP)) + 5
    assert report["val"]["hours"] == pytest.approx(10 / 30.0 / 3600)
    assert "does not exist" in report["test"]["error"]
