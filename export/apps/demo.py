"""The whole pipeline on an embedded synthetic speaker, on the CPU, in about ten minutes.

make the speaker (GRID sentences by espeak-ng on the astronaut by default, --speaker astronaut for the
formant voice) -> train (GPU target on the CPU) -> synthesise and score the held-out test clips against the
mean-mel baseline (plus WER and the vocoder ceiling for GRID) -> freeze inference graphs for gpu and npu ->
the run report page (run/report.html) -> summary. The GPU target is used because on a CPU it is the plain
TensorFlow path (FIFOQueue feeder,
dynamic decode loop); NPU emulation runs the same graph with the Ascend bits stubbed and
is no faster here. Every stage is resumable: data and checkpoints already in --out are reused.

    python -m export.apps.demo --out demo
"""
import argparse
import logging
import os
import subprocess
import sys
import time

from common import cli
from common import atomic
from common import devices
from common.config import hparams as hparams_lib
from common.synthetic import speakers
from common.errors import Lip2WavError
from common.training import rundir

LOG = logging.getLogger(__name__)

DEFAULT_STEPS = 1000
DEFAULT_CLIPS = 40
TRAIN_TARGET = "gpu"
# grid is the default speaker (common/synthetic/speakers.py): it trains in the same ~10 minutes as the astronaut
# and its words make the scores say whether speech was recovered (WER 0.41 vs the baseline's 1.00 on 240 words).
DEFAULT_SPEAKER = "grid"


class DemoError(Lip2WavError, RuntimeError):
    """A demo stage that failed; the message names the fix."""


