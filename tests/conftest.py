"""Shared fixtures: a small synthetic speaker made once per test session; the `slow` and `workstation` markers."""
import os

import pytest

from common.config import hparams
from common.synthetic import astronaut as synthetic
from common.tf_compat import tf
from export import graph

SLOW_ENV = "LIP2WAV_SLOW_TESTS"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (minutes each; same as %s=1)" % SLOW_ENV)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes minutes (real training); runs with --runslow or %s=1"
                            % SLOW_ENV)
    config.addinivalue_line("markers", "workstation: needs a package or tool only the workstation stack has "
                            "(requirements.txt: vermin, docker, invoke, ...); the TF 1.15 lane (.ci/tf115) lists "
                            "and leaves it out")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get(SLOW_ENV) == "1":
        return
    skip = pytest.mark.skip(reason="slow (minutes of real training): run with --runslow or %s=1" % SLOW_ENV)
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def two_hosts():
    """Two hosts on this machine (tests/hosts.py) for one several-hosts test module; all of it removed after."""
    from tests import hosts as hosts_lib

    made = hosts_lib.Hosts()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def synthetic_hp():
    return hparams.resolve("synthetic")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory, synthetic_hp):
    data_dir = str(tmp_path_factory.mktemp("synthetic_speaker"))
    synthetic.make_speaker(data_dir, synthetic_hp, num_clips=10, seconds=2.0, seed=0)
    assert os.path.isfile(os.path.join(data_dir, "train.txt"))
    return data_dir


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory):
    """A run directory with a random-weight checkpoint: fast, and enough to test the plumbing."""
    run = str(tmp_path_factory.mktemp("untrained_run"))
    hp = hparams.resolve("synthetic")
    os.makedirs(os.path.join(run, "checkpoints"))
    hp.save(os.path.join(run, "hparams.json"))
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        graph.build_inference_graph(hp, "gpu", 1)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, os.path.join(run, "checkpoints", "model.ckpt"), global_step=1)
    return run


def run_entrypoint(capsys, main, *args):
    """An entrypoint in-process (no TensorFlow start-up per call): (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_invoke(capsys, *argv):
    """`invoke ARGV...` parsed and run by invoke's own Program in-process: (exit code, stdout, stderr)."""
    from invoke import Collection, Program

    import tasks
    capsys.readouterr()
    try:
        Program(namespace=Collection.from_module(tasks), binary="invoke").run(["invoke"] + list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(stderr):
    """The single `error: ...` line a boundary failure must print."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]
