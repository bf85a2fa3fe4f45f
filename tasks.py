"""Project tasks for invoke 2.2 (`invoke --list`, `invoke --help TASK`): thin wiring over the entrypoints.

Images: `invoke build-npu` / `invoke build-gpu` build containers/{npu,gpu}/Dockerfile into lip2wav-npu / lip2wav-gpu.
Training: `invoke train --target npu|gpu --data DIR` runs the image with data, run dir and devices mounted;
`--emulate` runs it on the CPU, `--local` trains on this host instead of in a container.
The Docker plumbing lives in containers/engine.py, the launch plan in containers/launch.py. A task that wraps
a `python -m` entrypoint takes its flags' help text from that entrypoint's argparse declarations.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import sys
from pathlib import Path

from invoke import Context, Exit, task

from common import devices as device_targets
from common.training import rundir
from containers import cluster, engine, launch


def _argparse_help(module: str) -> dict[str, str]:
    """{flag without dashes: help} of every literal help= in ``module``'s add_argument calls (read, not imported,
    so `invoke --list` stays fast)."""
    source = (engine.ROOT / (module.replace(".", "/") + ".py")).read_text()
    found = {}
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument" and node.args):
            continue
        flag = node.args[0]
        text = next((k.value for k in node.keywords if k.arg == "help"), None)
        if isinstance(flag, ast.Constant) and str(flag.value).startswith("--") and isinstance(text, ast.Constant):
            found[flag.value[2:]] = text.value.replace("%%", "%")
    return found


def cli_task(module: str, *more_modules: str, name: str = "", **help_overrides: str):
    """@task wrapping `python -m module`: each flag's help is the entrypoint's own (declared in ``module`` or
    in ``more_modules`` it takes flags from) unless overridden here."""
    declared = {}
    for source in (module,) + more_modules:
        declared.update(_argparse_help(source))

    def decorate(function):
        params = [p.replace("_", "-") for p in list(inspect.signature(function).parameters)[1:]]
        overrides = {k.replace("_", "-"): v for k, v in help_overrides.items()}
        helps = {p: overrides.get(p) or declared[p] for p in params if p in overrides or p in declared}
        return task(help=helps, **({"name": name} if name else {}))(function)

    return decorate


def _run_entrypoint(module: str, argv: list[str]) -> None:
    """Run ``python -m <module>``'s main in-process; it has printed `error: ...` when it returns non-zero."""
    code = importlib.import_module(module).main(argv)
    if code:
        raise Exit(code=code)


