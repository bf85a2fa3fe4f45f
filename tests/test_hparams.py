import json
import re

import pytest

from common.config import hparams


def test_defaults_are_the_reference_values():
    hp = hparams.resolve("default")
    assert (hp.sample_rate, hp.n_fft, hp.hop_size, hp.win_size, hp.num_mels) == (16000, 800, 200, 800, 80)
    assert (hp.fmin, hp.fmax, hp.preemphasis, hp.min_level_db, hp.ref_level_db) == (55, 7600, 0.97, -100, 20)
    assert (hp.T, hp.mel_step_size, hp.img_size, hp.outputs_per_step) == (90, 240, 96, 2)
    assert hp.max_iters == 120
    assert (hp.tacotron_batch_size, hp.tacotron_initial_learning_rate, hp.tacotron_reg_weight) == (24, 1e-3, 1e-7)
    assert hp.prenet_layers == [256, 256] and hp.dropout_rate == 0.5


# Pinned from /work/shared/reference/presets/<name>.json (the original repository's speaker files), so an
# edit to common/config/presets/*.json or to the loader shows up here. enc_conv_channels, enc_conv_kernel_size and
# enc_conv_num_layers are never read by the original's 3D-conv encoder (hparams.IGNORED_PRESET_KEYS);
# tacotron_batch_size is the default 24 where absent.
SHARED_PRESET_VALUES = {"decoder_layers": 2, "mel_step_size": 240, "overlap": 15, "prenet_layers": [256, 256]}
SPEAKER_PRESET_VALUES = {
    "chem": {"T": 90, "fps": 30, "img_size": 96, "mel_overlap": 40, "decoder_lstm_units": 1024,
             "encoder_lstm_units": 384, "enc_conv_num_blocks": 5, "num_init_filters": 24, "tacotron_batch_size": 24,
             "tacotron_teacher_forcing_start_decay": 29000, "tacotron_teacher_forcing_decay_steps": 130000},
    "chess": {"T": 90, "fps": 30, "img_size": 48, "mel_overlap": 40, "decoder_lstm_units": 1024,
              "encoder_lstm_units": 256, "enc_conv_num_blocks": 4, "num_init_filters": 32, "tacotron_batch_size": 24,
              "tacotron_teacher_forcing_start_decay": 75000, "tacotron_teacher_forcing_decay_steps": 200000},
    "dl": {"T": 75, "fps": 25, "img_size": 48, "mel_overlap": 48, "decoder_lstm_units": 256,
           "encoder_lstm_units": 256, "enc_conv_num_blocks": 4, "num_init_filters": 32, "tacotron_batch_size": 24,
           "tacotron_teacher_forcing_start_decay": 29000, "tacotron_teacher_forcing_decay_steps": 100000},
    "eh": {"T": 90, "fps": 30, "img_size": 48, "mel_overlap": 40, "decoder_lstm_units": 1024,
           "encoder_lstm_units": 256, "enc_conv_num_blocks": 4, "num_init_filters": 32, "tacotron_batch_size": 20,
           "tacotron_teacher_forcing_start_decay": 29000, "tacotron_teacher_forcing_decay_steps": 100000},
    "hs": {"T": 90, "fps": 30, "img_size": 48, "mel_overlap": 40, "decoder_lstm_units": 1024,
           "encoder_lstm_units": 256, "enc_conv_num_blocks": 4, "num_init_filters": 32, "tacotron_batch_size": 24,
           "tacotron_teacher_forcing_start_decay": 29000, "tacotron_teacher_forcing_decay_steps": 100000},
}


@pytest.mark.parametrize("name", sorted(SPEAKER_PRESET_VALUES))
def test_speaker_presets_resolve_to_the_pinned_reference_values(name):
    hp = hparams.resolve(name)
    expected = dict(SHARED_PRESET_VALUES, **SPEAKER_PRESET_VALUES[name])
    assert {key: getattr(hp, key) for key in expected} == expected
    assert hp.preset == hp.speaker == name


def test_preset_names_the_preset_the_values_came_from():
    assert [hparams.resolve(name).preset for name in ("default", "synthetic")] == ["default", "synthetic"]


def test_every_reference_key_of_the_preset_files_is_pinned():
    for name in SPEAKER_PRESET_VALUES:
        with open("%s/%s.json" % (hparams.PRESET_DIR, name)) as f:
            keys = set(json.load(f)) - set(hparams.IGNORED_PRESET_KEYS) - {"speaker"}
        assert keys <= set(SHARED_PRESET_VALUES) | set(SPEAKER_PRESET_VALUES[name]), name


