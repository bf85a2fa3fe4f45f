"""Export: frozen graphs for both targets, their checks and boundary errors, ATC, and parity."""
import json
import os
import shutil
import sys

import numpy as np
import pytest

from common.config import hparams
from common.tf_compat import tf
from export import atc, freeze
from export.graph import CheckpointPredictor
from export.infer import FrozenGraphError, FrozenGraphRunner
from gpu_training import train as gpu_train
from npu_training.lint import lint_graph_def

TARGETS = ("gpu", "npu")
BATCH = 2
TINY = ("encoder_lstm_units=16,decoder_lstm_units=32,postnet_channels=16,attention_dim=16,tacotron_batch_size=2,"
        "enc_conv_num_blocks=2,postnet_num_layers=2,decoder_layers=1")


@pytest.fixture(scope="module")
def run_dir(synthetic_data, tmp_path_factory):
    """A two-step run of a shrunken synthetic model."""
    path = str(tmp_path_factory.mktemp("export_run"))
    code = gpu_train.main(["--data", synthetic_data, "--run-dir", path, "--steps", "2", "--checkpoint-every", "2",
                           "--workers", "1", "--hparams", TINY])
    assert code == 0
    return path


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("export_out"))
    manifests = dict((target, freeze.freeze(run_dir, out, target, batch_size=BATCH)) for target in TARGETS)
    return out, manifests


def load_pb(path):
    graph_def = tf.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    return graph_def


@pytest.mark.parametrize("target", TARGETS)
def test_frozen_graph_files_and_manifest(exported, run_dir, target):
    out, manifests = exported
    hp = hparams.load(os.path.join(run_dir, "hparams.json"))
    prefix = os.path.join(out, "lip2wav_%s" % target)
    for ext in (".pb", ".pbtxt", ".json"):
        assert os.path.getsize(prefix + ext) > 0
    with open(prefix + ".json") as f:
        manifest = json.load(f)
    assert manifest == manifests[target]
    assert manifest["input"]["name"] == "face_windows" and manifest["input"]["dtype"] == "float32"
    assert manifest["input"]["shape"] == [BATCH, hp.T, hp.img_size, hp.img_size, 3]
    assert manifest["outputs"][0]["tensor"] == "mel_outputs:0"
    assert manifest["outputs"][0]["shape"] == [BATCH, hp.mel_step_size, hp.num_mels]
    assert manifest["hparams_preset"] == "synthetic" and manifest["hparams"] == hp.to_dict()
    assert manifest["checkpoint"].endswith("model.ckpt-2") and manifest["tf_version"] == tf.version.VERSION
    graph_def = load_pb(prefix + ".pb")
    assert manifest["node_count"] == len(graph_def.node)
    assert manifest["ops"] == sorted(set(n.op for n in graph_def.node))
    assert manifest["size_bytes"] == os.path.getsize(prefix + ".pb")
    placeholders = [n for n in graph_def.node if n.op == "Placeholder"]
    assert [n.name for n in placeholders] == ["face_windows"]
    assert tf.TensorShape(placeholders[0].attr["shape"].shape).as_list() == manifest["input"]["shape"]
    assert not [name for name in os.listdir(out) if ".tmp" in name]


@pytest.mark.parametrize("target", TARGETS)
def test_frozen_graph_holds_no_training_queue_or_pyfunc_ops(exported, target):
    ops = set(n.op for n in load_pb(os.path.join(exported[0], "lip2wav_%s.pb" % target)).node)
    banned = {"Variable", "VariableV2", "VarHandleOp", "Assign", "AssignVariableOp", "SaveV2", "RestoreV2",
              "ApplyAdam", "FIFOQueueV2", "QueueDequeueV2", "PyFunc", "PyFuncStateless", "EagerPyFunc"}
    assert not ops & banned
    assert "Const" in ops


@pytest.mark.parametrize("target", TARGETS)
def test_frozen_graph_has_no_random_op_and_the_manifest_output_shape(exported, run_dir, target):
    out, manifests = exported
    hp = hparams.load(os.path.join(run_dir, "hparams.json"))
    graph_def = load_pb(os.path.join(out, "lip2wav_%s.pb" % target))
    assert not [n.op for n in graph_def.node if n.op.startswith(freeze.RANDOM_OP_PREFIXES)]
    for node in graph_def.node:
        node.attr.pop("_output_shapes", None)
    with tf.Graph().as_default():
        mels, = tf.import_graph_def(graph_def, return_elements=["mel_outputs:0"], name="")
        assert mels.shape.as_list() == manifests[target]["outputs"][0]["shape"] == [
            BATCH, hp.mel_step_size, hp.num_mels]


def test_npu_export_lints_clean_and_gpu_loop_would_not(exported):
    out = exported[0]
    assert lint_graph_def(load_pb(os.path.join(out, "lip2wav_npu.pb")), inference=True) == []
    with pytest.raises(freeze.ExportError, match="NPU graph lint found .*dynamic_size"):
        freeze.check_graph_def(load_pb(os.path.join(out, "lip2wav_gpu.pb")), "npu")


