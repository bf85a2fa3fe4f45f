"""Launch plan for training runs: rank tables, per-process environments, commands and `docker run` arguments.

Pure functions, so tasks.py (host) and the image entrypoint (`python3 -m containers.launch train ...`) share one
definition of "one process per device" and tests can check it without a Docker engine.
Runs on the host (Python 3.11) and inside the images (Python 3.7), hence the 3.7 syntax.
"""
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from common import atomic
from common import cli
from common import devices
from common import emulation
from common.errors import Lip2WavError
from common.training import rundir

IMAGES = dict((target, "lip2wav-" + target) for target in devices.TARGETS)
CONTAINER_DATA = "/workspace/data"
CONTAINER_RUN = "/workspace/run"
ASCEND_CONTROL_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
ASCEND_HOST_MOUNTS = ("/usr/local/Ascend/driver", "/usr/local/dcmi", "/usr/local/bin/npu-smi")
HCCN_CONF = "/etc/hccn.conf"
# After one rank fails the others get SIGTERM, then SIGKILL this much later: a rank blocked in a collective
# with a dead peer never reaches a step boundary, and the whole job must end within a minute.
STOP_GRACE_SECONDS = 20
# A Gloo collective whose peer went silent (a host whose link is down) fails after this long, so the surviving
# ranks exit and the job ends within a minute (Horovod's default too, set explicitly so the bound is ours).
GLOO_TIMEOUT_SECONDS = 30


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
    except devices.UnknownTargetError as exc:
        raise LaunchError(str(exc))


def train_args(data, run_dir, preset="", hparams="", steps=None, checkpoint_every=None):
    """The trainer's flags (the same for gpu_training.train and npu_training.train).

    Only the flags given are sent: a resumed run keeps its saved hyperparameters, and the trainer refuses a
    --preset or --hparams on resume that differs from them, so an unasked default must never be sent.
    """
    args = ["--data", str(data), "--run-dir", str(run_dir)]
    if preset:
        args += ["--preset", preset]
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


def validate_rank_table(table, where="rank table"):
    """Check ``table`` against HCCL's documented format (version 1.0, every value a string); returns it.

    rank_id must run 0..N-1 over all servers, each exactly once, and server_count must match the list.
    """
    def fail(problem):
        raise LaunchError("%s: %s (format: devices.md, 'Ascend multi-device')" % (where, problem))

    if not isinstance(table, dict):
        fail("not a JSON object")
    for key, value in (("version", "1.0"), ("status", "completed")):
        if table.get(key) != value:
            fail("%s must be the string %r, got %r" % (key, value, table.get(key)))
    servers = table.get("server_list")
    if not isinstance(servers, list) or not servers:
        fail("server_list must be a non-empty list")
    if table.get("server_count") != str(len(servers)):
        fail("server_count must be the string %r (servers listed), got %r" % (str(len(servers)),
                                                                              table.get("server_count")))
    ranks = []
    for server in servers:
        if not isinstance(server, dict) or not isinstance(server.get("server_id"), str):
            fail("every server needs a string server_id")
        devices = server.get("device")
        if not isinstance(devices, list) or not devices:
            fail("server %s lists no device" % server["server_id"])
        for device in devices:
            for key in ("device_id", "device_ip", "rank_id"):
                if not isinstance(device.get(key), str) or not device[key]:
                    fail("server %s: every device needs a non-empty string %s" % (server["server_id"], key))
            if not (device["device_id"].isdigit() and device["rank_id"].isdigit()):
                fail("server %s: device_id and rank_id must be digit strings" % server["server_id"])
            ranks.append(int(device["rank_id"]))
    if sorted(ranks) != list(range(len(ranks))):
        fail("rank_id values must be 0..%d, each once; got %s" % (len(ranks) - 1, sorted(ranks)))
    return table


def read_rank_table(path):
    """A user-supplied rank table (several Ascend servers), validated."""
    try:
        with open(str(path)) as handle:
            table = json.load(handle)
    except (OSError, ValueError) as error:
        raise LaunchError("cannot read rank table %s (%s): pass a JSON file in HCCL's format" % (path, error))
    return validate_rank_table(table, str(path))


def server_ranks(table, server_id):
    """[(device_id, rank_id)] of the server ``server_id`` in a validated rank table, and the total rank count."""
    servers = dict((server["server_id"], server["device"]) for server in table["server_list"])
    if server_id not in servers:
        raise LaunchError("server %s is not in the rank table (servers: %s): pass --server-id as listed"
                          % (server_id, ", ".join(sorted(servers))))
    total = sum(len(devices) for devices in servers.values())
    return [(int(d["device_id"]), int(d["rank_id"])) for d in servers[server_id]], total


def write_rank_table(run_dir, table):
    """Write rank_table.json into the run dir atomically; returns its path."""
    os.makedirs(str(run_dir), exist_ok=True)
    path = os.path.join(str(run_dir), rundir.RANK_TABLE)
    atomic.write_text(path, json.dumps(table, indent=2) + "\n")
    return path


