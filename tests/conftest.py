"""Shared fixtures: a small synthetic speaker made once per test session."""
import os

import pytest

from common import hparams, synthetic


@pytest.fixture(scope="session")
def synthetic_hp():
    return hparams.resolve("synthetic")


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory, synthetic_hp):
    data_dir = str(tmp_path_factory.mktemp("synthetic_speaker"))
    synthetic.make_speaker(data_dir, synthetic_hp, num_clips=10, seconds=2.0, seed=0)
    assert os.path.isfile(os.path.join(data_dir, "train.txt"))
    return data_dir