def _flags(**values: object) -> list[str]:
    """--flag value for each set value (True: the bare flag; False, None and "" are left out)."""
    argv = []
    for key, value in values.items():
        if value is None or value is False or value == "":
            continue
        argv.append("--" + key.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    return argv


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
    engine.build_image("npu", base_image, requirements, wheelhouse, network, no_cache)


@task(help=BUILD_HELP)
def build_gpu(c: Context, base_image: str = "", requirements: str = "", wheelhouse: str = "",
              network: str = "host", no_cache: bool = False) -> None:
    """Build the NVIDIA GPU training image lip2wav-gpu (containers/gpu/Dockerfile)."""
    engine.build_image("gpu", base_image, requirements, wheelhouse, network, no_cache)


@task(help={
    "target": "device stack: npu (Ascend, npu_training) or gpu (NVIDIA, gpu_training)",
    "data": "preprocessed dataset folder (e.g. made by `python -m common.synthetic --out DIR`)",
    "run-dir": "checkpoints and logs; resumes when it holds a checkpoint (default: runs/<target>)",
    "preset": "hyperparameter preset (common/config/hparams.py; default: the trainer's, synthetic, or on resume "
              "the run's own)",
    "hparams": "hyperparameter overrides, k=v,k=v",
    "steps": "training steps (0: the trainer's default)",
    "checkpoint-every": "steps between checkpoints (0: the trainer's default)",
    "devices": "device ids, one training process per device (data parallel): 0 or 0,1,... (default 0; with "
               "--rank-table this server's devices in the table)",
    "hosts": "gpu with --local: several GPU servers for horovodrun, HOST:GPUS,... e.g. h1:8,h2:8 (ssh between them)",
    "rank-table": "npu: HCCL rank table JSON of several Ascend servers; run the same command on each server",
    "server-id": "npu with --rank-table: this server's server_id in the table, an address of this host (default: "
                 "the table's server_id that is one of this host's addresses)",
    "emulate": "run the image on the CPU with no device (Ascend/NVIDIA stacks stubbed by the trainer)",
    "local": "train on this host (`python -m <target>_training.train`) instead of in a container",
    "image": "image to run (default: lip2wav-<target>)",
})
def train(c: Context, target: str = "npu", data: str = "", run_dir: str = "", preset: str = "",
          hparams: str = "", steps: int = 0, checkpoint_every: int = 0, devices: str = "",
          emulate: bool = False, local: bool = False, image: str = "", hosts: str = "", rank_table: str = "",
          server_id: str = "") -> None:
    """Train Lip2Wav on Ascend NPUs or NVIDIA GPUs, in the device's image (default) or on this host (--local).

    Several --devices (or --hosts, or a --rank-table) train one model data-parallel: one process per device,
    gradients averaged every step, rank 0 writes the run directory.
    """
    if hosts and (target != "gpu" or not local):
        raise Exit("--hosts is for GPU servers with --local (horovodrun over ssh); Ascend servers take "
                   "--rank-table FILE", code=2)
    if rank_table and target != "npu":
        raise Exit("--rank-table is for Ascend servers; GPU servers take --hosts h1:8,h2:8", code=2)
    try:
        launch.train_module(target)
        device_ids = launch.parse_devices(devices or "0")
        host_list = launch.parse_hosts(hosts) if hosts else None
        interface = cluster.preflight(host_list, str(engine.ROOT), sys.executable) if host_list else None
        table = launch.read_rank_table(rank_table) if rank_table else None
        ranks = server = None
        if table is not None:
            server_id, pairs, size = cluster.this_server(table, server_id, device_ids if devices else [])
            device_ids, ranks, server = [d for d, _ in pairs], ([r for _, r in pairs], size), (table, server_id)
            if len(table["server_list"]) > 1 and emulate and not local:
                raise launch.LaunchError("emulating several servers needs --local: the images run without a "
                                         "network")
    except launch.LaunchError as exc:
        raise Exit(str(exc), code=2) from None
    if target == "npu" and local and len(device_ids) > 1 and not emulate and not ranks:
        emulate = engine.emulate_missing_npus(device_ids)
    if not data:
        raise Exit("pass --data DIR (a preprocessed dataset, e.g. `python -m common.synthetic --out DIR`)", code=2)
    data_dir = Path(data).resolve()
    if not data_dir.is_dir():
        raise Exit(f"dataset folder {data_dir} not found: make one with "
                   f"`python -m common.synthetic --out {data}` or preprocess a speaker", code=2)
    run_path = Path(run_dir).resolve() if run_dir else engine.ROOT / "runs" / target
    run_path.mkdir(parents=True, exist_ok=True)
    flags = dict(preset=preset, hparams=hparams, steps=steps or None, checkpoint_every=checkpoint_every or None)
    if local:
        # On the host the tree itself falls back to the CPU (one log line) when there is no device. A user's rank
        # table serves the ranks where it is: a copy in the shared run dir would be written by every server.
        table_path = (str(Path(rank_table).resolve()) if table else
                      engine.rank_table(target, run_path, device_ids, emulate, container_path=False))
        engine.train_local(target, device_ids, launch.train_args(data_dir, run_path, **flags), emulate, table_path,
                           ranks=ranks, hosts=host_list, server=server, interface=interface)
        return
    table_path = engine.rank_table(target, run_path, device_ids, emulate, container_path=True, table=table)
    args = launch.train_args(launch.CONTAINER_DATA, launch.CONTAINER_RUN, **flags)
    engine.train_container(target, image or launch.IMAGES[target], data_dir, run_path, device_ids, emulate, args,
                           table_path, ranks=ranks)


@cli_task("export.apps.synthesize", "export.graph",
          out="output .wav for one input, output folder for a folder of inputs")
def synthesize(c: Context, checkpoint: str = "", video: str = "", out: str = "speech.wav", target: str = "gpu",
               batch_size: int = 8, plot: bool = False, mux: bool = False) -> None:
    """Speech from silent face video: face crops -> sliding windows -> mels -> Griffin-Lim 16 kHz wav."""
    if not checkpoint:
        raise Exit("pass --checkpoint RUN_DIR (from `invoke train` or `invoke demo`: demo/run)", code=2)
    if not video:
        raise Exit("pass --video clip.mp4 (or a preprocessed clip folder, or a folder of videos)", code=2)
    _run_entrypoint("export.apps.synthesize", _flags(checkpoint=checkpoint, video=video, out=out, target=target,
                                                     batch_size=batch_size, plot=plot, mux=mux))


@cli_task("export.apps.evaluate", "export.graph")
def evaluate(c: Context, checkpoint: str = "", data: str = "", split: str = "test", out: str = "",
             target: str = "gpu", batch_size: int = 8, plot: bool = False, ceiling: bool = False,
             align_ms: int = 200) -> None:
    """Score a checkpoint on a split (PESQ nb, STOI, ESTOI, also after alignment; WER when clips have GRID words)
    next to the baseline, then rewrite the run's report page (RUN_DIR/report.html)."""
    if not checkpoint or not data:
        raise Exit("pass --checkpoint RUN_DIR and --data DATA_DIR (e.g. demo/run and demo/data)", code=2)
    _run_entrypoint("export.apps.evaluate", _flags(checkpoint=checkpoint, data=data, split=split, target=target,
                                                   batch_size=batch_size, out=out, plot=plot, ceiling=ceiling,
                                                   align_ms=align_ms))
    run_dir = Path(rundir.run_dir_of(checkpoint))
    _run_entrypoint("export.apps.report", [str(run_dir), "--eval", out or rundir.eval_dir(str(run_dir), split)])


@task(positional=["run_dir"], help={
    "run-dir": "run directory (from `invoke train` or `invoke demo`: demo/run)",
    "eval-dir": "evaluation folder to show (default: folders in or beside the run whose summary.json scored it)",
    "out": "output page (default RUN_DIR/report.html)",
    "max-clips": "test clips with players, face crops and mels; all stay in the score tables (0: the default, 10)",
})
def report(c: Context, run_dir: str, eval_dir: str = "", out: str = "", max_clips: int = 0) -> None:
    """One self-contained HTML page per run: players for truth/model/baseline, curves, scores; open it from disk."""
    _run_entrypoint("export.apps.report", [run_dir] + _flags(eval=eval_dir, out=out, max_clips=max_clips or None))


@cli_task("export.apps.demo", steps="training steps (0: the demo's default, tuned for about 10 minutes on 2 cores)",
          clips="synthetic clips to generate (0: the demo's default)",
          seconds="seconds per synthetic clip (0: the speaker's default)")
def demo(c: Context, out: str = "demo", steps: int = 0, clips: int = 0, seconds: float = 0.0,
         no_export: bool = False, speaker: str = "grid") -> None:
    """The README's main job: synthetic speaker -> train on the CPU -> synthesise -> score -> export.

    Exits non-zero (one `error:` line) when the model does not beat the mean-mel baseline."""
    _run_entrypoint("export.apps.demo", _flags(out=out, speaker=speaker, steps=steps or None, clips=clips or None,
                                               seconds=seconds or None, no_export=no_export))


@cli_task("export.freeze", out="folder for lip2wav_<target>.pb/.pbtxt/.json (default <run>/export); "
                               "npu adds atc_command.sh",
          soc_version="npu only: ATC --soc_version, 'Ascend' + the chip name `npu-smi info` shows "
                      "(default Ascend910)")
def export(c: Context, checkpoint: str = "", target: str = "npu", out: str = "", batch_size: int = 1,
           soc_version: str = "") -> None:
    """Freeze a checkpoint into a TF1 inference graph; for npu also write the ATC command (run when atc is on PATH)."""
    if not checkpoint:
        raise Exit("pass --checkpoint RUN_DIR (from `invoke train` or `invoke demo`: demo/run)", code=2)
    if target not in device_targets.TARGETS:
        raise Exit(f"unknown --target {target!r}: use one of {', '.join(device_targets.TARGETS)}", code=2)
    out_dir = out or str(Path(rundir.run_dir_of(checkpoint)) / rundir.EXPORT)
    _run_entrypoint("export.freeze", _flags(checkpoint=checkpoint, target=target, out=out_dir, batch_size=batch_size))
    if target == "npu":
        _run_entrypoint("export.atc", _flags(export_dir=out_dir, soc_version=soc_version))


@cli_task("export.apps.import_checkpoint", name="import-checkpoint",
          preset="hyperparameter preset the checkpoint was trained with (common/config/hparams.py)")
def import_checkpoint(c: Context, checkpoint: str = "", run_dir: str = "", preset: str = "chess",
                      hparams_json: str = "", hparams: str = "") -> None:
    """A checkpoint of the original Lip2Wav code -> a run directory that synthesize, evaluate, export and train
    accept (names mapped by rule; refused, nothing written, when a model variable is missing)."""
    if not checkpoint or not run_dir:
        raise Exit("pass --checkpoint PATH (the original's tacotron_model.ckpt-N or its folder) and --run-dir RUN",
                   code=2)
    _run_entrypoint("export.apps.import_checkpoint", _flags(checkpoint=checkpoint, run_dir=run_dir, preset=preset,
                                                            hparams_json=hparams_json, hparams=hparams))


@cli_task("common.prep.download", speaker="speaker whose listed videos to fetch: chem, chess, dl, eh or hs "
                                          "(common/config/speakers/)",
          url_template="video URL with {id} (default $LIP2WAV_URL_TEMPLATE or the YouTube watch URL)")
def download(c: Context, speaker: str = "", split: str = "", data: str = "data", url_template: str = "") -> None:
    """Download a speaker's videos with yt-dlp (resumable) and cut them frame-accurately into 30 s pieces."""
    if not speaker:
        raise Exit("pass --speaker NAME (one of chem, chess, dl, eh, hs)", code=2)
    _run_entrypoint("common.prep.download", _flags(speaker=speaker, data=data, split=split, url_template=url_template))


@cli_task("common.prep.preprocess", detector="face detector: haar, haar_alt2, dlib_hog or haar_alt2+dlib "
                                             "(`python -m export.tools.face_bench`)",
          workers="parallel clip workers",
          max_offset="drop clips still confidently more than N frames off after any fix (-1: keep all)",
          crop_style="original (Lip2Wav's tight box, BGR, unscaled audio; default) or square-margin (ours)")
def preprocess(c: Context, speaker: str = "", videos: str = "", grid: str = "", data: str = "data",
               preset: str = "", hparams: str = "", detector: str = "", workers: int = 2, split: str = "",
               fix_sync: bool = False, max_offset: int = -1, crop_style: str = "") -> None:
    """Videos -> face crops (JPEG), 16 kHz audio.wav and mels.npz per clip; resumable, with a report."""
    if sum(1 for source in (speaker, videos, grid) if source) != 1:
        raise Exit("pass exactly one of --speaker NAME, --videos DIR or --grid DIR", code=2)
    _run_entrypoint("common.prep.preprocess", _flags(speaker=speaker, videos=videos, grid=grid, data=data,
                                                     workers=workers, preset=preset, hparams=hparams,
                                                     detector=detector, split=split, fix_sync=fix_sync,
                                                     max_offset=max_offset if max_offset >= 0 else None,
                                                     crop_style=crop_style))


@task(name="dataset-report", help={
    "data": "preprocessed data directory (holding preprocessed/ and <split>.txt)",
    "preset": "hyperparameter preset that sets T, mel_step_size, fps (windows depend on them)",
    "hparams": "hyperparameter overrides, k=v,k=v",
})
def dataset_report(c: Context, data: str = "", preset: str = "synthetic", hparams: str = "") -> None:
    """Hours, clips, usable windows, missing frames per split, the last run's drops, audio-video offset histogram."""
    if not data:
        raise Exit("pass --data DIR (a preprocessed data directory)", code=2)
    _run_entrypoint("common.prep.preprocess", ["--report", data, "--preset", preset, "--hparams", hparams])


@cli_task("export.tools.lint_graphs", name="lint-npu",
          target="target whose training and inference graphs are linted: npu (must be clean) or gpu (for contrast)")
def lint_npu(c: Context, preset: str = "synthetic", target: str = "npu") -> None:
    """Lint a target's real training and inference graphs for what the Ascend compiler rejects (exit 1 on findings)."""
    _run_entrypoint("export.tools.lint_graphs", _flags(preset=preset, target=target))


@cli_task("export.tools.bench",
          presets="comma-separated presets to measure (chess at batch 24 takes tens of seconds a step on 2 cores)",
          steps="timed steps per target after one warmup step (0: 10 for synthetic, 2 otherwise)",
          world_sizes="data-parallel process counts measured on the synthetic preset, e.g. 1,2 ('' skips; needs "
                      "Horovod)")
def bench(c: Context, presets: str = "synthetic,chess", steps: int = 0, out: str = rundir.BENCH,
          world_sizes: str = "1,2", world_targets: str = "npu,gpu") -> None:
    """Sec/step of the NPU target (emulated) vs the GPU target, each feeder's supply vs the step's demand, and
    samples/s of 1 vs 2 data-parallel processes (scaling efficiency)."""
    _run_entrypoint("export.tools.bench", ["--presets", presets, "--steps", str(steps), "--out", out,
                                           "--world-sizes", world_sizes, "--world-targets", world_targets])


@cli_task("export.tools.profile",
          preset="hyperparameter preset to profile (chess at batch 24 takes tens of seconds a step on 2 cores)",
          target="target: gpu or npu (on an Ascend host the TF Adapter's profiler is switched on too)",
          batch_size="batch size (0: the preset's)")
def profile(c: Context, preset: str = "synthetic", target: str = "npu", batch_size: int = 0, steps: int = 2,
            out: str = "profile") -> None:
    """Where a training step's time goes: timeline, op time by model part and op type, FLOP/s vs the matmul peak."""
    _run_entrypoint("export.tools.profile", ["--preset", preset, "--target", target, "--batch-size", str(batch_size),
                                             "--steps", str(steps), "--out", out])
