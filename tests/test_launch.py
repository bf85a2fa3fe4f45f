"""Launch plan (containers/launch.py) and the image entrypoint, without a Docker engine."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common import devices
from containers import launch

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "containers" / "entrypoint.sh"


def test_parse_devices():
    assert launch.parse_devices("0") == [0]
    assert launch.parse_devices(" 0, 3,1 ") == [0, 3, 1]
    for bad in ("", "a", "0,0", "-1"):
        with pytest.raises(launch.LaunchError):
            launch.parse_devices(bad)


def test_rank_table_is_all_strings_with_ranks_in_device_order(tmp_path):
    table = launch.rank_table([2, 5], "10.0.0.1", {2: "192.168.100.102", 5: "192.168.100.105"})
    assert table["version"] == "1.0" and table["server_count"] == "1" and table["status"] == "completed"
    server = table["server_list"][0]
    assert server["server_id"] == "10.0.0.1"
    assert server["device"] == [
        {"device_id": "2", "device_ip": "192.168.100.102", "rank_id": "0"},
        {"device_id": "5", "device_ip": "192.168.100.105", "rank_id": "1"},
    ]
    path = launch.write_rank_table(tmp_path / "run", table)
    assert json.loads(Path(path).read_text()) == table
    assert sorted(os.listdir(tmp_path / "run")) == ["rank_table.json"]


def test_rank_table_names_missing_device_ip():
    with pytest.raises(launch.LaunchError, match="hccn_tool"):
        launch.rank_table([0, 1], "10.0.0.1", {0: "192.168.100.101"})


def test_read_device_ips(tmp_path):
    conf = tmp_path / "hccn.conf"
    conf.write_text("address_0=192.168.100.101\nnetmask_0=255.255.255.0\naddress_1=192.168.101.101\n")
    assert launch.read_device_ips(str(conf)) == {0: "192.168.100.101", 1: "192.168.101.101"}
    assert launch.read_device_ips(str(tmp_path / "absent")) == {}


def test_npu_process_envs_one_per_device():
    envs = launch.process_envs("npu", [4, 6], "/workspace/run/rank_table.json")
    assert [e["RANK_ID"] for e in envs] == ["0", "1"]
    assert [e["DEVICE_ID"] for e in envs] == ["4", "6"]
    assert all(e["RANK_SIZE"] == "2" and e["RANK_TABLE_FILE"] == "/workspace/run/rank_table.json" for e in envs)
    single = launch.process_envs("npu", [3])
    assert single == [{"DEVICE_ID": "3", "ASCEND_DEVICE_ID": "3", "RANK_ID": "0", "RANK_SIZE": "1",
                       "JOB_ID": "lip2wav"}]
    with pytest.raises(launch.LaunchError):
        launch.process_envs("npu", [0, 1])


def test_gpu_uses_horovodrun_for_several_devices():
    args = launch.train_args("/d", "/r", "synthetic", "", 2, None)
    assert args == ["--data", "/d", "--run-dir", "/r", "--preset", "synthetic", "--steps", "2"]
    assert launch.train_command("gpu", [0], args) == ["python3", "-m", "gpu_training.train"] + args
    assert launch.train_command("gpu", [0, 1], args)[:5] == ["horovodrun", "-np", "2", "-H", "localhost:2"]
    assert launch.train_command("npu", [0, 1], args) == ["python3", "-m", "npu_training.train"] + args
    assert launch.process_envs("gpu", [0, 1]) == [{"CUDA_VISIBLE_DEVICES": "0,1"}]
    with pytest.raises(launch.LaunchError):
        launch.train_command("tpu", [0], args)


def test_npu_run_kwargs_map_devices_driver_and_user(tmp_path):
    kwargs = launch.docker_run_kwargs("npu", "lip2wav-npu", tmp_path / "data", tmp_path / "run", [0, 1],
                                      emulate=False, uid=1001, gid=1002, command=["train"], rank_table=True,
                                      device_group=1003)
    assert kwargs["user"] == "1001:1002" and kwargs["network_mode"] == "none"
    assert kwargs["devices"] == ["/dev/davinci0:/dev/davinci0:rwm", "/dev/davinci1:/dev/davinci1:rwm",
                                 "/dev/davinci_manager:/dev/davinci_manager:rwm",
                                 "/dev/devmm_svm:/dev/devmm_svm:rwm", "/dev/hisi_hdc:/dev/hisi_hdc:rwm"]
    for path in ("/usr/local/Ascend/driver", "/usr/local/dcmi", "/usr/local/bin/npu-smi"):
        assert kwargs["volumes"][path] == {"bind": path, "mode": "ro"}
    assert kwargs["volumes"][str(tmp_path / "data")] == {"bind": "/workspace/data", "mode": "ro"}
    assert kwargs["volumes"][str(tmp_path / "run")] == {"bind": "/workspace/run", "mode": "rw"}
    assert kwargs["environment"]["RANK_TABLE_FILE"] == "/workspace/run/rank_table.json"
    assert kwargs["environment"]["LIP2WAV_DEVICES"] == "0,1"
    assert kwargs["group_add"] == ["1003"]
    line = launch.docker_cli(kwargs)
    assert "--device /dev/davinci1:/dev/davinci1:rwm" in line and line.endswith("lip2wav-npu train")


@pytest.mark.workstation  # docker SDK
def test_gpu_run_kwargs_request_gpus(tmp_path):
    from docker.types import DeviceRequest

    kwargs = launch.docker_run_kwargs("gpu", "lip2wav-gpu", tmp_path, tmp_path / "run", [0, 2], emulate=False,
                                      uid=0, gid=0, command=["train"])
    (request,) = kwargs["device_requests"]
    assert isinstance(request, DeviceRequest)
    assert request.device_ids == ["0", "2"] and request.capabilities == [["gpu"]]
    assert kwargs["environment"]["LIP2WAV_DEVICES"] == "0,1"  # as the container numbers them
    assert "devices" not in kwargs
    assert "--gpus '\"device=0,2\"'" in launch.docker_cli(kwargs)


def test_emulate_requests_no_device(tmp_path):
    for target in devices.TARGETS:
        kwargs = launch.docker_run_kwargs(target, "img", tmp_path / "d", tmp_path / "r", [0], emulate=True,
                                          uid=5, gid=6, command=["train"])
        assert kwargs["environment"]["LIP2WAV_EMULATE"] == "1"
        assert not {"devices", "device_requests", "group_add"} & set(kwargs)
        assert set(kwargs["volumes"]) == {str(tmp_path / "d"), str(tmp_path / "r")}


def test_run_processes_gives_each_process_its_rank(tmp_path):
    script = "import os,sys; open(os.path.join(sys.argv[1], os.environ['RANK_ID']), 'w').write(os.environ['DEVICE_ID'])"
    envs = launch.process_envs("npu", [3, 7], str(tmp_path / "rank_table.json"))
    assert launch.run_processes([sys.executable, "-c", script, str(tmp_path)], envs) == 0
    assert (tmp_path / "0").read_text() == "3" and (tmp_path / "1").read_text() == "7"
    failing = [sys.executable, "-c", "import os,sys; sys.exit(3 if os.environ['RANK_ID'] == '1' else 0)"]
    assert launch.run_processes(failing, envs) == 3


def _entrypoint(tmp_path, *args, **env):
    """Run the entrypoint on the host with a stub python3 that prints its argv and rank environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "python3"
    stub.write_text('#!/bin/sh\necho "argv: $*"\necho "rank: $DEVICE_ID $RANK_ID $RANK_SIZE"\n'
                    'echo "ascend: ${FAKE_TOOLKIT:-} ${FAKE_TFPLUGIN:-}"\n')
    stub.chmod(0o755)
    full_env = {"PATH": "%s:/usr/bin:/bin" % bin_dir, "LIP2WAV_ASCEND_ROOT": str(tmp_path / "Ascend")}
    full_env.update(env)
    return subprocess.run(["sh", str(ENTRYPOINT)] + list(args), env=full_env, capture_output=True, text=True)


