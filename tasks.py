"""Project tasks for invoke 2.2 (`invoke --list`, `invoke --help TASK`).

Images: `invoke build-npu` / `invoke build-gpu` build containers/{npu,gpu}/Dockerfile into lip2wav-npu / lip2wav-gpu.
Training: `invoke train --target npu|gpu --data DIR` runs the image with data, run dir and devices mounted;
`--emulate` runs it on the CPU, `--local` runs the tree on this host instead of in a container.
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

from invoke import Context, Exit, task

from containers import launch

ROOT = Path(__file__).resolve().parent
WHEELHOUSE_PORT = 38271
DOCKER_HOST_HINT = (
    "start one: `sudo systemctl start docker`, or as .ci/run does: `sudo dockerd --host "
    "unix:///run/lip2wav-docker.sock --storage-driver=vfs --bridge=none --iptables=false --ip6tables=false &` "
    "and `export DOCKER_HOST=unix:///run/lip2wav-docker.sock`"
)


def _echo(argv: list[str] | str) -> None:
    line = argv if isinstance(argv, str) else " ".join(shlex.quote(a) for a in argv)
    print("+ " + line, file=sys.stderr, flush=True)


def _docker():
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
def _wheel_source(wheelhouse: str) -> Iterator[str]:
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


def _build(target: str, base_image: str, requirements: str, wheelhouse: str, network: str, no_cache: bool) -> None:
    client = _docker()
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
    with _wheel_source(wheelhouse) as find_links:
        if find_links:
            buildargs.update(PIP_FIND_LINKS=find_links, PIP_NO_INDEX="1")
        argv = ["docker", "build", "-f", dockerfile, "-t", image, "--network", network]
        for key, value in buildargs.items():
            argv += ["--build-arg", f"{key}={value}"]
        _echo(argv + (["--no-cache"] if no_cache else []) + [str(ROOT)])
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


BUILD_HELP = {
    "base-image": "base image to build FROM (default: the vendor image named in the Dockerfile)",
    "requirements": "pip requirements file, relative to the repo (default: containers/requirements-image.txt)",
    "wheelhouse": "install requirements only from here: a wheel directory (served on 127.0.0.1) or a find-links URL",
    "network": "network of the build containers; 'host' also works on engines started with --bridge=none",
    "no-cache": "rebuild every layer",
}


@task(help=BUILD_HELP)
def build_npu(c: Context, base_image: str = "", requirements: str = "", wheelhouse: str = "",
              network: str = "host", no_cache: bool = False) -> None:
    """Build the Ascend NPU training image lip2wav-npu (containers/npu/Dockerfile)."""
    _build("npu", base_image, requirements, wheelhouse, network, no_cache)


@task(help=BUILD_HELP)
def build_gpu(c: Context, base_image: str = "", requirements: str = "", wheelhouse: str = "",
              network: str = "host", no_cache: bool = False) -> None:
    """Build the NVIDIA GPU training image lip2wav-gpu (containers/gpu/Dockerfile)."""
    _build("gpu", base_image, requirements, wheelhouse, network, no_cache)


def _npu_rank_table(run_dir: Path, devices: list[int], emulate: bool, container_path: bool) -> str | None:
    """Write the HCCL rank table into the run dir for multi-NPU runs; return the path the trainer will see."""
    if len(devices) < 2:
        return None
    if emulate:
        server_id, ips = "127.0.0.1", {d: "127.0.0.1" for d in devices}
    else:
        server_id, ips = socket.gethostbyname(socket.gethostname()), launch.read_device_ips()
    try:
        host_path = launch.write_rank_table(run_dir, launch.rank_table(devices, server_id, ips))
    except launch.LaunchError as exc:
        raise Exit(str(exc), code=2) from None
    print(f"wrote rank table {host_path}", file=sys.stderr)
    return f"{launch.CONTAINER_RUN}/{launch.RANK_TABLE_NAME}" if container_path else host_path


def _check_npu_nodes(devices: list[int]) -> None:
    nodes = [f"/dev/davinci{d}" for d in devices] + list(launch.ASCEND_CONTROL_DEVICES)
    missing = [n for n in nodes if not os.path.exists(n)]
    if missing:
        raise Exit(f"Ascend device nodes absent: {', '.join(missing)}; install the NPU driver or "
                   "run on the CPU with --emulate", code=2)


def _train_local(target: str, devices: list[int], args: list[str], emulate: bool, rank_table: str | None) -> None:
    command = launch.train_command(target, devices, args, python=sys.executable)
    envs = launch.process_envs(target, devices, rank_table)
    if emulate:
        envs = [dict(env, LIP2WAV_EMULATE="1") for env in envs]
    for env in envs:
        _echo(" ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items())) + " " +
              " ".join(shlex.quote(a) for a in command))
    code = launch.run_processes(command, envs, cwd=str(ROOT))
    if code:
        raise Exit(f"{launch.train_module(target)} exited with {code}", code=code)


def _train_container(target: str, image: str, data: Path, run_dir: Path, devices: list[int], emulate: bool,
                     args: list[str], rank_table: str | None) -> None:
    group = None
    if target == "npu" and not emulate:
        _check_npu_nodes(devices)
        group = os.stat(launch.ASCEND_CONTROL_DEVICES[0]).st_gid
    client = _docker()
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise Exit(f"image {image} not built: run `invoke build-{target}` first", code=2) from None
    kwargs = launch.docker_run_kwargs(target, image, data, run_dir, devices, emulate, os.getuid(), os.getgid(),
                                      ["train"] + args, rank_table=rank_table is not None, device_group=group)
    _echo(launch.docker_cli(kwargs))
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


@task(help={
    "target": "device stack: npu (Ascend, npu_training) or gpu (NVIDIA, gpu_training)",
    "data": "preprocessed dataset folder (e.g. made by `python -m common.synthetic --out DIR`)",
    "run-dir": "checkpoints and logs; resumes when it holds a checkpoint (default: runs/<target>)",
    "preset": "hyperparameter preset (common/config/hparams.py)",
    "hparams": "hyperparameter overrides, k=v,k=v",
    "steps": "training steps (0: the trainer's default)",
    "checkpoint-every": "steps between checkpoints (0: the trainer's default)",
    "devices": "device ids, one training process per device: 0 or 0,1,...",
    "emulate": "run the image on the CPU with no device (Ascend/NVIDIA stacks stubbed by the trainer)",
    "local": "run the tree on this host (`python -m <target>_training.train`) instead of in a container",
    "image": "image to run (default: lip2wav-<target>)",
})
def train(c: Context, target: str = "npu", data: str = "", run_dir: str = "", preset: str = "synthetic",
          hparams: str = "", steps: int = 0, checkpoint_every: int = 0, devices: str = "0",
          emulate: bool = False, local: bool = False, image: str = "") -> None:
    """Train Lip2Wav on Ascend NPUs or NVIDIA GPUs, in the device's image (default) or on this host (--local)."""
    if target not in launch.TARGETS:
        raise Exit(f"unknown --target {target!r}: use npu or gpu", code=2)
    try:
        device_ids = launch.parse_devices(devices)
    except launch.LaunchError as exc:
        raise Exit(str(exc), code=2) from None
    if not data:
        raise Exit("pass --data DIR (a preprocessed dataset, e.g. `python -m common.synthetic --out DIR`)", code=2)
    data_dir = Path(data).resolve()
    if not data_dir.is_dir():
        raise Exit(f"dataset folder {data_dir} not found: make one with "
                   f"`python -m common.synthetic --out {data}` or preprocess a speaker", code=2)
    run_path = Path(run_dir).resolve() if run_dir else ROOT / "runs" / target
    run_path.mkdir(parents=True, exist_ok=True)
    flags = dict(preset=preset, hparams=hparams, steps=steps or None, checkpoint_every=checkpoint_every or None)
    if local:
        # On the host the tree itself falls back to the CPU (one log line) when there is no device.
        rank_table = _npu_rank_table(run_path, device_ids, emulate, container_path=False) if target == "npu" else None
        _train_local(target, device_ids, launch.train_args(data_dir, run_path, **flags), emulate, rank_table)
        return
    rank_table = _npu_rank_table(run_path, device_ids, emulate, container_path=True) if target == "npu" else None
    args = launch.train_args(launch.CONTAINER_DATA, launch.CONTAINER_RUN, **flags)
    _train_container(target, image or launch.IMAGES[target], data_dir, run_path, device_ids, emulate, args,
                     rank_table)


