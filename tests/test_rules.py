"""The shared rules, each owned by one module: crops, timing, windows, atomic folders and files,
run directories, targets. Each test fails when its owner drifts from the rule the others rely on."""
import os
import stat

import cv2
import numpy as np
import pytest

from common import atomic
from common import devices
from common.config import hparams
from common.data import crops
from common.data import timing
from common.data import windows
from common.training import rundir
from containers import launch


def _pattern(size):
    """A smooth but non-trivial RGB image, so resize interpolations differ measurably."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([x * 255 // size, y * 255 // size, (x * y) % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("written, read", [(8, 16), (32, 16), (16, 16)])
def test_a_square_margin_crop_of_another_size_is_read_resized_by_the_preprocessing_rule(tmp_path, written, read):
    crops.write(str(tmp_path), 0, _pattern(written))
    decoded = cv2.cvtColor(cv2.imread(os.path.join(str(tmp_path), "0.jpg")), cv2.COLOR_BGR2RGB)
    interpolation = cv2.INTER_AREA if written >= read else cv2.INTER_CUBIC
    expected = decoded if written == read else cv2.resize(decoded, (read, read), interpolation=interpolation)
    got = crops.read(str(tmp_path), 0, read, crops.SQUARE_MARGIN)
    assert got.shape == (read, read, 3)
    np.testing.assert_array_equal(got, expected)
    assert crops.read(str(tmp_path), 1, read, crops.SQUARE_MARGIN) is None


def test_square_margin_cut_takes_the_box_then_resizes(tmp_path):
    frame = _pattern(64)
    np.testing.assert_array_equal(crops.cut(frame, (8, 4, 24, 20), 16, crops.SQUARE_MARGIN), frame[4:20, 8:24])
    assert crops.cut(frame, (0, 0, 32, 32), 16, crops.SQUARE_MARGIN).shape == (16, 16, 3)


@pytest.mark.parametrize("preset", ["synthetic", "default"])
def test_frame_sample_and_mel_arithmetic_agree(preset):
    hp = hparams.resolve(preset)
    frames = np.arange(0, 400)
    starts = timing.mel_start(frames, hp)
    assert starts.dtype == np.int64 and list(starts) == [timing.mel_start(int(f), hp) for f in frames]
    assert timing.mel_start(hp.fps, hp) == int(round(hp.mel_frames_per_second))
    assert timing.mel_start(1, hp) == int(round(hp.mel_frames_per_second / hp.fps))  # 2.67 -> 3, not 2
    for n in (1, 29, 30, 121):
        samples = timing.num_samples(n, hp)
        assert samples == round(n * hp.sample_rate / float(hp.fps))
        assert timing.frames_in_samples(int(np.ceil(n * hp.sample_rate / float(hp.fps))), hp) == n
        assert timing.frames_in_samples(int(np.ceil(n * hp.sample_rate / float(hp.fps))) - 1, hp) == n - 1
        assert timing.mel_frames(n, hp) == 1 + samples // hp.hop_size
    assert timing.num_frames(timing.seconds(90, hp), hp) == 90
    assert timing.mel_seconds(hp.mel_frames_per_second, hp) == 1.0


def test_window_starts_cover_the_clip_and_a_non_positive_stride_is_refused():
    hp = hparams.resolve("synthetic", overrides={"T": 6, "mel_step_size": 16, "overlap": 2, "mel_overlap": 4})
    assert windows.window_starts(15, hp) == [0, 4, 8, 12]
    assert windows.window_starts(3, hp) == [0]
    assert windows.window_shape(hp) == (6, hp.img_size, hp.img_size, 3)
    with pytest.raises(hparams.HParamsError, match="overlap must be smaller than T"):
        hparams.resolve("synthetic", overrides={"T": 6, "mel_step_size": 16, "overlap": 6})


def test_building_folder_appears_whole_or_not_at_all(tmp_path):
    final, tmp = str(tmp_path / "out" / "clip"), str(tmp_path / ".tmp-clip")
    os.makedirs(tmp)
    open(os.path.join(tmp, "stale"), "w").close()
    with pytest.raises(RuntimeError):
        with atomic.building_folder(final, tmp) as folder:
            open(os.path.join(folder, "0.jpg"), "w").close()
            raise RuntimeError("killed half way")
    assert not os.path.exists(final) and not os.path.exists(tmp)
    with atomic.building_folder(final, tmp) as folder:
        open(os.path.join(folder, "0.jpg"), "w").close()
    assert os.listdir(final) == ["0.jpg"] and not os.path.exists(tmp)


def test_write_files_and_script_mode(tmp_path):
    paths = [str(tmp_path / "a.pb"), str(tmp_path / "b.json")]
    atomic.write_files({paths[0]: b"graph", paths[1]: b"{}"})
    assert [open(p, "rb").read() for p in paths] == [b"graph", b"{}"]
    with pytest.raises(OSError):
        atomic.write_files({paths[0]: b"new", str(tmp_path / "missing" / "c"): b"x"})
    assert open(paths[0], "rb").read() == b"graph"
    assert sorted(os.listdir(str(tmp_path))) == ["a.pb", "b.json"]
    script = str(tmp_path / "run.sh")
    atomic.write_text(script, "#!/bin/sh\n", mode=0o755)
    assert stat.S_IMODE(os.stat(script).st_mode) == 0o755
    with pytest.raises(OSError):
        atomic.check_writable_dir(os.path.join(script, "sub"))
    atomic.check_writable_dir(str(tmp_path / "new" / "dir"))
    assert os.listdir(str(tmp_path / "new" / "dir")) == []


def test_run_dir_of_a_run_or_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    (run / rundir.CHECKPOINTS).mkdir(parents=True)
    assert rundir.run_dir_of(str(run) + "/") == str(run)
    assert rundir.run_dir_of(str(run / rundir.CHECKPOINTS / "model.ckpt-7")) == str(run)


def test_one_list_of_targets():
    from export import targets
    assert tuple(targets.BACKENDS) == devices.TARGETS
    assert set(launch.IMAGES) == set(devices.TARGETS)
    for name in devices.TARGETS:
        assert targets.backend(name).name == name
        assert launch.train_module(name) == devices.train_module(name) == "%s_training.train" % name
    with pytest.raises(devices.UnknownTargetError, match="use one of gpu, npu"):
        targets.backend("tpu")
    with pytest.raises(launch.LaunchError, match="unknown target 'tpu'"):
        launch.train_module("tpu")
