"""Every CANN TF Adapter name the NPU tree uses exists, with the keywords we pass, in the adapter's API as read from
its source (tests/tf_adapter_api.tsv, a copy of ../shared/reference/tf_adapter_api.tsv), the way test_static.py
checks TensorFlow names against tf1_15_api.txt: the adapter is absent here, so nothing else would catch a typo
before an Ascend server does. Also: the NpuOptimizer option keys, and the environment the launcher gives ranks."""
import ast
import os

import pytest

from containers import launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_PATH = os.path.join(ROOT, "tests", "tf_adapter_api.tsv")
NPU_FILES = ("npu_training/session.py", "npu_training/distribute.py", "npu_training/train.py")


def load_adapter_api():
    """{(module, name): (kind, signature)} and the set of module paths (with every parent package)."""
    rows = {}
    with open(API_PATH) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            module, name, kind, signature = line.rstrip("\n").split("\t")[:4]
            rows[(module, name)] = (kind, signature)
    modules = set()
    for module, _ in rows:
        parts = module.split(".")
        modules.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return rows, modules


ROWS, MODULES = load_adapter_api()


def parameters(signature):
    """Keyword names a tsv signature accepts, or None when it takes **kwargs (anything goes)."""
    inner = signature.strip()[1:-1]
    names = set()
    for part in [p.strip() for p in inner.split(",") if p.strip()]:
        if part.startswith("**"):
            return None
        names.add(part.lstrip("*").split("=")[0].strip())
    return names


def adapter_problems(source, relpath):
    """Adapter names, keywords and NpuOptimizer keys in ``source`` that the adapter's API lacks."""
    tree = ast.parse(source, relpath)
    bound, module_aliases, problems = {}, {}, []

    def where(node):
        return "%s:%d" % (relpath, node.lineno)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "npu_bridge":
                    if alias.name not in MODULES:
                        problems.append("%s: module %s is not in the adapter" % (where(node), alias.name))
                    module_aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "npu_bridge":
            for alias in node.names:
                full = "%s.%s" % (node.module, alias.name)
                if alias.name == "*":
                    problems.append("%s: import names from %s one by one" % (where(node), node.module))
                elif (node.module, alias.name) in ROWS:
                    bound[alias.asname or alias.name] = (node.module, alias.name)
                elif full in MODULES:
                    module_aliases[alias.asname or alias.name] = full
                else:
                    problems.append("%s: %s is not in the adapter's API (tests/tf_adapter_api.tsv)" % (where(node), full))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases:
            module = module_aliases[node.value.id]
            if (module, node.attr) in ROWS:
                continue
            if "%s.%s" % (module, node.attr) not in MODULES:
                problems.append("%s: %s.%s is not in the adapter's API" % (where(node), module, node.attr))
        if isinstance(node, ast.Call):
            target = None
            if isinstance(node.func, ast.Name) and node.func.id in bound:
                target = bound[node.func.id]
            elif (isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name)
                  and node.func.value.id in module_aliases):
                target = (module_aliases[node.func.value.id], node.func.attr)
            if target in ROWS:
                accepted = parameters(ROWS[target][1])
                for keyword in node.keywords:
                    if accepted is not None and keyword.arg is not None and keyword.arg not in accepted:
                        problems.append("%s: %s.%s() has no keyword %r" % (where(node), target[0], target[1],
                                                                          keyword.arg))
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                and node.value.attr == "parameter_map"):
            key = _literal_key(node.slice)
            if key is not None and ("NpuOptimizer.parameter_map", key) not in ROWS:
                problems.append("%s: NpuOptimizer has no option %r" % (where(node), key))
    return problems


def _literal_key(subscript_slice):
    """The string in ``x["key"]``, on Python 3.7 (ast.Index around ast.Str) and 3.9+ (the ast.Constant itself)."""
    key_node = subscript_slice if isinstance(subscript_slice, ast.Constant) else getattr(subscript_slice, "value",
                                                                                          subscript_slice)
    try:
        key = ast.literal_eval(key_node)
    except ValueError:
        return None
    return key if isinstance(key, str) else None


def read(relpath):
    with open(os.path.join(ROOT, relpath)) as f:
        return f.read()


def test_npu_tree_uses_only_adapter_names_that_exist():
    problems = [p for relpath in NPU_FILES for p in adapter_problems(read(relpath), relpath)]
    assert not problems, "\n".join(problems)


def test_the_npu_tree_really_uses_the_distributed_adapter_names():
    used = set()
    for relpath in NPU_FILES:
        for node in ast.walk(ast.parse(read(relpath))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("npu_bridge"):
                used.update("%s.%s" % (node.module, a.name) for a in node.names)
    assert {"npu_bridge.estimator.npu.npu_optimizer.NPUDistributedOptimizer", "npu_bridge.hccl.hccl_ops",
            "npu_bridge.estimator.npu.npu_loss_scale_optimizer.NPULossScaleOptimizer"} <= used
    assert not any(name.startswith("npu_bridge.npu_init") for name in used), "npu_init patches every tf.Session"


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    from npu_bridge.estimator.npu.npu_optimizer import NPUDistributedOptimiser\n",
     "NPUDistributedOptimiser is not in the adapter's API"),
    ("def f(opt, m):\n    from npu_bridge.estimator.npu.npu_loss_scale_optimizer import NPULossScaleOptimizer\n"
     "    return NPULossScaleOptimizer(opt, m, distributed=True)\n", "has no keyword 'distributed'"),
    ("def f(v):\n    from npu_bridge.hccl import hccl_ops\n    return hccl_ops.broadcast(tensor=[v], root=0)\n",
     "has no keyword 'root'"),
    ("def f(v):\n    from npu_bridge.hccl import hccl_ops\n    return hccl_ops.all_reduce(v)\n",
     "hccl_ops.all_reduce is not in the adapter's API"),
    ("def f():\n    from npu_bridge.npu_init import *\n", "one by one"),
    ("def f(c):\n    c.parameter_map['precison_mode'].s = b'x'\n", "no option 'precison_mode'"),
])
def test_adapter_checker_catches_wrong_names(source, expected):
    problems = adapter_problems(source, "npu_training/x.py")
    assert len(problems) == 1 and expected in problems[0], problems


def test_launcher_environment_is_what_the_adapter_reads(tmp_path):
    """Every variable the launcher gives an NPU rank is one the adapter (or GE) reads, and RANK_ID matches the
    rank table's rank_id for the device."""
    devices = [4, 6]
    table = launch.rank_table(devices, "10.0.0.1", {4: "192.168.1.4", 6: "192.168.1.6"})
    envs = launch.process_envs("npu", devices, str(tmp_path / "rank_table.json"))
    read_by_adapter = set(name for (module, name) in ROWS if module == "environment")
    for env in envs:
        assert set(env) <= read_by_adapter, set(env) - read_by_adapter
    table_ranks = dict((d["device_id"], d["rank_id"]) for d in table["server_list"][0]["device"])
    assert [table_ranks[e["DEVICE_ID"]] for e in envs] == [e["RANK_ID"] for e in envs]
    assert all(e["JOB_ID"] and e["RANK_SIZE"] == "2" for e in envs)
