"""Launch plan for training runs: rank tables, per-process environments, commands and `docker run` arguments.

Pure functions, so tasks.py (host) and the image entrypoint (`python3 -m containers.launch train ...`) share one
definition of "one process per device" and tests can check it without a Docker engine.
Runs on the host (Python 3.11) and inside the images (Python 3.7), hence the 3.7 syntax.
"""
import json
import os
import shlex
import signal
import subprocess
import sys
from common import atomic
from common import cli
from common import devices
from common.errors import Lip2WavError

TARGETS = devices.TREES
IMAGES = dict((target, "lip2wav-" + target) for target in TARGETS)
CONTAINER_DATA = "/workspace/data"
CONTAINER_RUN = "/workspace/run"
RANK_TABLE_NAME = "rank_table.json"
ASCEND_CONTROL_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
ASCEND_HOST_MOUNTS = ("/usr/local/Ascend/driver", "/usr/local/dcmi", "/usr/local/bin/npu-smi")
HCCN_CONF = "/etc/hccn.conf"


class LaunchError(Lip2WavError, ValueError):
    """Bad launch input; the message names the fix."""


def parse_devices(text):
    """'0,1,3' -> [0, 1, 3]; rejects empty, negative and repeated ids."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise LaunchError("no device ids given: pass --devices 0 or --devices 0,1,...")
    try:
        devices = [int(p) for p in parts]
    except ValueError:
        raise LaunchError("device ids must be integers, got %r: pass e.g. --devices 0,1" % text)
    if any(d < 0 for d in devices):
        raise LaunchError("device ids must be >= 0, got %r" % text)
    if len(set(devices)) != len(devices):
        raise LaunchError("device ids repeat in %r: list each device once" % text)
    return devices


def train_module(target):
    try:
        return devices.train_module(target)
    except devices.UnknownTreeError as exc:
        raise LaunchError(str(exc))


def train_args(data, run_dir, preset, hparams, steps, checkpoint_every):
    """The trainer's flags (the same for gpu_training.train and npu_training.train)."""
    args = ["--data", str(data), "--preset", preset, "--run-dir", str(run_dir)]
    if hparams:
        args += ["--hparams", hparams]
    if steps is not None:
        args += ["--steps", str(steps)]
    if checkpoint_every is not None:
        args += ["--checkpoint-every", str(checkpoint_every)]
    return args


def read_device_ips(path=HCCN_CONF):
    """Device IPs from hccn.conf (`address_<id>=<ip>` lines, written by hccn_tool); {} when absent."""
    ips = {}
    if not os.path.isfile(path):
        return ips
    with open(path) as handle:
        for line in handle:
            key, _, value = line.strip().partition("=")
            if key.startswith("address_") and key[len("address_"):].isdigit() and value:
                ips[int(key[len("address_"):])] = value
    return ips


def rank_table(devices, server_id, device_ips):
    """HCCL rank table (version 1.0, one server): every value a string, rank_id = position in `devices`."""
    missing = [d for d in devices if d not in device_ips]
    if missing:
        raise LaunchError("no device IP for NPU %s: configure it with hccn_tool (see %s)"
                          % (",".join(str(d) for d in missing), HCCN_CONF))
    return {
        "version": "1.0",
        "server_count": "1",
        "server_list": [{
            "server_id": str(server_id),
            "device": [{"device_id": str(d), "device_ip": str(device_ips[d]), "rank_id": str(rank)}
                       for rank, d in enumerate(devices)],
        }],
        "status": "completed",
    }


def write_rank_table(run_dir, table):
    """Write rank_table.json into the run dir atomically; returns its path."""
    os.makedirs(str(run_dir), exist_ok=True)
    path = os.path.join(str(run_dir), RANK_TABLE_NAME)
    atomic.write_text(path, json.dumps(table, indent=2) + "\n")
    return path


