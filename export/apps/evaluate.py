"""Score a checkpoint on a split: PESQ (narrow-band), STOI and ESTOI against the real audio.

Every clip of the split is synthesised exactly as export.apps.synthesize does (sliding windows,
crossfaded mels, Griffin-Lim) and compared with its audio.wav at 16 kHz, both cut to the
same length. The trivial baseline, the training set's mean mel (per band) repeated for every
frame through the same vocoder, is scored the same way, so a model that learned nothing
from the lips shows up as one that does not beat it.

When every clip of the split has words (a GRID transcript.align, common/data/align.py), each
system is also scored for words with the fixed recognizer of export/scoring/words.py (WER and
per-slot accuracy), next to the ceiling: the true mel through the same Griffin-Lim.

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

from common import cli
from common.data import align
from common.data import audio
from common.data import datadir
from common.data import dataset
from common import atomic
from common import progress
from export import graph
from export.apps import synthesize as synth_lib
from export.scoring import words as words_lib
from common.errors import Lip2WavError
from common.training import rundir

LOG = logging.getLogger(__name__)

METRICS = ("pesq", "stoi", "estoi")
SCORING_RATE = 16000
# Chess test set, Griffin-Lim vocoder, 16 kHz, PESQ narrow-band; cited by REFERENCE_SOURCE.
REFERENCE_SCORES = collections.OrderedDict([
    ("paper (chess)", {"pesq": 1.400, "stoi": 0.418, "estoi": 0.290}),
    ("public checkpoint 324k (chess)", {"pesq": 1.387, "stoi": 0.350, "estoi": 0.240}),
    ("NPU port 360k (chess)", {"pesq": 1.385, "stoi": 0.409, "estoi": 0.285}),
])
REFERENCE_SOURCE = ('paper: Prajwal et al., "Learning Individual Speaking Styles for Accurate Lip to Speech '
                    'Synthesis", CVPR 2020 (arXiv:2005.08209); checkpoint rows: the README of the Ascend port, '
                    'github.com/Ascend-Huawei/Lip2Wav')
# GRID, a commercial recognizer; source: the Lip2Wav paper (Prajwal et al., CVPR 2020), GRID table, as quoted
# in issue 15. Another data set and another recognizer than ours: shown apart, never compared row to row.
GRID_REFERENCE_SCORES = collections.OrderedDict([
    ("paper Lip2Wav (GRID, commercial ASR)", {"pesq": 1.772, "stoi": 0.731, "estoi": 0.535, "wer": 0.1408}),
])
WORD_SYSTEMS = ("model", "ceiling", "baseline", "truth")


CEILING_DEFINITION = "the true mel through the same Griffin-Lim: the best this vocoder allows"


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


ALIGN_MS = 200  # default lag window for the aligned scores: +-6 frames at 30 fps


def aligned_scores(reference, degraded, sample_rate, max_lag_ms):
    """Scores of ``degraded`` moved by the lag within +-max_lag_ms that best follows ``reference``.

    A constant shift between generated and real speech lowers STOI for reasons the model
    does not control (e.g. a source clip out of sync); these scores leave it out.
    Returns an ordered dict: lag_ms (> 0: the generated speech was late) and aligned_<metric>.
    """
    from common.prep import sync
    lag = sync.lag_between(reference, degraded, sample_rate, max_lag_ms / 1000.0)
    if lag >= 0:
        reference, degraded = reference[:len(reference) - lag], degraded[lag:]
    else:
        reference, degraded = reference[-lag:], degraded[:len(degraded) + lag]
    row = collections.OrderedDict([("lag_ms", 1000.0 * lag / sample_rate)])
    row.update(("aligned_" + metric, value) for metric, value in score(reference, degraded, sample_rate).items())
    return row


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


def evaluate(checkpoint, data_dir, split="test", out_dir=None, target="gpu", batch_size=graph.DEFAULT_BATCH_SIZE, plot=False,
             save_wavs=True, baseline_split="train", ceiling=False, align_ms=ALIGN_MS, predictor=None):
    """Synthesise and score every clip of ``split``; write per-clip CSV and summary JSON into ``out_dir``.

    Returns the summary dict: per-system means ({"model": {...}, "baseline": {...}}, and "ceiling",
    the true mel through the same vocoder, when asked or when the clips have words), clip count,
    NaN-PESQ counts, the reference rows and the paths written. ``predictor`` replaces the
    checkpoint's model (see synthesize.Synthesizer); ``checkpoint`` then only labels the run.
    """
    if predictor is None:
        hp, checkpoint_path = graph.resolve_checkpoint(checkpoint)
    else:
        hp, checkpoint_path = predictor.hp, checkpoint
    index = dataset.ClipIndex(data_dir, split, hp)
    baseline_mel = mean_mel(data_dir, hp, baseline_split)
    transcripts = clip_transcripts(index)
    recognizer = words_lib.Recognizer() if transcripts else None
    ceiling = ceiling or bool(transcripts)
    out_dir = out_dir or rundir.eval_dir(rundir.run_dir_of(checkpoint), split)
    try:
        for sub in ([rundir.EVAL_WAVS] if save_wavs else []) + ([rundir.PLOTS] if plot else []) + [""]:
            os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    except OSError as exc:
        raise EvaluationError("cannot write to %s (%s); pass a writable --out" % (out_dir, exc.strerror or exc))
    rows = []
    with synth_lib.Synthesizer(checkpoint_path, target, batch_size, predictor) as synth:
        for clip in progress.bar(index.clips, desc="evaluate %s" % split, unit="clip"):
            result = synth.synthesize_clip(clip, progress=False)
            if result.target_wav is None:
                raise EvaluationError("clip %s has no %s; evaluate needs the real audio of every clip"
                                      % (clip.id, datadir.AUDIO))
            mels = {"baseline": np.tile(baseline_mel, (len(result.mel), 1)), "ceiling": result.target_mel}
            systems = [("model", result.wav), ("baseline", synth_lib.vocode(mels["baseline"], hp, len(result.wav)))]
            if ceiling:
                systems.append(("ceiling", synth_lib.vocode(mels["ceiling"], hp, len(result.wav))))
            row = collections.OrderedDict([("clip", clip.id), ("seconds", len(result.wav) / float(hp.sample_rate))])
            for system, wav in systems:
                for metric, value in score(result.target_wav, wav, hp.sample_rate).items():
                    row["%s_%s" % (system, metric)] = value
            if transcripts:
                row.update(word_row(recognizer, dict(systems, truth=result.target_wav), hp.sample_rate))
            if align_ms > 0:
                row.update(("model_" + k, v) for k, v in aligned_scores(result.target_wav, result.wav, hp.sample_rate,
                                                                         align_ms).items())
            rows.append(row)
            if save_wavs:
                name = clip.id.replace("/", "__")
                synth_lib.write_outputs(result, os.path.join(out_dir, rundir.EVAL_WAVS, name + ".wav"), hp)
                for system, wav in systems[1:]:
                    path = os.path.join(out_dir, rundir.EVAL_WAVS, "%s.%s.wav" % (name, system))
                    audio.save_speech(wav, mels[system].T, path, hp)
            if plot:
                from common import plotting
                plotting.plot_mels(os.path.join(out_dir, rundir.PLOTS, clip.id.replace("/", "__") + ".png"),
                                   result.mel, result.target_mel, title=clip.id)
    names = ["model", "baseline"] + (["ceiling"] if ceiling else [])
    summary = collections.OrderedDict([
        ("checkpoint", checkpoint_path), ("data", os.path.abspath(data_dir)), ("split", split),
        ("clips", len(rows)), ("seconds", float(sum(r["seconds"] for r in rows))), ("target", target),
    ])
    for system in names:
        summary[system] = {m: _mean([r["%s_%s" % (system, m)] for r in rows]) for m in METRICS}
    summary["pesq_failed"] = {s: sum(1 for r in rows if math.isnan(r[s + "_pesq"])) for s in names}
    summary["baseline_definition"] = "mean mel of split %r per band, every frame, same Griffin-Lim" % baseline_split
    if ceiling:
        summary["ceiling_definition"] = CEILING_DEFINITION
    summary["reference"] = REFERENCE_SCORES
    summary["reference_source"] = REFERENCE_SOURCE
    if transcripts:
        summary.update(word_summary(rows, transcripts))
    if align_ms > 0:
        summary.update(_aligned_summary(rows, align_ms))
    summary["csv"] = os.path.join(out_dir, rundir.EVAL_SCORES)
    summary["json"] = os.path.join(out_dir, rundir.EVAL_SUMMARY)
    _write_csv(summary["csv"], rows)
    atomic.write_json(summary["json"], summary, sort_keys=False)
    return summary


def clip_transcripts(index):
    """{clip id: words} when every clip of the index has a transcript (GRID data), else None."""
    found = {clip.id: align.clip_words(clip.path) for clip in index.clips}
    missing = [clip_id for clip_id, words in found.items() if words is None]
    if missing and len(missing) < len(found):
        LOG.warning("%d of %d clips have no %s (e.g. %s): no word scores", len(missing), len(found),
                    datadir.TRANSCRIPT, missing[0])
    return found if found and not missing else None


def word_row(recognizer, wavs, sample_rate):
    """One clip's recognised words per system (wavs: system name -> waveform, the WORD_SYSTEMS at least)."""
    return collections.OrderedDict((system + "_words", " ".join(recognizer.recognize(wavs[system], sample_rate)))
                                   for system in WORD_SYSTEMS)