def _run_entrypoint(module: str, argv: list[str]) -> None:
    """Run ``python -m <module>``'s main in-process; it has printed `error: ...` when it returns non-zero."""
    import importlib

    code = importlib.import_module(module).main(argv)
    if code:
        raise Exit(code=code)


@task(help={
    "checkpoint": "run directory (latest checkpoint) or model.ckpt-N prefix",
    "video": "a video, a preprocessed clip folder (<frame>.jpg crops) or a folder of videos (one wav each)",
    "out": "output .wav for one input, output folder for a folder of inputs",
    "target": "decode loop that runs the checkpoint: gpu (dynamic) or npu (static); same weights",
    "batch-size": "windows per forward pass",
    "plot": "also write <out>.png with the predicted mel (and the true one when the input has audio)",
    "mux": "also write <out>.mp4: the input video with the generated speech as its audio",
})
def synthesize(c: Context, checkpoint: str = "", video: str = "", out: str = "speech.wav", target: str = "gpu",
               batch_size: int = 8, plot: bool = False, mux: bool = False) -> None:
    """Speech from silent face video: face crops -> sliding windows -> mels -> Griffin-Lim 16 kHz wav."""
    if not checkpoint:
        raise Exit("pass --checkpoint RUN_DIR (from `invoke train` or `invoke demo`: demo/run)", code=2)
    if not video:
        raise Exit("pass --video clip.mp4 (or a preprocessed clip folder, or a folder of videos)", code=2)
    argv = ["--checkpoint", checkpoint, "--video", video, "--out", out, "--target", target,
            "--batch-size", str(batch_size)] + (["--plot"] if plot else []) + (["--mux"] if mux else [])
    _run_entrypoint("export.apps.synthesize", argv)


