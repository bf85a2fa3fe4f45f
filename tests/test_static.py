"""Static checks that keep image code runnable on TF 1.15 / Python 3.7 without running it there.

(a) Python 3.7 syntax and stdlib (vermin, plus ast with feature_version=(3, 7));
(b) every ``tf.<name>`` chain and its keyword arguments exist in TensorFlow 1.15, no tf.contrib,
    TensorFlow imported only by common/tf_compat.py;
(c) import layering between the trees and between the layers inside common/, no import circle
    anywhere, npu_bridge only lazily inside npu_training.
Each checker is also run on bad snippets, so a silent checker cannot pass.
"""
import ast
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_PACKAGES = ("common", "gpu_training", "npu_training", "export")
IMAGE_CONTAINER_FILES = ("containers/__init__.py", "containers/launch.py")
API_PATH = os.path.join(ROOT, "tests", "tf1_15_api.txt")
SIGNATURES_PATH = os.path.join(ROOT, "tests", "tf1_15_signatures.tsv")
TF_COMPAT = "common/tf_compat.py"
TF_MODULES = ("tensorflow", "tensorflow.compat.v1")


def image_files():
    """Repo-relative paths of the .py files that run inside the device images (see .dockerignore)."""
    return python_files(ROOT, IMAGE_PACKAGES) + list(IMAGE_CONTAINER_FILES)


def python_files(root, packages):
    found = []
    for package in packages:
        for folder, subdirs, files in os.walk(os.path.join(root, package)):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__" and not d.startswith("."))
            found.extend(os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
                         for f in sorted(files) if f.endswith(".py"))
    return found


def read(relpath):
    with open(os.path.join(ROOT, relpath)) as f:
        return f.read()


# ---------------------------------------------------------------- (a) Python 3.7

def vermin_executable():
    candidate = os.path.join(os.path.dirname(sys.executable), "vermin")
    return candidate if os.path.isfile(candidate) else shutil.which("vermin")


def vermin_violations(paths):
    """Lines vermin reports for code that needs more than Python 3.7 (empty when all is fine)."""
    exe = vermin_executable()
    assert exe, "vermin is not installed; pip install -r requirements.txt"
    cmd = [exe, "--no-config-file", "-t=3.7-", "--violations", "--no-tips", "--eval-annotations",
           "--feature", "fstring-self-doc", "-vvv", "-p=1"] + list(paths)
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if result.returncode == 0:
        return []
    lines = [line.rstrip() for line in result.stdout.splitlines() if line.strip()]
    detail = [line for line in lines if line.startswith(" ") or "requires" in line or "Error" in line]
    return detail or lines


def syntax_problems(source, relpath):
    try:
        tree = ast.parse(source, relpath, feature_version=(3, 7))
        compile(tree, relpath, "exec")
    except SyntaxError as exc:
        return ["%s:%s: %s" % (relpath, exc.lineno, exc.msg)]
    return []


@pytest.mark.workstation  # vermin, ast feature_version (3.8+)
def test_image_code_is_python37_per_vermin():
    paths = [os.path.join(ROOT, relpath) for relpath in image_files()]
    violations = vermin_violations(paths)
    assert not violations, "code needs more than Python 3.7:\n" + "\n".join(violations)


@pytest.mark.workstation  # vermin, ast feature_version (3.8+)
def test_image_code_parses_as_python37():
    problems = [p for relpath in image_files() for p in syntax_problems(read(relpath), relpath)]
    assert not problems, "\n".join(problems)


@pytest.mark.workstation  # vermin, ast feature_version (3.8+)
def test_python37_checks_catch_newer_code(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import math\nif (n := 3):\n    print(f'{n=}', math.prod([n]))\n"
                   "def f(items: list[int]) -> dict[str, int]:\n    return {}\n")
    violations = "\n".join(vermin_violations([str(bad)]))
    for needle in ("named expressions", "self-documenting fstrings", "math.prod", "list[..]"):
        assert needle in violations
    assert syntax_problems(bad.read_text(), "bad.py")
    good = tmp_path / "good.py"
    good.write_text("from typing import List\n\ndef f(items: List[int]) -> int:\n    return len(items)\n")
    assert vermin_violations([str(good)]) == []
    assert syntax_problems(good.read_text(), "good.py") == []


# ---------------------------------------------------------------- (b) TensorFlow 1.15 names

def load_api():
    """TF 1.15 public names, and the subset that are namespaces (have listed children)."""
    with open(API_PATH) as f:
        names = set(line.strip() for line in f if line.strip() and not line.startswith("#"))
    namespaces = set(["tf"])
    for name in names:
        parts = name.split(".")
        namespaces.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return names, namespaces


