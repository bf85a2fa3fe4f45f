"""The planted-bug list stays plantable: a refactor that moves a snippet must update its mutation, or
`python -m tests.mutations` would report it stale instead of checking that its test still catches it."""
import os

import pytest

from tests import mutations


@pytest.mark.parametrize("mutation", mutations.MUTATIONS, ids=[m.name for m in mutations.MUTATIONS])
def test_each_mutation_finds_its_snippet_once_and_its_test_file(mutation):
    with open(os.path.join(mutations.ROOT, mutation.path)) as f:
        assert f.read().count(mutation.old) == 1, "update the mutation's snippet in tests/mutations.py"
    assert os.path.isfile(os.path.join(mutations.ROOT, mutation.tests[0]))
    assert mutation.old != mutation.new
