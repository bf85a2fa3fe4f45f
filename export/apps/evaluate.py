"""Score a checkpoint on a split: PESQ (narrow-band), STOI and ESTOI against the real audio.

Every clip of the split is synthesised exactly as export.synthesize does (sliding windows,
crossfaded mels, Griffin-Lim) and compared with its audio.wav at 16 kHz, both cut to the
same length. The trivial baseline, the training set's mean mel (per band) repeated for every
frame through the same vocoder, is scored the same way, so a model that learned nothing
from the lips shows up as one that does not beat it.

    python -m export.apps.evaluate --checkpoint RUN --data DATA --split test --out DIR
"""
import argparse
import collections
import csv
import logging
import math
import os
import sys
import warnings

import numpy as np
from tqdm import tqdm

from common import cli
from common.data import audio
from common.data import dataset
from common import atomic
from export import graph
from export.apps import synthesize as synth_lib
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)

METRICS = ("pesq", "stoi", "estoi")
SCORING_RATE = 16000
# Chess test set, Griffin-Lim vocoder; source: /work/shared/reference/README.md, "Headline figures".
REFERENCE_SCORES = collections.OrderedDict([
    ("paper (chess)", {"pesq": 1.400, "stoi": 0.418, "estoi": 0.290}),
    ("public checkpoint 324k (chess)", {"pesq": 1.387, "stoi": 0.350, "estoi": 0.240}),
    ("NPU port 360k (chess)", {"pesq": 1.385, "stoi": 0.409, "estoi": 0.285}),
])


class EvaluationError(Lip2WavError, RuntimeError):
    """An evaluation that cannot run; the message names the fix."""


def score(reference, degraded, sample_rate=SCORING_RATE):
    """{pesq, stoi, estoi} of ``degraded`` against ``reference`` (cut to equal length).

    PESQ is NaN when the pesq package rejects the pair (e.g. no speech found) so one clip
    cannot stop an evaluation; the summary counts such clips.
    """
    try:
        from pesq import pesq
        from pystoi import stoi
    except ImportError as exc:
        raise EvaluationError("scoring needs the pesq and pystoi packages (%s): pip install pesq pystoi, or "
                              "evaluate on a workstation with requirements.txt installed" % exc)
    if sample_rate != SCORING_RATE:
        raise EvaluationError("scores are defined at 16 kHz, got %d Hz; use hparams sample_rate=16000" % sample_rate)
    length = min(len(reference), len(degraded))
    reference = np.asarray(reference[:length], dtype=np.float64)
    degraded = np.asarray(degraded[:length], dtype=np.float64)
    try:
        pesq_score = float(pesq(sample_rate, reference, degraded, "nb"))
    except Exception as exc:  # the pesq package raises bare cypesq errors; any of them means "no score"
        LOG.warning("PESQ failed (%s: %s); recorded as NaN", type(exc).__name__, exc)
        pesq_score = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"pesq": pesq_score,
                "stoi": float(stoi(reference, degraded, sample_rate, extended=False)),
                "estoi": float(stoi(reference, degraded, sample_rate, extended=True))}


def mean_mel(data_dir, hp, split="train"):
    """The mean normalised mel of every frame of every clip of ``split``, per band: [num_mels]."""
    index = dataset.ClipIndex(data_dir, split, hp)
    total = np.zeros(hp.num_mels, dtype=np.float64)
    count = 0
    for clip in index.clips:
        spec = dataset.load_mels(clip, hp)
        total += spec.sum(axis=1)
        count += spec.shape[1]
    return (total / count).astype(np.float32)