@task(help={
    "checkpoint": "run directory (latest checkpoint) or model.ckpt-N prefix",
    "data": "preprocessed data directory holding <split>.txt",
    "split": "split to score",
    "out": "folder for scores.csv, summary.json and wavs (default <run>/eval-<split>)",
    "target": "decode loop that runs the checkpoint: gpu or npu",
    "batch-size": "windows per forward pass",
    "plot": "also write a predicted-vs-true mel PNG per clip",
})
def evaluate(c: Context, checkpoint: str = "", data: str = "", split: str = "test", out: str = "",
             target: str = "gpu", batch_size: int = 8, plot: bool = False) -> None:
    """Score a checkpoint on a split (PESQ nb, STOI, ESTOI) next to the mean-mel baseline and the paper."""
    if not checkpoint or not data:
        raise Exit("pass --checkpoint RUN_DIR and --data DATA_DIR (e.g. demo/run and demo/data)", code=2)
    argv = ["--checkpoint", checkpoint, "--data", data, "--split", split, "--target", target,
            "--batch-size", str(batch_size)] + (["--out", out] if out else []) + (["--plot"] if plot else [])
    _run_entrypoint("export.apps.evaluate", argv)


@task(help={
    "out": "folder for the demo's data, run, eval and export",
    "steps": "training steps (0: the demo's default, tuned for about 10 minutes on 2 cores)",
    "clips": "synthetic clips to generate (0: the demo's default)",
    "no-export": "skip freezing the gpu/npu inference graphs",
})
def demo(c: Context, out: str = "demo", steps: int = 0, clips: int = 0, no_export: bool = False) -> None:
    """The README's main job: synthetic speaker -> train on the CPU -> synthesise -> score -> export."""
    argv = ["--out", out] + (["--steps", str(steps)] if steps else []) + (["--clips", str(clips)] if clips else [])
    _run_entrypoint("export.apps.demo", argv + (["--no-export"] if no_export else []))


@task(help={
    "checkpoint": "run directory (latest checkpoint) or model.ckpt-N prefix",
    "target": "graph to freeze: gpu (dynamic decode loop) or npu (static loop, NPU-linted, then ATC)",
    "out": "folder for lip2wav_<target>.pb/.pbtxt/.json (default <run>/export); npu adds atc_command.sh",
    "batch-size": "static batch of the frozen input face_windows",
    "soc-version": "npu only: ATC --soc_version, 'Ascend' + the chip name `npu-smi info` shows (default Ascend910)",
})
def export(c: Context, checkpoint: str = "", target: str = "npu", out: str = "", batch_size: int = 1,
           soc_version: str = "") -> None:
    """Freeze a checkpoint into a TF1 inference graph; for npu also write the ATC command (run when atc is on PATH)."""
    if not checkpoint:
        raise Exit("pass --checkpoint RUN_DIR (from `invoke train` or `invoke demo`: demo/run)", code=2)
    if target not in ("gpu", "npu"):
        raise Exit(f"unknown --target {target!r}: use npu or gpu", code=2)
    run_dir = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).resolve().parent.parent
    out_dir = out or str(run_dir / "export")
    _run_entrypoint("export.freeze", ["--checkpoint", checkpoint, "--target", target, "--out", out_dir,
                                      "--batch-size", str(batch_size)])
    if target == "npu":
        soc = ["--soc-version", soc_version] if soc_version else []
        _run_entrypoint("export.atc", ["--export-dir", out_dir] + soc)