def process_envs(target, devices, rank_table_file=None, job_id="lip2wav", container=False, ranks=None):
    """One environment overlay per training process (Ascend: one process per device; GPU: one overall).

    GPU multi-device runs get their ranks from horovodrun, so the GPU overlay only selects the devices.
    Ascend: DEVICE_ID is the physical id (as in the rank table); ASCEND_DEVICE_ID, which the adapter prefers,
    is the logical id: inside a container that sees only ``devices`` the driver numbers them 0..N-1 in
    physical order, on the host (every device visible) logical and physical ids coincide.
    ``ranks`` = (rank ids in device order, rank count) from a several-server rank table; default: positions.
    """
    if target == "gpu":
        return [{"CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices)}]
    train_module(target)
    rank_ids, rank_size = ranks or (list(range(len(devices))), len(devices))
    if rank_size > 1 and not rank_table_file:
        raise LaunchError("several NPUs need a rank table: pass rank_table_file")
    envs = []
    for rank, device in zip(rank_ids, devices):
        logical = sorted(devices).index(device) if container else device
        env = {"DEVICE_ID": str(device), "ASCEND_DEVICE_ID": str(logical), "RANK_ID": str(rank),
               "RANK_SIZE": str(rank_size), "JOB_ID": job_id}
        if rank_size > 1:
            env["RANK_TABLE_FILE"] = str(rank_table_file)
        envs.append(env)
    return envs


def gloo_slots(servers):
    """Horovod's slot of every rank, indexed by rank: ``servers`` = [(host, [rank ids in device order])].

    Horovod rank == RANK_ID; local rank = position on the host; cross rank = position among the hosts that
    have that local rank (as horovodrun assigns them).
    """
    size = sum(len(ranks) for _, ranks in servers)
    try:
        from horovod.runner.common.util.hosts import SlotInfo
    except ImportError as error:
        raise LaunchError("emulating %d NPU processes needs Horovod with Gloo (%s): HOROVOD_WITH_TENSORFLOW=1 "
                          "HOROVOD_WITH_GLOO=1 pip install horovod==0.28.1, or train on one device" % (size, error))
    slots = [None] * size
    for host, ranks in servers:
        for local_rank, rank in enumerate(ranks):
            peers = [name for name, others in servers if len(others) > local_rank]
            slots[rank] = SlotInfo(hostname=host, rank=rank, local_rank=local_rank, cross_rank=peers.index(host),
                                   size=size, local_size=len(ranks), cross_size=len(peers))
    return slots


def gloo_envs(envs, slots, address, port, interface):
    """``envs`` (NPU overlays, RANK_ID set) extended with what Horovod's Gloo needs to reach the rendezvous."""
    from horovod.runner.gloo_run import create_slot_env_vars

    common = {"HOROVOD_GLOO_RENDEZVOUS_ADDR": address, "HOROVOD_GLOO_RENDEZVOUS_PORT": str(port),
              "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo", "HOROVOD_GLOO_IFACE": interface,
              "HOROVOD_GLOO_TIMEOUT_SECONDS": str(GLOO_TIMEOUT_SECONDS)}
    return [dict(env, **dict(common, **create_slot_env_vars(slots[int(env["RANK_ID"])]))) for env in envs]


@contextlib.contextmanager
def rendezvous_server(address, port, slots):
    """Horovod's Gloo rendezvous (an HTTP key-value store) for ``slots`` (gloo_slots) served on ``address``:``port``
    (0: a free port) while the block runs; yields the server."""
    from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer

    try:
        server = RendezvousHTTPServer((address, port), RendezvousHandler, 0)
    except OSError as error:
        raise LaunchError("cannot serve the Gloo rendezvous on %s:%d (%s): stop the job that holds the port"
                          % (address, port, error))
    server.init(slots)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def gloo_rendezvous(envs):
    """Serve Horovod's Gloo rendezvous for one process per overlay on this host; yield the overlays extended.

    The NPU target's CPU emulation all-reduces through Horovod over Gloo (npu_training/distribute.py): the
    processes keep their NPU environment (RANK_ID, ...) and Horovod rank == RANK_ID.
    """
    slots = gloo_slots([("localhost", [int(env["RANK_ID"]) for env in envs])])
    with rendezvous_server("127.0.0.1", 0, slots) as server:
        yield gloo_envs(envs, slots, "127.0.0.1", server.server_address[1], "lo")


def parse_hosts(text):
    """'h1:8,h2:8' -> [('h1', 8), ('h2', 8)]: horovodrun's -H syntax, checked."""
    hosts = []
    for part in [p.strip() for p in str(text).split(",") if p.strip()]:
        name, _, slots = part.rpartition(":")
        if not name or not slots.isdigit() or int(slots) < 1:
            raise LaunchError("host %r is not HOST:PROCESSES: pass e.g. --hosts h1:8,h2:8" % part)
        hosts.append((name, int(slots)))
    if not hosts:
        raise LaunchError("no hosts given: pass e.g. --hosts h1:8,h2:8")
    return hosts


def train_command(target, devices, args, python="python3", hosts=None, interface=None):
    """argv of one training process; for GPUs on several devices or hosts, the horovodrun line starting them all.

    ``hosts``: [(host, processes)] for a multi-host GPU run (horovodrun reaches the others over ssh), whose
    collectives go over Gloo through ``interface`` (the one this host reaches the others through).
    """
    command = [python, "-m", train_module(target)] + list(args)
    if target == "gpu" and (hosts or len(devices) > 1):
        hosts = hosts or [("localhost", len(devices))]
        total = sum(slots for _, slots in hosts)
        launcher = [_horovodrun(python), "-np", str(total), "-H", ",".join("%s:%d" % h for h in hosts)]
        if interface:
            launcher += ["--gloo", "--network-interface", interface,
                         "--gloo-timeout-seconds", str(GLOO_TIMEOUT_SECONDS)]
        return launcher + command
    return command


def _horovodrun(python):
    """horovodrun next to ``python`` (a virtualenv's bin, not necessarily on PATH), else from PATH."""
    beside = os.path.join(os.path.dirname(python), "horovodrun")
    return beside if os.path.isfile(beside) else "horovodrun"


def run_processes(command, envs, cwd=None, grace_seconds=STOP_GRACE_SECONDS):
    """Start one process per env overlay, forward SIGINT/SIGTERM, return the first non-zero exit code (or 0).

    When a process fails, one line names its rank and exit status, the others get SIGTERM and, after
    ``grace_seconds``, SIGKILL: a dead rank ends the job in bounded time instead of leaving its peers
    blocked in a collective. (Checkpoints stay whole: TensorFlow switches its `checkpoint` index file
    atomically, after the files it names are complete.)
    """
    if len(envs) == 1:
        return subprocess.call(command, env=dict(os.environ, **envs[0]), cwd=cwd)
    procs = [subprocess.Popen(command, env=dict(os.environ, **env), cwd=cwd) for env in envs]
    stopping = []  # signals forwarded from the user: ranks then exit non-zero by design while the chief saves

    def send(signum):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    def forward(signum, _frame):
        stopping.append(signum)
        send(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = 0
        kill_at = None
        pending = list(procs)
        while pending:
            for proc in list(pending):
                status = proc.poll()
                if status is None:
                    continue
                pending.remove(proc)
                if status != 0 and code == 0:
                    code = status if status > 0 else 128 - status
                    if stopping:
                        continue
                    rank = envs[procs.index(proc)].get("RANK_ID", str(procs.index(proc)))
                    print("rank %s (pid %d) exited with status %d%s: stopping the other ranks"
                          % (rank, proc.pid, status, " (signal %d)" % -status if status < 0 else ""),
                          file=sys.stderr, flush=True)
                    send(signal.SIGTERM)
                    kill_at = time.monotonic() + grace_seconds
            if kill_at is not None and time.monotonic() > kill_at:
                send(signal.SIGKILL)
                kill_at = None
            time.sleep(0.2)
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
        environment["RANK_TABLE_FILE"] = CONTAINER_RUN + "/" + rundir.RANK_TABLE
    if emulate:
        environment[emulation.ENV] = "1"
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
    """`train` inside an image: pick the target from LIP2WAV_TARGET, one process per device in LIP2WAV_DEVICES.

    The container sees only these devices, so their logical ids are 0..N-1 (process_envs(container=True)).
    LIP2WAV_RANKS (rank ids in device order) and RANK_SIZE come from a several-server rank table.
    """
    target = os.environ.get("LIP2WAV_TARGET", "")
    devices = parse_devices(os.environ.get("LIP2WAV_DEVICES", "0"))
    ranks = None
    if os.environ.get("LIP2WAV_RANKS"):
        ranks = (parse_devices(os.environ["LIP2WAV_RANKS"]), int(os.environ["RANK_SIZE"]))
    envs = process_envs(target, devices, os.environ.get("RANK_TABLE_FILE"), container=True, ranks=ranks)
    command = train_command(target, devices, argv, python=sys.executable)
    if len(envs) == 1:
        os.environ.update(envs[0])
        os.execvp(command[0], command)
    return run_ranks(command, envs, emulate=emulation.requested())


def run_ranks(command, envs, emulate, cwd=None):
    """run_processes for NPU ranks; emulated ranks also get the Gloo rendezvous their collectives need."""
    if not emulate or len(envs) == 1:
        return run_processes(command, envs, cwd=cwd)
    with gloo_rendezvous(envs) as gloo_envs:
        return run_processes(command, gloo_envs, cwd=cwd)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "train":
        print("usage: python3 -m containers.launch train [TRAINER FLAGS...]", file=sys.stderr)
        return 2
    return cli.run(lambda: _container_train(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
