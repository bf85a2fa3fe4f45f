"""Docker-engine plumbing for the invoke tasks: the client, image builds (with a local wheelhouse
served to the build), and training runs on this host or in a container.

Host-only (Python 3.11, the docker SDK, invoke); the images never ship it. What a run looks like
(commands, environments, rank tables, `docker run` arguments) is decided by containers/launch.py;
this module only carries it out. Failures raise invoke's Exit with the fix, like the tasks do.
"""
from __future__ import annotations

import functools
import http.server
import os
import shlex
import socket
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from invoke import Exit

from common import emulation
from common.training import rundir
from containers import cluster, launch

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE_PORT = 38271
DOCKER_HOST_HINT = (
    "start one: `sudo systemctl start docker`, or as .ci/run does: `sudo dockerd --host "
    "unix:///run/lip2wav-docker.sock --storage-driver=vfs --bridge=none --iptables=false --ip6tables=false &` "
    "and `export DOCKER_HOST=unix:///run/lip2wav-docker.sock`"
)


def echo(argv: list[str] | str) -> None:
    line = argv if isinstance(argv, str) else " ".join(shlex.quote(a) for a in argv)
    print("+ " + line, file=sys.stderr, flush=True)


def docker_client():
    """A connected Docker SDK client, or Exit naming how to start an engine."""
    import docker

    try:
        client = docker.from_env(timeout=15)
        client.ping()
    except docker.errors.DockerException as exc:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise Exit(f"no Docker engine reachable at {host} ({exc}); {DOCKER_HOST_HINT}", code=2) from None
    # Creating or removing a container copies whole layers on vfs engines (minutes), and training logs can be
    # silent for longer than any read timeout: wait as long as the engine needs.
    client.api.timeout = None
    return client


