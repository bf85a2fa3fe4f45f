"""Images and invoke orchestration against a real Docker engine (the area's end-to-end test).

The vendor bases cannot be pulled here, so both images are built FROM the local stand-in base
(containers/standin/base.py: Debian bookworm + TensorFlow 2.15 CPU). Engine tests skip when no engine answers;
.ci/run starts one. On vfs engines every layer and container is a full copy: expect minutes, not seconds.
"""
import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from common import devices
from containers import launch
from containers.standin import base

ROOT = Path(__file__).resolve().parents[1]
INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(ROOT)]


def _engine_problem():
    try:
        docker.from_env(timeout=10).ping()
    except docker.errors.DockerException as exc:
        return "no Docker engine reachable (DOCKER_HOST=%s): %s; start one as .ci/run does" % (
            os.environ.get("DOCKER_HOST", "unset"), exc)
    return None


ENGINE_PROBLEM = _engine_problem()
requires_engine = pytest.mark.skipif(ENGINE_PROBLEM is not None, reason=ENGINE_PROBLEM or "")


def invoke(*args, env=None, timeout=3600):
    return subprocess.run(INVOKE + list(args), cwd=str(ROOT), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    for target in devices.TARGETS:
        result = subprocess.run([hadolint, str(ROOT / "containers" / target / "Dockerfile")],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_build_context_holds_only_image_code():
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [p for p in patterns if p.strip() and not p.startswith("#")]
    # The client always sends the Dockerfile and .dockerignore; the engine leaves them out of COPY when ignored.
    files = docker.utils.build.exclude_paths(str(ROOT), patterns) - {".dockerignore"}
    files = {f for f in files if not f.endswith("/Dockerfile")}
    tops = {f.split("/")[0] for f in files}
    assert tops <= {"common", "gpu_training", "npu_training", "export", "containers"}, tops
    assert "containers/entrypoint.sh" in files and "containers/launch.py" in files
    assert not any(f.endswith(".pyc") or f.startswith("containers/standin") for f in files)


ENTRYPOINT = ROOT / "containers" / "entrypoint.sh"
IMAGE_REQUIREMENTS = ROOT / "containers" / "requirements-image.txt"
REPO_PACKAGES = ("common", "gpu_training", "npu_training", "export", "containers")
# What the vendor base images bring (TensorFlow 1.15 with protobuf and numpy; the TF Adapter on Ascend;
# Horovod in NGC's), and what only the host runs (containers.launch's docker_run_kwargs, for tasks.py).
BASE_IMAGE_MODULES = {"tensorflow", "google", "numpy", "npu_bridge", "horovod"}
HOST_ONLY_MODULES = {"docker"}
IMPORT_NAMES = {"opencv-python-headless": "cv2", "scikit-learn": "sklearn"}


def entrypoint_commands():
    """{command: [python modules it runs]} from the entrypoint's case branches (`exec python3 -m MODULE`);
    train also runs each tree's training module (containers.launch starts it as a process)."""
    commands, labels = {}, None
    for line in ENTRYPOINT.read_text().splitlines():
        branch = re.match(r"^    ([a-z|-]+)\)$", line)
        if branch:
            labels = branch.group(1).split("|")
        started = re.search(r"exec python3 -m (\S+)", line)
        if started and labels:
            for label in labels:
                commands[label] = [started.group(1).strip('"').replace("$command", label)]
    commands["train"] += [launch.train_module(target) for target in devices.TARGETS]
    return commands


def image_modules():
    """Top-level modules the image carries beyond the standard library and the base image."""
    pins = [line.split("==")[0].strip() for line in IMAGE_REQUIREMENTS.read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    return {IMPORT_NAMES.get(pin, pin.replace("-", "_")) for pin in pins}


def third_party_imports(module):
    """{top-level module: "file:line" of its first import} of every import, at any depth (lazy ones too),
    reachable from ``module`` through the repository's own modules."""
    found, seen, todo = {}, set(), [module]
    while todo:
        name = todo.pop()
        path = ROOT / name.replace(".", "/")
        source = next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.is_file()), None)
        if name in seen or source is None:
            continue
        seen.add(name)
        package = name.split(".") if source.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                names = [base] + ["%s.%s" % (base, alias.name) for alias in node.names]
            else:
                continue
            for imported in names:
                top = imported.split(".")[0]
                if top in REPO_PACKAGES:
                    todo.append(imported)
                else:
                    found.setdefault(top, "%s:%d" % (source.relative_to(ROOT), node.lineno))
    return found


def test_every_image_command_imports_only_what_the_image_carries():
    carried = set(sys.stdlib_module_names) | BASE_IMAGE_MODULES | HOST_ONLY_MODULES | image_modules()
    commands = entrypoint_commands()
    assert {"train", "export", "atc"} <= set(commands), commands
    missing = ["%s: %s (%s)" % (command, top, where) for command, modules in sorted(commands.items())
               for module in modules for top, where in sorted(third_party_imports(module).items())
               if top not in carried]
    assert not missing, "image commands import what containers/requirements-image.txt lacks:\n" + "\n".join(missing)


def test_the_import_walk_sees_what_synthesize_and_evaluate_need():
    assert {"imageio_ffmpeg", "dlib"} <= set(third_party_imports("export.apps.synthesize"))
    assert {"pesq", "pystoi"} <= set(third_party_imports("export.apps.evaluate"))


@pytest.mark.parametrize("command", ["synthesize", "evaluate"])
def test_the_images_send_synthesis_and_scoring_to_a_workstation(tmp_path, command):
    env = dict(os.environ, LIP2WAV_TARGET="npu", HOME=str(tmp_path))
    result = subprocess.run(["sh", str(ENTRYPOINT), command, "--checkpoint", "/workspace/run"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: %s does not run in this image (no video reader, face detector or PESQ): run 'invoke %s "
        "--checkpoint RUN_DIR ...' on a workstation with the run directory this image wrote" % (command, command)]
    usage = subprocess.run(["sh", str(ENTRYPOINT), "help"], env=env, capture_output=True, text=True, timeout=60)
    assert "invoke %s --checkpoint RUN_DIR" % command in usage.stdout
    assert not re.search(r"^  %s " % command, usage.stdout, re.M)


def test_train_errors_name_the_fix(tmp_path):
    missing = invoke("train", "--target", "npu", "--data", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "dataset folder" in missing.stderr and "common.synthetic" in missing.stderr
    bad = invoke("train", "--target", "npu", "--data", str(tmp_path), "--devices", "0,0")
    assert bad.returncode == 2 and "repeat" in bad.stderr
    no_engine = invoke("train", "--target", "gpu", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"),
                       env={"DOCKER_HOST": "unix://%s" % (tmp_path / "absent.sock")})
    assert no_engine.returncode == 2 and "no Docker engine reachable" in no_engine.stderr
    assert "dockerd" in no_engine.stderr
    if not os.path.exists("/dev/davinci0"):
        no_npu = invoke("train", "--target", "npu", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run"))
        assert no_npu.returncode == 2 and "/dev/davinci0" in no_npu.stderr and "--emulate" in no_npu.stderr


@requires_engine
def test_unbuilt_image_suggests_build(tmp_path):
    result = invoke("train", "--target", "npu", "--emulate", "--data", str(tmp_path),
                    "--run-dir", str(tmp_path / "run"), "--image", "lip2wav-never-built:absent")
    assert result.returncode == 2 and "invoke build-npu" in result.stderr


@pytest.fixture(scope="module")
def images():
    """Stand-in base (cached), then both project images built through the invoke tasks."""
    if ENGINE_PROBLEM:
        pytest.skip(ENGINE_PROBLEM)
    client = docker.from_env(timeout=1800)  # vfs engines take minutes to create and remove containers
    tarball = base.cache_dir() / ("standin-%s.tar" % base.recipe_hash())
    if os.geteuid() != 0 and not tarball.exists():
        try:
            client.images.get(base.image_tag())
        except docker.errors.ImageNotFound:
            pytest.skip("stand-in base not built: run `sudo .venv/bin/python -m containers.standin.base` once")
    start = time.monotonic()
    standin = base.ensure_base(client)
    print("stand-in base %s ready in %.0f s" % (standin, time.monotonic() - start))
    requirements = "containers/requirements-standin.txt"
    wheels = base.download_wheels([ROOT / requirements], base.cache_dir() / "wheels-standin")
    for target in devices.TARGETS:
        start = time.monotonic()
        result = invoke("build-" + target, "--base-image", standin, "--requirements", requirements,
                        "--wheelhouse", str(wheels))
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
        print("built lip2wav-%s in %.0f s" % (target, time.monotonic() - start))
    return client


@requires_engine
def test_images_are_non_root_and_print_usage(images):
    for target in devices.TARGETS:
        config = images.images.get(launch.IMAGES[target]).attrs["Config"]
        assert "LIP2WAV_TARGET=%s" % target in config["Env"]
        assert config["User"] == "lip2wav"
        assert config["Entrypoint"] == ["/bin/sh", "/opt/lip2wav/containers/entrypoint.sh"]
    output = images.containers.run("lip2wav-npu", remove=True, network_mode="none").decode()
    assert output.startswith("usage: docker run") and "npu_training.train" in output


@requires_engine
@pytest.mark.parametrize("target", devices.TARGETS)
def test_emulated_training_writes_host_owned_checkpoints(images, synthetic_data, tmp_path, target):
    if importlib.util.find_spec("%s_training.train" % target) is None:
        pytest.skip("%s_training/train.py not written yet" % target)
    run_dir = tmp_path / "run"
    result = invoke("train", "--target", target, "--emulate", "--data", synthetic_data, "--run-dir", str(run_dir),
                    "--steps", "2", "--checkpoint-every", "2", "--hparams", "tacotron_batch_size=2")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "docker run" in result.stderr
    written = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".index") for p in written), written
    assert {p.stat().st_uid for p in written} == {os.getuid()}
    # The image saw the run at /workspace/run; the host exports it from wherever it lives.
    assert launch.CONTAINER_RUN not in (run_dir / "checkpoints" / "checkpoint").read_text()
    from export import freeze
    manifest = freeze.freeze(str(run_dir), str(tmp_path / "frozen"), target=target)
    assert manifest["checkpoint"] == str(run_dir / "checkpoints" / "model.ckpt-2")


@requires_engine
def test_docker_stop_saves_a_checkpoint_and_exits_143(images, synthetic_data, tmp_path):
    """SIGTERM from `docker stop` reaches the trainer through the entrypoint's exec chain."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    argv = launch.train_args(launch.CONTAINER_DATA, launch.CONTAINER_RUN, "synthetic", "tacotron_batch_size=2",
                             1000, 1000) + ["--log-every", "1", "--workers", "1"]
    kwargs = launch.docker_run_kwargs("gpu", launch.IMAGES["gpu"], synthetic_data, run_dir, [0], True, os.getuid(),
                                      os.getgid(), ["train"] + argv)
    container = images.containers.create(**kwargs)
    try:
        container.start()
        log = run_dir / "train_log.jsonl"
        deadline = time.monotonic() + 1800
        while not (log.is_file() and log.read_text().count("\n") >= 1):
            container.reload()
            assert container.status == "running" and time.monotonic() < deadline, container.logs()[-4000:]
            time.sleep(1)
        container.stop(timeout=120)
        status = container.wait()["StatusCode"]
        output = container.logs().decode()
        assert status == 143, output[-4000:]
        assert "stopped by SIGTERM at step" in output
        assert list((run_dir / "checkpoints").glob("model.ckpt-*.index")), output[-4000:]
    finally:
        container.remove(force=True)


class _FakeContainer:
    """Stands in for docker's Container: output, then Ctrl-C while streaming."""

    def __init__(self):
        self.calls = []

    def start(self):
        self.calls.append("start")

    def logs(self, stream, follow):
        yield b"step 1\n"
        raise KeyboardInterrupt

    def stop(self, timeout):
        self.calls.append("stop")

    def wait(self):
        self.calls.append("wait")
        return {"StatusCode": 143}

    def remove(self, force):
        self.calls.append("remove")


def test_ctrl_c_stops_the_container_and_returns_its_exit_code(tmp_path, monkeypatch, capsys):
    from containers import engine
    from invoke import Exit

    container = _FakeContainer()
    created = {}

    class FakeClient:
        class images:
            @staticmethod
            def get(name):
                return name

        class containers:
            @staticmethod
            def create(**kwargs):
                created.update(kwargs)
                return container

    monkeypatch.setattr(engine, "docker_client", lambda: FakeClient)
    with pytest.raises(Exit) as exited:
        engine.train_container("gpu", "lip2wav-gpu", tmp_path, tmp_path / "run", [0], True, ["--steps", "9"], None)
    assert exited.value.code == 143
    assert container.calls == ["start", "stop", "wait", "remove"]
    assert created["command"] == ["train", "--steps", "9"] and created["user"] == "%d:%d" % (os.getuid(), os.getgid())
    assert "docker run --rm --network none" in capsys.readouterr().err
