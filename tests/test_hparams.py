import json

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


@pytest.mark.parametrize("name", ["chem", "chess", "dl", "eh", "hs"])
def test_speaker_presets_match_the_reference_files(name):
    hp = hparams.resolve(name)
    with open("%s/%s.json" % (hparams.PRESET_DIR, name)) as f:
        reference = json.load(f)
    for key, value in reference.items():
        if key not in hparams.IGNORED_PRESET_KEYS and key != "speaker":
            assert getattr(hp, key) == value, key
    assert hp.speaker == name


def test_preset_window_lengths_agree_with_the_frame_rates():
    for name in hparams.preset_names():
        hp = hparams.resolve(name)
        assert hp.mel_step_size == round(hp.T * hp.mel_frames_per_second / hp.fps), name
        assert hp.mel_step_size % hp.outputs_per_step == 0, name


def test_overrides_parse_lists_and_types():
    hp = hparams.resolve("chess", overrides="decoder_lstm_units=256,img_size=48,enc_conv_kernel_size=[3,3,3]")
    assert hp.decoder_lstm_units == 256 and hp.img_size == 48 and hp.enc_conv_kernel_size == [3, 3, 3]
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
    extra.write_text(json.dumps({"img_size": 64, "fps": 25}))
    hp = hparams.resolve("synthetic", str(extra), "img_size=40")
    assert (hp.img_size, hp.fps) == (40, 25)
    hp.save(str(tmp_path / "hparams.json"))
    assert hparams.load(str(tmp_path / "hparams.json")) == hp
    with pytest.raises(hparams.HParamsError, match="frozen"):
        hp.img_size = 3