@contextmanager
def wheel_source(wheelhouse: str) -> Iterator[str]:
    """Yield a pip find-links URL: a URL as given, or a directory served on 127.0.0.1 for the build."""
    if not wheelhouse or not Path(wheelhouse).is_dir():
        yield wheelhouse
        return
    handler = functools.partial(_QuietHandler, directory=str(Path(wheelhouse).resolve()))
    try:  # a fixed URL keeps the pip layer's build cache valid across builds
        server = http.server.ThreadingHTTPServer(("127.0.0.1", WHEELHOUSE_PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


def build_image(target: str, base_image: str, requirements: str, wheelhouse: str, network: str, no_cache: bool) -> None:
    client = docker_client()
    import docker

    image = launch.IMAGES[target]
    dockerfile = f"containers/{target}/Dockerfile"
    buildargs = {}
    if base_image:
        buildargs["BASE_IMAGE"] = base_image
    if requirements:
        if not (ROOT / requirements).is_file():
            raise Exit(f"requirements file {requirements} not found: pass a path relative to {ROOT}", code=2)
        buildargs["REQUIREMENTS"] = requirements
    with wheel_source(wheelhouse) as find_links:
        if find_links:
            buildargs.update(PIP_FIND_LINKS=find_links, PIP_NO_INDEX="1")
        argv = ["docker", "build", "-f", dockerfile, "-t", image, "--network", network]
        for key, value in buildargs.items():
            argv += ["--build-arg", f"{key}={value}"]
        echo(argv + (["--no-cache"] if no_cache else []) + [str(ROOT)])
        start = time.monotonic()
        try:
            for chunk in client.api.build(path=str(ROOT), dockerfile=dockerfile, tag=image, buildargs=buildargs,
                                          network_mode=network, nocache=no_cache, rm=True, forcerm=True,
                                          decode=True):
                if "stream" in chunk:
                    sys.stdout.write(chunk["stream"])
                    sys.stdout.flush()
                elif "error" in chunk:
                    raise Exit(f"building {image} failed: {chunk['error'].strip()}", code=1)
        except docker.errors.APIError as exc:
            raise Exit(f"building {image} failed: {exc.explanation or exc}", code=1) from None
    size = client.images.get(image).attrs["Size"]
    print(f"built {image} ({size / 1e9:.2f} GB) in {time.monotonic() - start:.0f} s", file=sys.stderr)


def rank_table(target: str, run_dir: Path, devices: list[int], emulate: bool, container_path: bool,
               table: dict | None = None) -> str | None:
    """Write the HCCL rank table (``table``, or one for this server) into the run dir for multi-NPU runs.

    Returns the path the trainer will see.
    """
    if target != "npu" or (len(devices) < 2 and table is None):
        return None
    if table is None:
        if emulate:
            server_id, ips = "127.0.0.1", {d: "127.0.0.1" for d in devices}
        else:
            server_id, ips = socket.gethostbyname(socket.gethostname()), launch.read_device_ips()
    try:
        host_path = launch.write_rank_table(run_dir, table or launch.rank_table(devices, server_id, ips))
    except launch.LaunchError as exc:
        raise Exit(str(exc), code=2) from None
    print(f"wrote rank table {host_path}", file=sys.stderr)
    return f"{launch.CONTAINER_RUN}/{rundir.RANK_TABLE}" if container_path else host_path


def check_npu_nodes(devices: list[int]) -> None:
    nodes = [f"/dev/davinci{d}" for d in devices] + list(launch.ASCEND_CONTROL_DEVICES)
    missing = [n for n in nodes if not os.path.exists(n)]
    if missing:
        raise Exit(f"Ascend device nodes absent: {', '.join(missing)}; install the NPU driver or "
                   "run on the CPU with --emulate", code=2)


def emulate_missing_npus(devices: list[int]) -> bool:
    """True (and says so) when this host lacks some of the NPUs a local multi-NPU run asks for."""
    missing = [f"/dev/davinci{d}" for d in devices if not os.path.exists(f"/dev/davinci{d}")]
    if missing:
        print(f"no {', '.join(missing)} on this host: emulating the NPU ranks on the CPU (--emulate)",
              file=sys.stderr)
    return bool(missing)


def train_local(target: str, devices: list[int], args: list[str], emulate: bool, rank_table: str | None,
                ranks: tuple[list[int], int] | None = None, hosts: list[tuple[str, int]] | None = None,
                server: tuple[dict, str] | None = None, interface: str | None = None) -> None:
    """Run the ranks of this host. ``interface``: set for several GPU hosts (cluster.preflight), horovodrun starts
    them all. ``server``: (several-server rank table, this server's id), whose emulated ranks meet the other
    servers' at the rendezvous of the table's first server (cluster.server_rendezvous)."""
    if interface:
        command = launch.train_command(target, devices, args, python=sys.executable, hosts=hosts, interface=interface)
        overlay = {emulation.ENV: "1"} if emulate else {}  # horovodrun passes its environment to every rank
        echo(" ".join([f"{k}={v}" for k, v in overlay.items()] + [shlex.quote(a) for a in command]))
        code = cluster.run_horovodrun(command, hosts, cwd=str(ROOT), env=dict(os.environ, **overlay))
        if code:
            raise Exit(f"horovodrun exited with {code}", code=code)
        return
    command = launch.train_command(target, devices, args, python=sys.executable, hosts=hosts)
    # Several GPU hosts: each rank sees every GPU of its host and picks its local rank's (gpu_training/distribute.py).
    envs = [{}] if hosts else launch.process_envs(target, devices, rank_table, ranks=ranks)
    if emulate:
        envs = [emulation.environment(env) for env in envs]
    for env in envs:
        echo(" ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())) + " " +
             " ".join(shlex.quote(a) for a in command))
    try:
        if server and emulate and len(server[0]["server_list"]) > 1:
            table, server_id = server
            interface = cluster.local_addresses()[server_id]
            with cluster.server_rendezvous(envs, table, server_id, interface) as gloo_envs:
                code = launch.run_processes(command, gloo_envs, cwd=str(ROOT))
        else:
            code = launch.run_ranks(command, envs, emulate=emulate and target == "npu", cwd=str(ROOT))
    except launch.LaunchError as exc:
        raise Exit(str(exc), code=2) from None
    if code:
        raise Exit(f"{launch.train_module(target)} exited with {code}", code=code)


def train_container(target: str, image: str, data: Path, run_dir: Path, devices: list[int], emulate: bool,
                    args: list[str], rank_table: str | None, ranks: tuple[list[int], int] | None = None) -> None:
    group = None
    if target == "npu" and not emulate:
        check_npu_nodes(devices)
        group = os.stat(launch.ASCEND_CONTROL_DEVICES[0]).st_gid
    client = docker_client()
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise Exit(f"image {image} not built: run `invoke build-{target}` first", code=2) from None
    kwargs = launch.docker_run_kwargs(target, image, data, run_dir, devices, emulate, os.getuid(), os.getgid(),
                                      ["train"] + args, rank_table=rank_table is not None, device_group=group)
    if ranks is not None:
        kwargs["environment"].update(LIP2WAV_RANKS=",".join(str(r) for r in ranks[0]), RANK_SIZE=str(ranks[1]))
    echo(launch.docker_cli(kwargs))
    try:
        container = client.containers.create(**kwargs)
    except docker.errors.APIError as exc:
        raise Exit(f"cannot create the container: {exc.explanation or exc}", code=2) from None
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            hint = "; install the NVIDIA Container Toolkit or use --emulate" if target == "gpu" else ""
            raise Exit(f"cannot start {image}: {exc.explanation or exc}{hint}", code=2) from None
        try:
            for chunk in container.logs(stream=True, follow=True):
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the container", file=sys.stderr)
            container.stop(timeout=30)
        status = container.wait()["StatusCode"]
    finally:
        container.remove(force=True)
    if status:
        raise Exit(f"training in {image} exited with {status}", code=status)