def load_signatures():
    """name -> (parameter names, takes *args, takes **kwargs)."""
    signatures = {}
    with open(SIGNATURES_PATH) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t") + ["", "", ""]
            name, params, star, starstar = cols[:4]
            signatures[name] = (set(p for p in params.split(",") if p), bool(star), bool(starstar))
    return signatures


API, NAMESPACES = load_api()
SIGNATURES = load_signatures()


def package_of(relpath):
    parts = relpath[:-len(".py")].split("/")
    return parts[:-1]


def imports(tree, relpath):
    """(absolute module, line, at module top level) of every import; relative ones resolved."""
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, not in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package_of(relpath)[:len(package_of(relpath)) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module
                found.append((module, child.lineno, not in_function))
                if not child.module:
                    found.extend(("%s.%s" % (module, alias.name), child.lineno, not in_function)
                                 for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def tf_aliases(tree, relpath):
    """Local names bound to the TF1 API root in this module."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:
                module = ".".join(package_of(relpath)[:len(package_of(relpath)) - (node.level - 1)] + [module or ""])
            if module == "common.tf_compat":
                aliases.update(alias.asname or alias.name for alias in node.names if alias.name == "tf")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in TF_MODULES and (alias.asname or alias.name == "tensorflow"):
                    aliases.add(alias.asname or alias.name)
    return aliases


def dotted(node):
    """['a', 'b', 'c'] for the expression a.b.c, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return [node.id] + parts[::-1]
    return None


def chain_problem(parts):
    """Why tf.<parts> is not TensorFlow 1.15, or None.

    Attributes of a listed non-namespace (a class, function or constant) cannot be checked here.
    """
    name = "tf"
    for part in parts:
        candidate = name + "." + part
        if candidate == "tf.contrib":
            return "tf.contrib does not exist in TensorFlow 2; use a tf.* equivalent"
        if candidate in API:
            name = candidate
            continue
        if name in NAMESPACES:
            return "%s is not a TensorFlow 1.15 name (tests/tf1_15_api.txt)" % candidate
        return None
    return None


def tf_problems(source, relpath):
    """TF names and keyword arguments that TensorFlow 1.15 lacks, and direct TensorFlow imports."""
    tree = ast.parse(source, relpath)
    problems = []
    for module, line, _ in imports(tree, relpath):
        if module and module.split(".")[0] == "tensorflow":
            if ".contrib" in module:
                problems.append("%s:%d: imports %s; tf.contrib does not exist in TensorFlow 2" % (relpath, line, module))
            elif relpath != TF_COMPAT:
                problems.append("%s:%d: imports %s; use `from common.tf_compat import tf` "
                                "(RewriterConfig is re-exported there too)" % (relpath, line, module))
    aliases = tf_aliases(tree, relpath)
    parents = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(parents.get(node), ast.Attribute):
            parts = dotted(node)
            if parts and parts[0] in aliases:
                problem = chain_problem(parts[1:])
                if problem:
                    problems.append("%s:%d: %s" % (relpath, node.lineno, problem))
        if isinstance(node, ast.Call):
            parts = dotted(node.func)
            if not parts or parts[0] not in aliases:
                continue
            name = ".".join(["tf"] + parts[1:])
            if name not in SIGNATURES:
                continue
            params, star, starstar = SIGNATURES[name]
            if starstar:
                continue
            for keyword in node.keywords:
                if keyword.arg is not None and keyword.arg not in params:
                    problems.append("%s:%d: %s() has no keyword %r in TensorFlow 1.15"
                                    % (relpath, node.lineno, name, keyword.arg))
            starred = any(isinstance(arg, ast.Starred) for arg in node.args)
            if not star and not starred and len(node.args) > len(params):
                problems.append("%s:%d: %s() takes at most %d positional arguments in TensorFlow 1.15"
                                % (relpath, node.lineno, name, len(params)))
    return problems


def test_tf_names_and_keywords_exist_in_tf_1_15():
    problems = [p for relpath in image_files() for p in tf_problems(read(relpath), relpath)]
    assert not problems, "\n".join(problems)


def test_tf_compat_is_the_only_tensorflow_import():
    source = read(TF_COMPAT)
    assert "import tensorflow.compat.v1 as tf" in source and "disable_v2_behavior()" in source


BAD_TF = """\
from common.tf_compat import tf
from common.tf_compat import tf as T
import tensorflow as tf2

def build(x, cell, helper):
    out = tf.contrib.seq2seq.dynamic_decode(helper)
    layer = tf.keras.layers.EinsumDense("ab,bc->ac", output_shape=4)
    arr = tf.experimental.numpy.zeros(3)
    y = tf.layers.dense(x, units=3, bogus=1)
    z = T.nn.rnn_cell.NoSuchCell(4)
    p = tf.placeholder(tf.float32, None, "x", 4)
    return tf2.ones(3)
"""

GOOD_TF = """\
from common.tf_compat import tf

def build(x, cells):
    y = tf.layers.dense(x, units=3, name="d", activation=tf.nn.relu)
    keys = tf.GraphKeys.TRAINABLE_VARIABLES
    cell = tf.nn.rnn_cell.LSTMCell(4, any_keyword_goes_to_kwargs=1)
    dtype = tf.float32.as_numpy_dtype
    return tf.group(*cells, name="g"), tf.train.AdamOptimizer(1e-3, beta1=0.9).minimize(y)
"""


def test_tf_checker_catches_tf2_only_and_contrib_code():
    problems = "\n".join(tf_problems(BAD_TF, "gpu_training/bad.py"))
    assert "gpu_training/bad.py:3: imports tensorflow" in problems
    assert ":6: tf.contrib does not exist" in problems
    assert ":7: tf.keras.layers.EinsumDense is not a TensorFlow 1.15 name" in problems
    assert ":8: tf.experimental.numpy is not a TensorFlow 1.15 name" in problems
    assert ":9: tf.layers.dense() has no keyword 'bogus'" in problems
    assert ":10: tf.nn.rnn_cell.NoSuchCell is not" in problems
    assert ":11: tf.placeholder() takes at most 3 positional arguments" in problems
    assert ":12: tf.ones" not in problems  # tf2 is flagged at its import, and tf.ones exists
    assert tf_problems(GOOD_TF, "gpu_training/good.py") == []
    assert tf_problems("import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()\n", TF_COMPAT) == []
    contrib = tf_problems("import tensorflow.contrib.seq2seq as s\n", TF_COMPAT)
    assert contrib and "tf.contrib does not exist" in contrib[0]


# ---------------------------------------------------------------- (c) import layering

PACKAGES = IMAGE_PACKAGES + ("containers",)
FORBIDDEN = {
    "common": ("gpu_training", "npu_training", "export", "containers", "tasks"),
    "gpu_training": ("npu_training", "export", "containers", "tasks"),
    "npu_training": ("gpu_training", "export", "containers", "tasks"),
    # The launch plan (containers/launch.py: pure functions, shipped in the images) serves the bench's
    # multi-process runs too; the host's Docker plumbing stays above export.
    "export": ("containers.engine", "containers.standin", "tasks"),
    "containers": ("tasks",),
}
# Layers inside common/, lowest first: a module may import its own layer and the ones below, never above.
COMMON_LAYERS = (
    ("base", ("common.errors", "common.atomic", "common.tf_compat", "common.cli", "common.devices",
              "common.emulation", "common.plotting", "common.progress")),
    ("config", ("common.config",)),
    ("data/model", ("common.data", "common.model")),
    ("prep", ("common.prep",)),
    ("synthetic", ("common.synthetic",)),
    ("training", ("common.training",)),
)


def common_layer(module):
    """(rank, name) of a common.* module's layer; None outside common/."""
    for rank, (name, prefixes) in enumerate(COMMON_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank, name
    return None


def module_name(relpath):
    parts = relpath[:-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree, relpath, known):
    """(imported module, line, at top level) per import; ``from pkg import mod`` counts as importing pkg.mod
    when that is a module of ``known``."""
    found = []
    for module, line, top_level in imports(tree, relpath):
        found.append((module, line, top_level))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                candidate = "%s.%s" % (node.module, alias.name)
                if candidate in known:
                    found.append((candidate, node.lineno, None))
    return found


def layering_problems(source, relpath):
    tree = ast.parse(source, relpath)
    package = relpath.split("/")[0]
    own_layer = common_layer(module_name(relpath))
    problems = []
    for module, line, top_level in imports(tree, relpath):
        root = (module or "").split(".")[0]
        if any(module == f or (module or "").startswith(f + ".") for f in FORBIDDEN.get(package, ())):
            problems.append("%s:%d: %s must not import %s" % (relpath, line, package, module))
        if root == "npu_bridge":
            if package != "npu_training":
                problems.append("%s:%d: npu_bridge is imported outside npu_training" % (relpath, line))
            elif top_level:
                problems.append("%s:%d: npu_bridge is imported at module level; import it inside the function "
                                "that needs it" % (relpath, line))
    if own_layer is not None:
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = ["%s.%s" % (node.module, alias.name) for alias in node.names] + [node.module]
            for target in targets:
                layer = common_layer(target)
                if layer is not None and layer[0] > own_layer[0]:
                    problems.append("%s:%d: common layer %s must not import %s (layer %s is above it)"
                                    % (relpath, node.lineno, own_layer[1], target, layer[1]))
                    break
    return problems


def test_import_layering():
    problems = [p for relpath in image_files() for p in layering_problems(read(relpath), relpath)]
    assert not problems, "\n".join(problems)


def import_graph(root, packages, extra=("tasks.py",)):
    """{module: set of project modules it imports, at module level or inside functions}."""
    relpaths = python_files(root, packages) + [f for f in extra if os.path.isfile(os.path.join(root, f))]
    known = set(module_name(relpath) for relpath in relpaths)
    graph = {}
    for relpath in relpaths:
        with open(os.path.join(root, relpath)) as f:
            tree = ast.parse(f.read(), relpath)
        graph[module_name(relpath)] = set(m for m, _, _ in imported_modules(tree, relpath, known)
                                          if m in known and m != module_name(relpath))
    return graph


def import_cycles(graph):
    """Every import circle, as a list of modules (first repeated at the end); empty when acyclic."""
    cycles, state, stack = [], {}, []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_no_import_circle_anywhere():
    graph = import_graph(ROOT, PACKAGES)
    assert "common.data.dataset" in graph and "containers.launch" in graph and "tasks" in graph
    cycles = import_cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_cycle_finder_catches_a_planted_circle(tmp_path):
    for relpath, source in (("common/__init__.py", ""), ("common/a.py", "from common import b\n"),
                            ("common/b.py", "def f():\n    import common.c\n"),
                            ("common/c.py", "from common.a import x\n"), ("common/d.py", "import common.a\n")):
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text(source)
    cycles = import_cycles(import_graph(str(tmp_path), ("common",)))
    assert cycles == [["common.a", "common.b", "common.c", "common.a"]]
    (tmp_path / "common" / "c.py").write_text("import os\n")
    assert import_cycles(import_graph(str(tmp_path), ("common",))) == []


@pytest.mark.parametrize("relpath,source,expected", [
    ("common/model/network.py", "from gpu_training import decoder\n", "common must not import gpu_training"),
    ("common/model/network.py", "import export.freeze\n", "common must not import export.freeze"),
    ("common/model/network.py", "def f():\n    from npu_training.decoder import g\n",
     "common must not import npu_training"),
    ("common/atomic.py", "from containers import launch\n", "common must not import containers"),
    ("export/graph.py", "import tasks\n", "export must not import tasks"),
    ("gpu_training/train.py", "from ..npu_training import decoder\n", "gpu_training must not import npu_training"),
    ("npu_training/train.py", "from gpu_training.decoder import d\n", "npu_training must not import gpu_training"),
    ("npu_training/train.py", "try:\n    import npu_bridge.estimator\nexcept ImportError:\n    pass\n",
     "npu_bridge is imported at module level"),
    ("npu_training/train.py", "class A(object):\n    from npu_bridge import x\n", "npu_bridge is imported at module"),
    ("gpu_training/train.py", "def f():\n    import npu_bridge\n", "npu_bridge is imported outside npu_training"),
    ("common/data/dataset.py", "from common.prep import preprocess\n",
     "common layer data/model must not import common.prep.preprocess (layer prep is above it)"),
    ("common/config/hparams.py", "def f():\n    import common.training.loop\n",
     "common layer config must not import common.training.loop (layer training is above it)"),
    ("common/errors.py", "from common.data import audio\n", "common layer base must not import common.data.audio"),
    ("common/prep/faces.py", "from common.synthetic import astronaut\n", "must not import common.synthetic.astronaut"),
])
def test_layering_checker_catches_violations(relpath, source, expected):
    problems = layering_problems(source, relpath)
    assert len(problems) == 1 and expected in problems[0]


def test_layering_checker_allows_the_intended_imports():
    allowed = [
        ("npu_training/session.py", "def config():\n    from npu_bridge.estimator import npu_ops\n"),
        ("gpu_training/train.py", "from common.training import loop\nfrom . import decoder\n"),
        ("export/freeze.py", "from common.model import network\nfrom gpu_training import decoder\n"),
        ("common/model/network.py", "from common.config import hparams\nfrom common.tf_compat import tf\n"),
        ("common/data/dataset.py", "from common.data import crops\nfrom common.model import layers\n"),
        ("common/synthetic/astronaut.py", "from common.prep import faces\nfrom common.data import crops\n"),
        ("common/training/loop.py", "from common.prep import faces\n"),
        ("containers/launch.py", "from common import cli\n"),
    ]
    for relpath, source in allowed:
        assert layering_problems(source, relpath) == []