def test_entrypoint_usage_and_errors(tmp_path):
    for args in ((), ("help",), ("--help",)):
        result = _entrypoint(tmp_path, *args, LIP2WAV_TARGET="npu")
        assert result.returncode == 0 and "usage:" in result.stdout and "npu_training.train" in result.stdout
    unknown = _entrypoint(tmp_path, "dance", LIP2WAV_TARGET="npu")
    assert unknown.returncode == 2 and "unknown command 'dance'" in unknown.stderr
    untargeted = _entrypoint(tmp_path, "train")
    assert untargeted.returncode == 2 and "LIP2WAV_TARGET" in untargeted.stderr


def test_entrypoint_sources_cann_and_dispatches(tmp_path):
    for sub, var in (("ascend-toolkit", "FAKE_TOOLKIT"), ("tfplugin", "FAKE_TFPLUGIN")):
        (tmp_path / "Ascend" / sub).mkdir(parents=True)
        # Like the vendor scripts: reads unset variables and ends non-zero.
        (tmp_path / "Ascend" / sub / "set_env.sh").write_text(
            'export %s="on$UNSET_IN_VENDOR_SCRIPT"\nfalse\n' % var)
    result = _entrypoint(tmp_path, "train", "--steps", "2", LIP2WAV_TARGET="npu", LIP2WAV_DEVICES="5,6")
    assert result.returncode == 0, result.stderr
    assert "argv: -m containers.launch train --steps 2" in result.stdout
    assert "rank: 5 0 1" in result.stdout
    assert "ascend: on on" in result.stdout
    evaluated = _entrypoint(tmp_path, "evaluate", "--x", LIP2WAV_TARGET="gpu")
    assert evaluated.returncode == 2 and "argv:" not in evaluated.stdout
    assert "'invoke evaluate --checkpoint RUN_DIR ...' on a workstation" in evaluated.stderr
    exported = _entrypoint(tmp_path, "export", "--target", "npu", LIP2WAV_TARGET="npu")
    assert "argv: -m export.freeze --target npu" in exported.stdout


@pytest.mark.workstation  # vermin, ast feature_version (3.8+)
def test_launch_module_runs_on_python_37():
    """containers/launch.py runs inside the images (Python 3.7), unlike tasks.py."""
    import ast
    import shutil

    source = (ROOT / "containers" / "launch.py").read_text()
    ast.parse(source, feature_version=(3, 7))
    vermin = str(Path(sys.executable).parent / "vermin")
    vermin = vermin if os.path.isfile(vermin) else shutil.which("vermin")
    result = subprocess.run([vermin, "--no-config-file", "-t=3.7-", "--violations", "--no-tips",
                             "--eval-annotations", str(ROOT / "containers" / "launch.py")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
