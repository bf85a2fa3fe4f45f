"""`invoke import-checkpoint` on the checkpoint the ORIGINAL Lip2Wav code wrote (../shared/fixtures/original_lip2wav):
every model variable arrives with the original's values (read back with tf.train.load_checkpoint, not with the
importer), the run directory predicts the original's mels and alignments, and synthesize, export and training
accept it. A checkpoint in the Ascend port's style (made here from the fixture's list by the port's rules) is
recognised and refused with its differences printed; one lacking a model variable is refused, nothing written.
"""
import contextlib
import io
import json
import os
import re

import numpy as np
import pytest

from common.config import hparams as hparams_lib
from common.tf_compat import tf
from tests.conftest import error_line, run_invoke

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "..", "shared", "fixtures", "original_lip2wav")
PREFIX = os.path.join(FIXTURE, "tacotron_model.ckpt-3")
pytestmark = pytest.mark.skipif(not os.path.isfile(PREFIX + ".index"),
                                reason="../shared/fixtures/original_lip2wav (the original's checkpoint) is absent: "
                                       "this checkout is not beside the shared reference folder")
# The original keeps the prenet's dropout on at inference; the fixture's main arrays were made with it off.
PRENET_DROPOUT_OFF = {"prenet_dropout_at_inference": False}


def fixture_variables():
    with open(os.path.join(FIXTURE, "variables.json")) as f:
        return json.load(f)["variables"]


def model_names():
    """The fixture's model variables: neither Adam state nor the step (the list says which is which)."""
    return [v["name"] for v in fixture_variables()
            if not v["optimizer_slot"] and v["name"] != "global_step" and not v["name"].endswith("_power")]


@pytest.fixture(scope="module")
def overrides(tmp_path_factory):
    """The fixture's configuration: its recorded overrides of the chess preset, as a --hparams-json file."""
    with open(os.path.join(FIXTURE, "hparams.json")) as f:
        recorded = json.load(f)["overrides"]
    recorded.update(PRENET_DROPOUT_OFF)
    path = str(tmp_path_factory.mktemp("fixture_hparams") / "overrides.json")
    with open(path, "w") as f:
        json.dump(recorded, f)
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory, overrides):
    """(run directory, stdout) of the import as a user types it, from the fixture's folder (module scope: no
    capsys, so stdout is captured here)."""
    from invoke import Collection, Program
    import tasks
    run = str(tmp_path_factory.mktemp("imported") / "run")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        Program(namespace=Collection.from_module(tasks), binary="invoke").run(
            ["invoke", "import-checkpoint", "--checkpoint", FIXTURE, "--preset", "chess", "--hparams-json", overrides,
             "--run-dir", run], exit=False)
    return run, out.getvalue()


def newest_prefix(run):
    return tf.train.latest_checkpoint(os.path.join(run, "checkpoints"))


def test_fixture_import_holds_every_model_variable_with_the_originals_values(imported):
    run, stdout = imported
    assert newest_prefix(run) is not None, stdout
    theirs, ours = tf.train.load_checkpoint(PREFIX), tf.train.load_checkpoint(newest_prefix(run))
    names = model_names()
    assert len(names) == 134 - 3  # the fixture's README: 134 without Adam slots, less the beta powers and the step
    for name in names:
        assert ours.has_tensor(name), name
        np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name), err_msg=name)
    assert ours.get_variable_to_dtype_map()["global_step"] != tf.int32  # cast to ours
    assert int(ours.get_tensor("global_step")) == 3
    assert "style: original Lip2Wav" in stdout
    assert "model: %d of %d variables mapped" % (len(names), len(names)) in stdout
    assert "not mapped:" not in stdout and "missing:" not in stdout