def test_missing_checkpoint_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    code = freeze.main(["--checkpoint", str(tmp_path / "nope" / "model.ckpt-5"), "--target", "npu",
                        "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: checkpoint") and "does not exist" in err and "\n" not in err
    assert not out.exists()


def test_checkpoint_not_matching_its_hparams_is_refused(run_dir, tmp_path, capsys):
    other = tmp_path / "other_run"
    shutil.copytree(run_dir, str(other), ignore=shutil.ignore_patterns("events.*", "plots"))
    hp = hparams.load(str(other / "hparams.json"))
    hp.replace(decoder_lstm_units=48).save(str(other / "hparams.json"))
    out = tmp_path / "out"
    code = freeze.main(["--checkpoint", str(other), "--target", "gpu", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: checkpoint") and "does not match its hparams.json" in err and "\n" not in err
    assert not out.exists() or os.listdir(str(out)) == []


def test_unwritable_out_dir_is_refused(run_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code = freeze.main(["--checkpoint", run_dir, "--target", "npu", "--out", str(blocker / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: cannot write to output directory") and "\n" not in err


FAKE_ATC = """#!{python}
import json, os, sys
with open(os.environ["FAKE_ATC_RECORD"], "w") as f:
    json.dump({{"argv": sys.argv[1:], "cwd": os.getcwd()}}, f)
output = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--output=")][0]
with open(output + ".om", "wb") as f:
    f.write(b"om")
"""


def test_atc_is_run_with_the_right_arguments(exported, tmp_path, monkeypatch):
    out, manifests = exported
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "atc"
    fake.write_text(FAKE_ATC.format(python=sys.executable))
    fake.chmod(0o755)
    record = tmp_path / "argv.json"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_ATC_RECORD", str(record))
    result = atc.convert(out, soc_version="Ascend910B1")
    shape = ",".join(str(d) for d in manifests["npu"]["input"]["shape"])
    expected = ["--model=lip2wav_npu.pb", "--framework=3", "--output=lip2wav_npu", "--soc_version=Ascend910B1",
                "--input_format=ND", "--input_shape=face_windows:%s" % shape, "--out_nodes=mel_outputs:0",
                "--log=error"]
    called = json.loads(record.read_text())
    assert called["argv"] == expected
    assert os.path.samefile(called["cwd"], out)
    assert result["om"] == os.path.join(out, "lip2wav_npu.om") and os.path.isfile(result["om"])
    script = open(os.path.join(out, "atc_command.sh")).read()
    assert "atc " + " ".join(expected) in script
    assert os.access(os.path.join(out, "atc_command.sh"), os.X_OK)


def test_atc_absent_writes_the_script_only(exported, tmp_path, monkeypatch):
    out = str(tmp_path / "copy")
    shutil.copytree(exported[0], out, ignore=shutil.ignore_patterns("*.om", "atc_command.sh"))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = atc.convert(out)
    assert result["om"] is None and result["script"] == os.path.join(out, "atc_command.sh")
    assert "--soc_version=Ascend910 " in open(result["script"]).read()
    assert not [name for name in os.listdir(out) if name.endswith(".om")]


@pytest.mark.parametrize("target", TARGETS)
def test_frozen_runner_matches_checkpoint_predictor(exported, run_dir, target):
    out, manifests = exported
    shape = manifests[target]["input"]["shape"][1:]
    windows = np.random.RandomState(0).rand(BATCH + 1, *shape).astype(np.float32)
    with FrozenGraphRunner(os.path.join(out, "lip2wav_%s.pb" % target)) as runner:
        frozen = runner.predict(windows)
    with CheckpointPredictor(run_dir, target, batch_size=BATCH) as predictor:
        restored = predictor.predict(windows)
    assert frozen.shape == (BATCH + 1,) + tuple(manifests[target]["outputs"][0]["shape"][1:])
    np.testing.assert_allclose(frozen, restored, atol=1e-5, rtol=0)


def test_folding_random_ops_keeps_their_values_and_shapes():
    """A random op becomes a Const of what it draws, its _output_shapes kept (read before the attr map is
    cleared: C++ protobuf, TF 1.15's, frees the entries of a cleared map)."""
    graph = tf.Graph()
    with graph.as_default():
        draw = tf.raw_ops.StatelessRandomUniform(shape=[2, 3], seed=[1, 2], dtype=tf.float32, name="draw")
        tf.identity(draw, name="out")
        with tf.Session(graph=graph) as session:
            drawn = session.run(draw)
            graph_def = freeze.fold_random_ops(session, graph, graph.as_graph_def(add_shapes=True), {})
    node = next(n for n in graph_def.node if n.name == "draw")
    assert node.op == "Const" and not node.input
    np.testing.assert_array_equal(tf.make_ndarray(node.attr["value"].tensor), drawn)
    assert [tf.TensorShape(s).as_list() for s in node.attr["_output_shapes"].list.shape] == [[2, 3]]


@pytest.mark.parametrize("frozen_with", [tf.version.VERSION, "0.0.0-other"])
def test_a_graph_that_does_not_load_names_the_fix(exported, tmp_path, frozen_with):
    """A graph with an op this TensorFlow lacks (as TF 2's new op names are to TF 1.15) is refused in one line,
    which says to re-freeze it when the manifest names another TensorFlow."""
    out, manifests = exported
    graph_def = load_pb(os.path.join(out, "lip2wav_npu.pb"))
    next(n for n in graph_def.node if n.op == "Const").op = "OpOfAnotherTensorFlow"
    pb = str(tmp_path / "lip2wav_npu.pb")
    with open(pb, "wb") as f:
        f.write(graph_def.SerializeToString())
    with open(str(tmp_path / "lip2wav_npu.json"), "w") as f:
        json.dump(dict(manifests["npu"], tf_version=frozen_with), f)
    with pytest.raises(FrozenGraphError) as raised:
        FrozenGraphRunner(pb)
    message = str(raised.value)
    assert "\n" not in message
    if frozen_with == tf.version.VERSION:
        assert "pass a graph made by export.freeze" in message
    else:
        assert ("frozen with TensorFlow 0.0.0-other and does not load in TensorFlow %s" % tf.version.VERSION
                in message and "re-freeze it with this TensorFlow" in message and "export.freeze" in message)