@task(help={
    "speaker": "speaker whose listed videos to fetch: chem, chess, dl, eh or hs (common/config/speakers/)",
    "split": "only this split's videos: train, val or test (default: all)",
    "data": "data root; files go in DATA/<speaker>/videos and DATA/<speaker>/intervals",
    "url-template": "video URL with {id} (default $LIP2WAV_URL_TEMPLATE or the YouTube watch URL)",
})
def download(c: Context, speaker: str = "", split: str = "", data: str = "data", url_template: str = "") -> None:
    """Download a speaker's videos with yt-dlp (resumable) and cut them frame-accurately into 30 s pieces."""
    if not speaker:
        raise Exit("pass --speaker NAME (one of chem, chess, dl, eh, hs)", code=2)
    argv = ["--speaker", speaker, "--data", data] + (["--split", split] if split else []) + (
        ["--url-template", url_template] if url_template else [])
    _run_entrypoint("common.prep.download", argv)


@task(help={
    "speaker": "preprocess DATA/<speaker>/intervals (after `invoke download`) and write its split lists",
    "videos": "or: preprocess every video below this folder into DATA/preprocessed",
    "data": "data root (with --speaker) or data directory (with --videos)",
    "preset": "hyperparameter preset, sets fps and img_size (default: the speaker's, else default)",
    "hparams": "hyperparameter overrides, k=v,k=v",
    "detector": "face detector: haar, haar_alt2, dlib_hog or haar_alt2+dlib (`python -m export.tools.face_bench`)",
    "workers": "parallel clip workers",
    "split": "with --videos: also write DATA/<split>.txt listing the preprocessed clips",
})
def preprocess(c: Context, speaker: str = "", videos: str = "", data: str = "data", preset: str = "",
               hparams: str = "", detector: str = "", workers: int = 2, split: str = "") -> None:
    """Videos -> face crops (JPEG), 16 kHz audio.wav and mels.npz per clip; resumable, with a report."""
    if bool(speaker) == bool(videos):
        raise Exit("pass exactly one of --speaker NAME or --videos DIR", code=2)
    argv = (["--speaker", speaker] if speaker else ["--videos", videos]) + ["--data", data, "--workers", str(workers)]
    for flag, value in (("--preset", preset), ("--hparams", hparams), ("--detector", detector), ("--split", split)):
        if value:
            argv += [flag, value]
    _run_entrypoint("common.prep.preprocess", argv)


@task(name="dataset-report", help={
    "data": "preprocessed data directory (holding preprocessed/ and <split>.txt)",
    "preset": "hyperparameter preset that sets T, mel_step_size, fps (windows depend on them)",
    "hparams": "hyperparameter overrides, k=v,k=v",
})
def dataset_report(c: Context, data: str = "", preset: str = "synthetic", hparams: str = "") -> None:
    """Hours, clips, usable windows and missing frames per split (plus the last preprocessing run's drops)."""
    if not data:
        raise Exit("pass --data DIR (a preprocessed data directory)", code=2)
    _run_entrypoint("common.prep.preprocess", ["--report", data, "--preset", preset, "--hparams", hparams])


@task(name="lint-npu", help={
    "preset": "hyperparameter preset the graphs are built for",
    "target": "tree whose training and inference graphs are linted: npu (must be clean) or gpu (for contrast)",
})
def lint_npu(c: Context, preset: str = "synthetic", target: str = "npu") -> None:
    """Lint a tree's real training and inference graphs for what the Ascend compiler rejects (exit 1 on findings)."""
    _run_entrypoint("export.tools.lint_graphs", ["--preset", preset, "--target", target])


@task(help={
    "presets": "comma-separated presets to measure (chess at batch 24 takes tens of seconds a step on 2 cores)",
    "steps": "timed steps per tree after one warmup step (0: 10 for synthetic, 2 otherwise)",
    "out": "JSON results file",
})
def bench(c: Context, presets: str = "synthetic,chess", steps: int = 0, out: str = "bench.json") -> None:
    """Sec/step of the NPU tree (emulated) vs the GPU tree, and each feeder's supply vs the step's demand."""
    _run_entrypoint("export.tools.bench", ["--presets", presets, "--steps", str(steps), "--out", out])


@task(help={
    "preset": "hyperparameter preset to profile (chess at batch 24 takes tens of seconds a step on 2 cores)",
    "target": "device tree: gpu or npu (on an Ascend host the TF Adapter's profiler is switched on too)",
    "batch_size": "batch size (0: the preset's)",
    "steps": "timed untraced steps after one warm-up step",
    "out": "folder for the chrome-trace timeline and the JSON report",
})
def profile(c: Context, preset: str = "synthetic", target: str = "npu", batch_size: int = 0, steps: int = 2,
            out: str = "profile") -> None:
    """Where a training step's time goes: timeline, op time by model part and op type, FLOP/s vs the matmul peak."""
    _run_entrypoint("export.tools.profile", ["--preset", preset, "--tree", target, "--batch-size", str(batch_size),
                                             "--steps", str(steps), "--out", out])