def run_demo(out="demo", steps=DEFAULT_STEPS, clips=DEFAULT_CLIPS, seconds=None, hparams="",
             checkpoint_every=0, export_graphs=True, speaker=DEFAULT_SPEAKER):
    """Run every stage into ``out``; returns the summary dict (also written to out/demo_summary.json).

    ``seconds`` per clip defaults to the speaker's (speakers.DEFAULT_SECONDS).
    """
    from export.apps import evaluate as evaluate_lib
    from export.apps import report as report_lib
    started = time.time()
    timings = {}
    out = os.path.abspath(out)
    data_dir, run_dir = os.path.join(out, "data"), os.path.join(out, "run")
    hp = hparams_lib.resolve("synthetic", overrides=hparams)

    seconds = seconds or speakers.DEFAULT_SECONDS[speaker]
    tick = time.time()
    try:
        speakers.make(data_dir, hp, speaker, clips=clips, seconds=seconds, seed=0)
    except OSError as exc:
        raise DemoError("cannot write the demo data into %s (%s); pass a writable --out" % (out, exc.strerror or exc))
    timings["data"] = time.time() - tick

    tick = time.time()
    command = [sys.executable, "-m", "%s_training.train" % TRAIN_TARGET, "--data", data_dir, "--run-dir", run_dir,
               "--preset", "synthetic", "--steps", str(steps),
               "--checkpoint-every", str(checkpoint_every or max(steps // 2, 1)), "--log-every", "50"]
    if hparams:
        command += ["--hparams", hparams]
    LOG.info("training: %s", " ".join(command))
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore::UserWarning,ignore::DeprecationWarning")
    code = subprocess.call(command, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), env=env)
    if code:
        raise DemoError("training exited with %d (see its output above); fix that, then rerun `invoke demo` "
                        "(it resumes)" % code)
    timings["train"] = time.time() - tick

    tick = time.time()
    scores = evaluate_lib.evaluate(run_dir, data_dir, "test", os.path.join(out, "eval"), plot=True, ceiling=True)
    timings["evaluate"] = time.time() - tick

    exported = {}
    if export_graphs:
        tick = time.time()
        exported = _export(run_dir, os.path.join(out, rundir.EXPORT))
        timings["export"] = time.time() - tick
    tick = time.time()
    report_path = report_lib.build_report(run_dir, [os.path.join(out, "eval")])
    timings["report"] = time.time() - tick
    timings["total"] = time.time() - started

    summary = {
        "data": os.path.abspath(data_dir), "run": os.path.abspath(run_dir),
        "wavs": os.path.abspath(os.path.join(out, "eval", rundir.EVAL_WAVS)),
        "plots": os.path.abspath(os.path.join(out, "eval", rundir.PLOTS)),
        "scores_csv": os.path.abspath(scores["csv"]), "scores_json": os.path.abspath(scores["json"]),
        "report": report_path, "exported": exported, "model": scores["model"], "baseline": scores["baseline"],
        "beats_baseline_stoi": scores["model"]["stoi"] > scores["baseline"]["stoi"],
        "steps": steps, "clips": clips, "seconds_per_clip": seconds, "train_target": TRAIN_TARGET, "speaker": speaker,
        "seconds": timings,
    }
    for key in ("ceiling", "words"):
        if key in scores:
            summary[key] = scores[key]
    path = os.path.join(out, "demo_summary.json")
    atomic.write_json(path, summary, sort_keys=False)
    summary["table"] = evaluate_lib.format_table(scores)
    if "words" in scores:
        summary["table"] += "\n\n" + evaluate_lib.format_word_table(scores)
    return summary


def _export(run_dir, out_dir):
    """Frozen graphs for both targets; {target: .pb path}."""
    from export import freeze
    exported = {}
    for target in devices.TARGETS:
        manifest = freeze.freeze(run_dir, out_dir, target=target, batch_size=1)
        exported[target] = os.path.abspath(os.path.join(out_dir, manifest["graph"]))
    return exported


def format_summary(summary):
    lines = [
        summary["table"],
        "",
        "model STOI %.3f vs mean-mel baseline STOI %.3f (%s)" % (
            summary["model"]["stoi"], summary["baseline"]["stoi"],
            "model wins" if summary["beats_baseline_stoi"] else "baseline wins: train longer with --steps"),
    ]
    if "words" in summary:
        lines.append("model WER %.3f vs mean-mel baseline WER %.3f (ceiling %.3f: true mel through Griffin-Lim)" % (
            summary["words"]["model"]["wer"], summary["words"]["baseline"]["wer"], summary["words"]["ceiling"]["wer"]))
    lines += [
        "wavs (model and baseline per test clip): %s" % summary["wavs"],
        "mel plots (predicted vs true):           %s" % summary["plots"],
        "scores: %s  summary: %s" % (summary["scores_csv"], summary["scores_json"]),
        "checkpoints and training plots:          %s" % summary["run"],
        "run report, open it in a browser:        %s" % summary["report"],
    ]
    for target, path in sorted(summary["exported"].items()):
        lines.append("frozen %s graph: %s" % (target, path))
    lines.append("wall time %.0f s (%s)" % (summary["seconds"]["total"], ", ".join(
        "%s %.0f s" % (k, v) for k, v in sorted(summary["seconds"].items()) if k != "total")))
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m export.apps.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="demo", help="Folder for data, run, eval and export (default ./demo).")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="Training steps.")
    parser.add_argument("--clips", type=int, default=DEFAULT_CLIPS, help="Synthetic clips (10%% val, 10%% test).")
    parser.add_argument("--seconds", type=float, default=None,
                        help="Seconds per synthetic clip (default: the speaker's, %s)." % ", ".join(
                            "%s %.0f" % kv for kv in sorted(speakers.DEFAULT_SECONDS.items())))
    parser.add_argument("--hparams", default="", help="Overrides of the synthetic preset, k=v,...")
    parser.add_argument("--speaker", default=DEFAULT_SPEAKER, choices=speakers.SPEAKERS,
                        help="Embedded speaker: astronaut (formant vowels) or grid (GRID sentences, adds WER).")
    parser.add_argument("--no-export", action="store_true", help="Skip freezing the inference graphs.")
    return parser


def main(argv=None):
    """Entrypoint: the summary; one `error: ...` line and exit 2 on failure or when the baseline wins."""
    args = build_parser().parse_args(argv)

    def body():
        summary = run_demo(args.out, args.steps, args.clips, args.seconds, args.hparams,
                           export_graphs=not args.no_export, speaker=args.speaker)
        print(format_summary(summary))
        require_model_wins(summary)
    return cli.run(body)


def require_model_wins(summary):
    """The demo's headline is that the model beats the mean-mel baseline; when it does not, the demo fails."""
    if not summary["beats_baseline_stoi"]:
        raise DemoError("the model (STOI %.3f) did not beat the mean-mel baseline (STOI %.3f) after %d steps; "
                        "train longer: rerun with a larger --steps (training resumes)"
                        % (summary["model"]["stoi"], summary["baseline"]["stoi"], summary["steps"]))


if __name__ == "__main__":
    sys.exit(main())