def word_summary(rows, transcripts):
    """Summary entries of data with transcripts: WER / per-slot accuracy per system, the paper's GRID row."""
    references = [transcripts[row["clip"]] for row in rows]
    return collections.OrderedDict([
        ("words", collections.OrderedDict(
            (system, words_lib.word_scores(references, [r[system + "_words"].split() for r in rows]))
            for system in WORD_SYSTEMS)),
        ("words_definition", "pocketsphinx 5.1.1 en-us + GRID JSGF grammar (export/scoring/words.py); "
                             "ceiling = true mel through the same Griffin-Lim; truth = the clip's audio.wav"),
        ("grid_reference", GRID_REFERENCE_SCORES),
    ])


def format_word_table(summary):
    """Data with transcripts: PESQ/STOI/ESTOI/WER/per-slot accuracy per system, then the paper's GRID row apart."""
    slots = list(align.SLOTS)
    header = "%-30s %6s %6s %6s %6s " % ("system (this data)", "PESQ", "STOI", "ESTOI", "WER") + " ".join(
        "%6s" % slot[:6] for slot in slots)
    lines = [header]
    for system, label in (("model", "this model"), ("ceiling", "ceiling: true mel + G-L"),
                          ("baseline", "mean-mel baseline"), ("truth", "recorded audio (no vocoder)")):
        acoustic = summary.get(system)
        words = summary["words"][system]
        lines.append("%-30s %6s %6s %6s %6.3f " % (
            label, *("%6.3f" % acoustic[m] if acoustic else "%6s" % "-" for m in ("pesq", "stoi", "estoi")),
            words["wer"]) + " ".join("%6.3f" % words["slot_accuracy"][slot] for slot in slots))
    lines += ["", "reference (another data set and recognizer; not comparable row to row):",
              "%-40s %6s %6s %6s %6s" % ("system", "PESQ", "STOI", "ESTOI", "WER")]
    for name, values in summary["grid_reference"].items():
        lines.append("%-40s %6.3f %6.3f %6.3f %6.3f" % (name, values["pesq"], values["stoi"], values["estoi"],
                                                         values["wer"]))
    return "\n".join(lines)