def process_envs(target, devices, rank_table_file=None, job_id="lip2wav"):
    """One environment overlay per training process (Ascend: one process per device; GPU: one overall).

    GPU multi-device runs get their ranks from horovodrun, so the GPU overlay only selects the devices.
    """
    if target == "gpu":
        return [{"CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices)}]
    train_module(target)
    if len(devices) > 1 and not rank_table_file:
        raise LaunchError("several NPUs need a rank table: pass rank_table_file")
    envs = []
    for rank, device in enumerate(devices):
        env = {"DEVICE_ID": str(device), "ASCEND_DEVICE_ID": str(device), "RANK_ID": str(rank),
               "RANK_SIZE": str(len(devices)), "JOB_ID": job_id}
        if len(devices) > 1:
            env["RANK_TABLE_FILE"] = str(rank_table_file)
        envs.append(env)
    return envs


def train_command(target, devices, args, python="python3"):
    """argv of one training process; for GPUs on several devices, the horovodrun line that starts them all."""
    command = [python, "-m", train_module(target)] + list(args)
    if target == "gpu" and len(devices) > 1:
        n = str(len(devices))
        return ["horovodrun", "-np", n, "-H", "localhost:" + n] + command
    return command


def run_processes(command, envs, cwd=None):
    """Start one process per env overlay, forward SIGINT/SIGTERM, return the first non-zero exit code (or 0)."""
    if len(envs) == 1:
        return subprocess.call(command, env=dict(os.environ, **envs[0]), cwd=cwd)
    procs = [subprocess.Popen(command, env=dict(os.environ, **env), cwd=cwd) for env in envs]

    def forward(signum, _frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = 0
        pending = list(procs)
        while pending:
            for proc in list(pending):
                try:
                    status = proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    continue
                pending.remove(proc)
                if status != 0 and code == 0:
                    code = status
                    forward(signal.SIGTERM, None)
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def docker_run_kwargs(target, image, data_dir, run_dir, devices, emulate, uid, gid, command,
                      rank_table=False, device_group=None):
    """Keyword arguments for docker SDK `containers.create` (and, via docker_cli, the equivalent shell line)."""
    train_module(target)
    # NPUs keep their /dev/davinciN names inside the container; the NVIDIA runtime renumbers requested GPUs 0..N-1.
    inside = devices if target == "npu" else list(range(len(devices)))
    environment = {"LIP2WAV_DEVICES": ",".join(str(d) for d in inside), "HOME": "/tmp"}
    if rank_table:
        environment["RANK_TABLE_FILE"] = CONTAINER_RUN + "/" + RANK_TABLE_NAME
    if emulate:
        environment["LIP2WAV_EMULATE"] = "1"
    kwargs = {
        "image": image,
        "command": list(command),
        "user": "%d:%d" % (uid, gid),
        "environment": environment,
        "volumes": {
            os.path.abspath(str(data_dir)): {"bind": CONTAINER_DATA, "mode": "ro"},
            os.path.abspath(str(run_dir)): {"bind": CONTAINER_RUN, "mode": "rw"},
        },
        "network_mode": "none",
        "init": True,
    }
    if emulate:
        return kwargs
    if target == "npu":
        nodes = ["/dev/davinci%d" % d for d in devices] + list(ASCEND_CONTROL_DEVICES)
        kwargs["devices"] = ["%s:%s:rwm" % (n, n) for n in nodes]
        for path in ASCEND_HOST_MOUNTS:
            kwargs["volumes"][path] = {"bind": path, "mode": "ro"}
        if device_group is not None:
            kwargs["group_add"] = [str(device_group)]
    else:
        from docker.types import DeviceRequest  # host only: the images do not ship the docker SDK
        kwargs["device_requests"] = [DeviceRequest(driver="nvidia", device_ids=[str(d) for d in devices],
                                                   capabilities=[["gpu"]])]
        kwargs["shm_size"] = "1g"
        kwargs["ulimits"] = [{"Name": "memlock", "Soft": -1, "Hard": -1},
                             {"Name": "stack", "Soft": 67108864, "Hard": 67108864}]
    return kwargs


def docker_cli(kwargs):
    """The `docker run` line equivalent to docker_run_kwargs' output, for echoing."""
    argv = ["docker", "run", "--rm", "--network", kwargs["network_mode"], "--user", kwargs["user"]]
    if kwargs.get("init"):
        argv.append("--init")
    for key in sorted(kwargs["environment"]):
        argv += ["-e", "%s=%s" % (key, kwargs["environment"][key])]
    for host, spec in kwargs["volumes"].items():
        argv += ["-v", "%s:%s:%s" % (host, spec["bind"], spec["mode"])]
    for device in kwargs.get("devices", []):
        argv += ["--device", device]
    for group in kwargs.get("group_add", []):
        argv += ["--group-add", group]
    for request in kwargs.get("device_requests", []):
        argv += ["--gpus", '"device=%s"' % ",".join(request["DeviceIDs"])]
    if "shm_size" in kwargs:
        argv += ["--shm-size", kwargs["shm_size"]]
    for limit in kwargs.get("ulimits", []):
        argv += ["--ulimit", "%s=%d:%d" % (limit["Name"], limit["Soft"], limit["Hard"])]
    argv.append(kwargs["image"])
    argv += kwargs["command"]
    return " ".join(shlex.quote(a) for a in argv)


def _container_train(argv):
    """`train` inside an image: pick the tree from LIP2WAV_TARGET, one process per device in LIP2WAV_DEVICES."""
    target = os.environ.get("LIP2WAV_TARGET", "")
    devices = parse_devices(os.environ.get("LIP2WAV_DEVICES", "0"))
    envs = process_envs(target, devices, os.environ.get("RANK_TABLE_FILE"))
    command = train_command(target, devices, argv, python=sys.executable)
    if len(envs) == 1:
        os.environ.update(envs[0])
        os.execvp(command[0], command)
    return run_processes(command, envs)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "train":
        print("usage: python3 -m containers.launch train [TRAINER FLAGS...]", file=sys.stderr)
        return 2
    return cli.run(lambda: _container_train(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