def test_preset_window_lengths_agree_with_the_frame_rates():
    for name in hparams.preset_names():
        hp = hparams.resolve(name)
        assert hp.mel_step_size == round(hp.T * hp.mel_frames_per_second / hp.fps), name
        assert hp.mel_step_size % hp.outputs_per_step == 0, name


@pytest.mark.parametrize("preset, overrides, message", [
    # 30 frames at 30 fps = 1 s = 80 mel frames at 16000 / 200 per second, against 240 (3 s).
    ("default", "T=30", "T=30 frames at fps=30 last 1.00 s = 80.0 mel frames, mel_step_size=240 lasts 3.00 s; "
                        "set mel_step_size=80 or T=90"),
    # 30 frames at 25 fps = 1.2 s = 96 mel frames.
    ("dl", "T=30", "T=30 frames at fps=25 last 1.20 s = 96.0 mel frames"),
    # 82 is 2 frames (one decoder step of outputs_per_step=2) off the 80 that T=30 lasts.
    ("default", "T=30,mel_step_size=82", "set mel_step_size=80 or T=30.75"),
    # overlap=15 frames at 30 fps = 0.5 s = 40 mel frames; at 25 fps (dl) = 0.6 s = 48.
    ("default", "mel_overlap=41", "mel_overlap=41 crossfades more than the overlap=15 frames of consecutive "
                                  "windows last (40.0 mel frames); set mel_overlap to at most 40"),
    ("dl", "mel_overlap=49", "(48.0 mel frames); set mel_overlap to at most 48"),
])
def test_a_window_s_face_and_mel_must_cover_the_same_time(preset, overrides, message):
    with pytest.raises(hparams.HParamsError, match=re.escape(message)):
        hparams.resolve(preset, overrides=overrides)


@pytest.mark.parametrize("preset, overrides", [
    ("default", "T=30,mel_step_size=80"), ("dl", "T=30,mel_step_size=96"), ("default", "mel_overlap=40"),
    ("dl", "mel_overlap=48"), ("synthetic", "overlap=5,mel_overlap=13"), ("default", "T=45,mel_step_size=120"),
])
def test_windows_of_equal_time_are_accepted(preset, overrides):
    hparams.resolve(preset, overrides=overrides)


def test_overrides_parse_lists_and_types():
    hp = hparams.resolve("chess", overrides="decoder_lstm_units=256,img_size=48,prenet_layers=[64,32]")
    assert hp.decoder_lstm_units == 256 and hp.img_size == 48 and hp.prenet_layers == [64, 32]
    assert hparams.resolve("default", overrides="fmin=50").fmin == 50
    assert hparams.resolve("default", overrides="preemphasis=1").preemphasis == 1.0


@pytest.mark.parametrize("overrides, message", [
    ("no_such_key=1", "unknown hyperparameter 'no_such_key'"),
    ("img_size=big", "img_size='big' should be a int"),
    ("img_size=4.5", "should be a int"),
    ("prenet_layers=256", "should be a list"),
    ("preemphasize=1", "should be a bool"),
    ("img_size", "is not key=value"),
])
def test_bad_overrides_name_the_problem(overrides, message):
    with pytest.raises(hparams.HParamsError, match=message.replace("[", r"\[")):
        hparams.resolve("default", overrides=overrides)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(hparams.HParamsError, match="unknown preset 'chesss'; choose one of: .*chess.*synthetic"):
        hparams.resolve("chesss")


def test_json_then_overrides_order_and_save_restore(tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"img_size": 64, "fps": 25, "T": 25}))
    hp = hparams.resolve("synthetic", str(extra), "img_size=40")
    assert (hp.img_size, hp.fps) == (40, 25)
    hp.save(str(tmp_path / "hparams.json"))
    assert hparams.load(str(tmp_path / "hparams.json")) == hp
    with pytest.raises(hparams.HParamsError, match="frozen"):
        hp.img_size = 3


def test_hparams_json_records_the_architecture_and_load_refuses_another(tmp_path):
    path = str(tmp_path / "hparams.json")
    hp = hparams.resolve("synthetic")
    hp.save(path)
    with open(path) as f:
        assert json.load(f)["architecture"] == "lip2wav-original-v1"
    assert hparams.load(path) == hp
    with open(path) as f:
        values = json.load(f)
    values["architecture"] = "lip2wav-v0"
    with open(path, "w") as f:
        json.dump(values, f)
    with pytest.raises(hparams.HParamsError, match="is of the network lip2wav-v0, not lip2wav-original-v1"):
        hparams.load(path)
