"""Each on-disk layout has one owner module: its entry names are typed there and nowhere else in the tree.

A name retyped in a second module drifts from the owner's (the bench --inference crash came from that), so
every other module must reach the entry through the owner. Tests are left out: they type the names on purpose,
as the oracle. To give a new layout an owner, add a row to OWNERS.
"""
import ast
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (owner module, names it alone may type). Names in GENERIC are ordinary words too (a dict key, a table
# label), so only their use as a path part counts: an argument of *.join(...) or an operand of Path's `/`.
OWNERS = [
    ("common/training/rundir.py", (
        "hparams.json", "checkpoints", "model.ckpt", "checkpoint", "corrupt", "plots", "loss.png",
        "train_log.jsonl", "train_log.rank%d.jsonl", "run_summary.json", "distribution.json", "rank_table.json",
        "eval-%s", "summary.json", "scores.csv", "wavs", "export", "bench.json", "report.html")),
    ("common/data/datadir.py", (
        "preprocessed", ".tmp", "%d.jpg", ".jpg", "audio.wav", "mels.npz", "spec", "boxes.npy", "transcript.align",
        "train", "val", "test", "%s.txt", "crop_style.txt", "preprocess_report.json", "sync_offsets.png", "videos",
        ".part-", "intervals", "cut-", ".done", "download_report.json", "alignments", "align", ".align")),
    ("export/freeze.py", ("lip2wav_%s",)),
    ("export/atc.py", ("atc_command.sh", ".om")),
]
GENERIC = {"checkpoints", "checkpoint", "corrupt", "plots", "wavs", "export",
           ".jpg", "train", "val", "test", "videos", "alignments"}


def python_files():
    listed = subprocess.check_output(["git", "ls-files", "*.py"], cwd=ROOT, universal_newlines=True).split()
    return [path for path in listed if not path.startswith("tests/") and os.path.isfile(os.path.join(ROOT, path))]


def _path_parts(tree):
    """ids of the string constants used as path parts in ``tree``."""
    parts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
            parts.update(id(arg) for arg in node.args)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            parts.update((id(node.left), id(node.right)))
    return parts


def literals(source, owner=False):
    """Layout-relevant string literals of a module: every constant, and GENERIC words only as path parts
    (with ``owner``, every constant: an owner defines its names)."""
    tree = ast.parse(source)
    parts = _path_parts(tree)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if owner or node.value not in GENERIC or id(node) in parts:
                found.add(node.value)
    return found


def typed_where(files):
    """{name: [modules that type it]} for every owned name."""
    owned = set(name for _, names in OWNERS for name in names)
    own = dict((owner, set(names)) for owner, names in OWNERS)
    where = dict((name, []) for name in owned)
    for path in files:
        with open(os.path.join(ROOT, path)) as f:
            source = f.read()
        found = literals(source) | (literals(source, owner=True) & own.get(path, set()))
        for name in found & owned:
            where[name].append(path)
    return where


@pytest.mark.parametrize("owner,names", OWNERS, ids=[owner for owner, _ in OWNERS])
def test_each_layout_name_is_typed_only_by_its_owner(owner, names):
    where = typed_where(python_files())
    wrong = dict((name, where[name]) for name in names if where[name] != [owner])
    assert not wrong, "typed outside %s (use its constant): %s" % (owner, wrong)


def test_literals_sees_path_parts_and_not_other_uses_of_a_generic_word():
    source = ('import os\nx = os.path.join(run, "plots")\ny = {"plots": 1}\nz = Path(run) / "export"\n'
              'w = "run_summary.json"\n')
    assert literals(source) & (GENERIC | {"run_summary.json"}) == {"plots", "export", "run_summary.json"}