def test_fixture_import_maps_the_adam_state(imported):
    run, stdout = imported
    theirs, ours = tf.train.load_checkpoint(PREFIX), tf.train.load_checkpoint(newest_prefix(run))
    ours_names = list(ours.get_variable_to_shape_map())
    slots = [v["name"] for v in fixture_variables() if v["optimizer_slot"]]
    assert slots and "optimizer: %d Adam variables mapped" % (len(slots) + 2) in stdout
    for name in slots + ["Tacotron_model/beta1_power", "Tacotron_model/beta2_power"]:
        tail = name[len("Tacotron_model/"):]  # the original builds its optimizer inside the model scope
        (match,) = [n for n in ours_names if n == tail or n.endswith("/" + tail)]
        np.testing.assert_array_equal(ours.get_tensor(match), theirs.get_tensor(name), err_msg=name)


def write_checkpoint(prefix, tensors):
    """Save {name: array} as a TF1 checkpoint at ``prefix`` (what another code base would have written)."""
    with tf.Graph().as_default():
        variables = dict((name, tf.Variable(value, name="v%d" % i)) for i, (name, value) in enumerate(tensors.items()))
        with tf.Session() as session:
            session.run(tf.global_variables_initializer())
            tf.train.Saver(variables).save(session, prefix)


def fixture_tensors():
    reader = tf.train.load_checkpoint(PREFIX)
    return dict((name, reader.get_tensor(name)) for name in reader.get_variable_to_shape_map())


def assert_refused(capsys, checkpoint, overrides, tmp_path):
    run = tmp_path / "run"
    code, stdout, stderr = run_invoke(capsys, "import-checkpoint", "--checkpoint", checkpoint, "--preset", "chess",
                                      "--hparams-json", overrides, "--run-dir", str(run))
    assert code == 2, stderr
    line = error_line(stderr)
    assert not run.exists() and not [p for p in os.listdir(str(tmp_path)) if p.startswith(".tmp")]
    return stdout, line


def test_a_checkpoint_missing_a_model_variable_is_refused(capsys, overrides, tmp_path):
    tensors = fixture_tensors()
    dropped = "Tacotron_model/inference/memory_layer/kernel"
    del tensors[dropped]
    write_checkpoint(str(tmp_path / "ckpt" / "tacotron_model.ckpt-3"), tensors)
    stdout, line = assert_refused(capsys, str(tmp_path / "ckpt" / "tacotron_model.ckpt-3"), overrides, tmp_path)
    assert [l for l in stdout.splitlines() if l.startswith("missing:")] == [
        "missing: %s [320, 32]" % dropped]
    assert "1 model variable(s) missing" in line


def port_name(name):
    """The Ascend port's name for an original variable: its decoder lives in a name scope (no 'decoder/')."""
    return name.replace("/inference/decoder/", "/inference/", 1)


def test_an_ascend_port_checkpoint_is_recognised_and_its_differences_printed(capsys, overrides, tmp_path):
    tensors = {}
    for name, value in fixture_tensors().items():
        if "postnet_convolutions" in name and "batch_normalization" in name:
            continue  # the port's postnet has no batch norm
        if re.search(r"/attention_(variable_projection|bias)(/Adam(_1)?)?$", name):
            value = value.reshape([1, 1, -1])
        tensors[port_name(name)] = value
    prefix = str(tmp_path / "port" / "model.ckpt-3")
    write_checkpoint(prefix, tensors)
    stdout, line = assert_refused(capsys, str(tmp_path / "port"), overrides, tmp_path)
    assert "style: Ascend port" in stdout
    ports = [l for l in stdout.splitlines() if l.startswith("port: ")]
    assert len(ports) == 5 and any("skip the ReLU" in l for l in ports) and any("no batch norm" in l for l in ports)
    postnet_bn = [n for n in model_names() if "postnet_convolutions" in n and "batch_normalization" in n]
    missing = [l.split()[1] for l in stdout.splitlines() if l.startswith("missing:")]
    assert sorted(missing) == sorted(postnet_bn) and len(missing) == 20
    reshaped = [port_name(n) for n in model_names() if re.search(r"attention_(variable_projection|bias)$", n)]
    assert "(2 reshaped: %s)" % ", ".join(sorted(reshaped)) in stdout
    assert "20 model variable(s) missing" in line
    assert "not mapped:" not in stdout