def _aligned_summary(rows, align_ms):
    """Means of the aligned scores and of the absolute lag found, for the summary."""
    return collections.OrderedDict([
        ("model_aligned", {m: _mean([r["model_aligned_" + m] for r in rows]) for m in METRICS}),
        ("align_window_ms", align_ms),
        ("mean_abs_lag_ms", _mean([abs(r["model_lag_ms"]) for r in rows]))])


def _write_csv(path, rows):
    with atomic.replacing(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            for row in rows:
                writer.writerow(row)


def format_table(summary):
    """The means, then the reference rows under their own heading: they were scored on another data set."""
    row = "%-34s %7.3f %7.3f %7.3f"
    lines = ["%-34s %7s %7s %7s" % ("system (this data set)", "PESQ", "STOI", "ESTOI")]
    own = [("this model (%s, %d clips)" % (summary["split"], summary["clips"]), summary["model"])]
    if "model_aligned" in summary:
        own.append(("  aligned +-%d ms (|lag| %.0f ms)" % (summary["align_window_ms"], summary["mean_abs_lag_ms"]),
                    summary["model_aligned"]))
    own.append(("mean-mel baseline", summary["baseline"]))
    if "ceiling" in summary:
        own.append(("true mel through the vocoder", summary["ceiling"]))
    for name, values in own:
        lines.append(row % (name, values["pesq"], values["stoi"], values["estoi"]))
    lines += ["", "reference: the chess speaker's test set, another data set (not comparable with the rows above)"]
    for name, values in summary["reference"].items():
        lines.append(row % (name, values["pesq"], values["stoi"], values["estoi"]))
    if summary["reference"]:
        lines.append("source: " + summary["reference_source"])
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m export.apps.evaluate", description=__doc__.split("\n")[0])
    graph.add_checkpoint_arguments(parser)
    parser.add_argument("--data", required=True, help="Preprocessed data directory with <split>.txt.")
    parser.add_argument("--split", default="test", help="Split to score (default test).")
    parser.add_argument("--out", default=None, help="Output folder (default <run>/eval-<split>).")
    parser.add_argument("--plot", action="store_true", help="Also write a predicted-vs-true mel PNG per clip.")
    parser.add_argument("--no-wavs", action="store_true", help="Do not keep the synthesised wavs.")
    parser.add_argument("--ceiling", action="store_true",
                        help="Also score the true mel through the same vocoder (the best Griffin-Lim allows).")
    parser.add_argument("--align-ms", type=int, default=ALIGN_MS,
                        help="Also score the model after aligning its speech to the real one within +-this many "
                             "ms (0: off).")
    return parser


def main(argv=None):
    """Entrypoint: prints the table and where the CSV/JSON went; `error: ...` and exit 2 on bad input."""
    args = build_parser().parse_args(argv)

    def body():
        summary = evaluate(args.checkpoint, args.data, args.split, args.out, args.target, args.batch_size,
                           args.plot, not args.no_wavs, ceiling=args.ceiling, align_ms=args.align_ms)
        print(format_table(summary))
        if "words" in summary:
            print("\n" + format_word_table(summary))
        print("per-clip scores: %s\nsummary: %s" % (summary["csv"], summary["json"]))
    return cli.run(body, level=logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