def _mean(values):
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def evaluate(checkpoint, data_dir, split="test", out_dir=None, target="gpu", batch_size=8, plot=False,
             save_wavs=True, baseline_split="train", predictor=None):
    """Synthesise and score every clip of ``split``; write per-clip CSV and summary JSON into ``out_dir``.

    Returns the summary dict: per-system means ({"model": {...}, "baseline": {...}}), clip
    count, NaN-PESQ counts, the reference rows and the paths written. ``predictor`` replaces
    the checkpoint's model (see synthesize.Synthesizer); ``checkpoint`` then only labels the run.
    """
    if predictor is None:
        hp, checkpoint_path = graph.resolve_checkpoint(checkpoint)
    else:
        hp, checkpoint_path = predictor.hp, checkpoint
    index = dataset.ClipIndex(data_dir, split, hp)
    baseline_mel = mean_mel(data_dir, hp, baseline_split)
    out_dir = out_dir or os.path.join(_run_dir(checkpoint), "eval-%s" % split)
    try:
        for sub in (["wavs"] if save_wavs else []) + (["plots"] if plot else []) + [""]:
            os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    except OSError as exc:
        raise EvaluationError("cannot write to %s (%s); pass a writable --out" % (out_dir, exc.strerror or exc))
    rows = []
    with synth_lib.Synthesizer(checkpoint_path, target, batch_size, predictor) as synth:
        for clip in tqdm(index.clips, desc="evaluate %s" % split, unit="clip", disable=None):
            result = synth.synthesize_clip(clip, progress=False)
            if result.target_wav is None:
                raise EvaluationError("clip %s has no %s; evaluate needs the real audio of every clip"
                                      % (clip.id, dataset.AUDIO))
            baseline_wav = synth_lib.vocode(np.tile(baseline_mel, (len(result.mel), 1)), hp, len(result.wav))
            row = collections.OrderedDict([("clip", clip.id), ("seconds", len(result.wav) / float(hp.sample_rate))])
            for system, wav in (("model", result.wav), ("baseline", baseline_wav)):
                for metric, value in score(result.target_wav, wav, hp.sample_rate).items():
                    row["%s_%s" % (system, metric)] = value
            rows.append(row)
            if save_wavs:
                name = clip.id.replace("/", "__")
                synth_lib.write_outputs(result, os.path.join(out_dir, "wavs", name + ".wav"), hp)
                audio.save_wav(baseline_wav, os.path.join(out_dir, "wavs", name + ".baseline.wav"), hp.sample_rate)
            if plot:
                from common import plotting
                plotting.plot_mels(os.path.join(out_dir, "plots", clip.id.replace("/", "__") + ".png"),
                                   result.mel, result.target_mel, title=clip.id)
    summary = collections.OrderedDict([
        ("checkpoint", checkpoint_path), ("data", os.path.abspath(data_dir)), ("split", split),
        ("clips", len(rows)), ("seconds", float(sum(r["seconds"] for r in rows))), ("target", target),
        ("model", {m: _mean([r["model_" + m] for r in rows]) for m in METRICS}),
        ("baseline", {m: _mean([r["baseline_" + m] for r in rows]) for m in METRICS}),
        ("pesq_failed", {s: sum(1 for r in rows if math.isnan(r[s + "_pesq"])) for s in ("model", "baseline")}),
        ("baseline_definition", "mean mel of split %r per band, every frame, same Griffin-Lim" % baseline_split),
        ("reference", REFERENCE_SCORES),
        ("reference_source", "/work/shared/reference/README.md (chess test set, Griffin-Lim)"),
    ])
    summary["csv"] = os.path.join(out_dir, "scores.csv")
    summary["json"] = os.path.join(out_dir, "summary.json")
    _write_csv(summary["csv"], rows)
    atomic.write_json(summary["json"], summary, sort_keys=False)
    return summary


def _run_dir(checkpoint):
    path = checkpoint.rstrip("/")
    return path if os.path.isdir(path) else os.path.dirname(os.path.dirname(os.path.abspath(path)))


def _write_csv(path, rows):
    with atomic.replacing(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            for row in rows:
                writer.writerow(row)


def format_table(summary):
    """The means beside the reference rows, as a fixed-width text table."""
    lines = ["%-34s %7s %7s %7s" % ("system", "PESQ", "STOI", "ESTOI")]
    own = [("this model (%s, %d clips)" % (summary["split"], summary["clips"]), summary["model"]),
           ("mean-mel baseline", summary["baseline"])]
    for name, values in own + list(summary["reference"].items()):
        lines.append("%-34s %7.3f %7.3f %7.3f" % (name, values["pesq"], values["stoi"], values["estoi"]))
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m export.apps.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="Run directory or model.ckpt-N prefix.")
    parser.add_argument("--data", required=True, help="Preprocessed data directory with <split>.txt.")
    parser.add_argument("--split", default="test", help="Split to score (default test).")
    parser.add_argument("--out", default=None, help="Output folder (default <run>/eval-<split>).")
    parser.add_argument("--target", default="gpu", choices=sorted(graph.DECODE_LOOPS),
                        help="Which tree's decode loop runs the checkpoint.")
    parser.add_argument("--batch-size", type=int, default=8, help="Windows per forward pass.")
    parser.add_argument("--plot", action="store_true", help="Also write a predicted-vs-true mel PNG per clip.")
    parser.add_argument("--no-wavs", action="store_true", help="Do not keep the synthesised wavs.")
    return parser


def main(argv=None):
    """Entrypoint: prints the table and where the CSV/JSON went; `error: ...` and exit 2 on bad input."""
    args = build_parser().parse_args(argv)

    def body():
        summary = evaluate(args.checkpoint, args.data, args.split, args.out, args.target, args.batch_size,
                           args.plot, not args.no_wavs)
        print(format_table(summary))
        print("per-clip scores: %s\nsummary: %s" % (summary["csv"], summary["json"]))
    return cli.run(body, level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