def test_a_folder_without_a_checkpoint_is_refused(capsys, overrides, tmp_path):
    (tmp_path / "empty").mkdir()
    _, line = assert_refused(capsys, str(tmp_path / "empty"), overrides, tmp_path)
    assert "holds no checkpoint" in line


def test_an_existing_run_directory_is_not_overwritten(capsys, overrides, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "hparams.json").write_text("{}")
    code, _, stderr = run_invoke(capsys, "import-checkpoint", "--checkpoint", FIXTURE, "--hparams-json", overrides,
                                 "--run-dir", str(tmp_path / "run"))
    assert code == 2 and "already exists" in error_line(stderr)
    assert os.listdir(str(tmp_path / "run")) == ["hparams.json"]


@pytest.mark.parametrize("target", ["gpu", "npu"])
def test_the_imported_run_predicts_the_originals_mels_and_alignments(imported, target):
    from export.graph import CheckpointPredictor
    run, _ = imported
    expected = np.load(os.path.join(FIXTURE, "fixture.npz"))
    windows = expected["frames_uint8_bgr"].astype(np.float32) / 255  # what the original feeds (BGR, /255)
    with CheckpointPredictor(run, target, batch_size=len(windows)) as predictor:
        mels, alignments = predictor.predict(windows, with_alignments=True)
    np.testing.assert_allclose(mels, expected["mel_output"], atol=1e-4, rtol=0)
    # ours are [B, decoder steps, T]; the original transposes them to [B, T, decoder steps]
    np.testing.assert_allclose(np.swapaxes(alignments, 1, 2), expected["alignments"], atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def speaker(tmp_path_factory, imported):
    """Synthetic clips at the imported run's crop size and window length."""
    from common.synthetic import astronaut
    run, _ = imported
    data = str(tmp_path_factory.mktemp("speaker"))
    astronaut.make_speaker(data, hparams_lib.load(os.path.join(run, "hparams.json")), num_clips=5, seconds=3.5)
    return data


def test_export_synthesize_and_evaluate_accept_the_imported_run(imported, speaker, tmp_path, capsys):
    run, _ = imported
    code, _, stderr = run_invoke(capsys, "export", "--checkpoint", run, "--target", "npu", "--out",
                                 str(tmp_path / "export"))
    assert code == 0, stderr
    assert "lip2wav_npu.pb" in os.listdir(str(tmp_path / "export"))
    clip = os.path.join(speaker, "preprocessed", sorted(os.listdir(os.path.join(speaker, "preprocessed")))[0])
    out = str(tmp_path / "speech.wav")
    code, stdout, stderr = run_invoke(capsys, "synthesize", "--checkpoint", run, "--video", clip, "--out", out,
                                      "--batch-size", "1")
    assert code == 0, stderr
    assert os.path.getsize(out) > 44
    code, stdout, stderr = run_invoke(capsys, "evaluate", "--checkpoint", run, "--data", speaker, "--split", "test",
                                      "--out", str(tmp_path / "eval"), "--batch-size", "1")
    assert code == 0, stderr
    assert os.path.isfile(str(tmp_path / "eval" / "summary.json"))


def test_training_fine_tunes_the_imported_run_from_its_step(imported, speaker, tmp_path):
    import shutil
    from gpu_training import train
    run = str(tmp_path / "run")
    shutil.copytree(imported[0], run)
    code = train.main(["--data", speaker, "--run-dir", run, "--steps", "4", "--log-every", "1", "--workers", "1"])
    assert code == 0
    assert sorted(os.listdir(os.path.join(run, "checkpoints")))[-1].startswith("model.ckpt-4.")
    with open(os.path.join(run, "train_log.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [4]
