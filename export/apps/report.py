"""One HTML page per run that a person opens from disk: listen to each test clip beside its truth, see the
curves, read the scores.

Speech is judged by ear first, so the page puts ground truth, model and baseline players side by side with
the face crops and each one's mel under it. Everything is inlined (audio as base64 WAV data URIs, plots and
crops as base64 images, no scripts or fonts from elsewhere), so the page needs no server and no network and
can be mailed as one file. Score tables are built from whatever columns summary.json and scores.csv hold,
so metrics added to the evaluation show up without template edits. Whatever the run lacks (no evaluation
yet, an interrupted run) is named on the page instead of stopping it.

    python -m export.apps.report RUN_DIR [--eval DIR ...] [--out RUN_DIR/report.html]
"""
import argparse
import base64
import collections
import csv
import datetime
import glob
import io
import json
import logging
import math
import os
import sys

import numpy as np

from common import atomic
from common import cli
from common import plotting
from common import progress
from common.config import hparams as hparams_lib
from common.data import audio
from common.data import datadir
from common.errors import Lip2WavError
from common.training import rundir

LOG = logging.getLogger(__name__)

TEMPLATE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
TEMPLATE = "report.html.j2"
# Clips with players, faces and mels; every clip stays in the score tables. About 1 MB of page per
# 4 s clip (four 16-bit WAVs in base64, five plots, the face crops).
DEFAULT_MAX_CLIPS = 10
MAX_CHECKPOINT_PLOTS = 8
FACE_STILLS = 8
FACE_FPS = 15
FACE_SECONDS = 8.0
FACE_SIDE = 96
LOG_KEYS_NOT_PLOTTED = ("step", "time")


class ReportError(Lip2WavError, RuntimeError):
    """A report that cannot be written; the message names the fix."""


def data_uri(payload, mime):
    return "data:%s;base64,%s" % (mime, base64.b64encode(payload).decode("ascii"))


def _read_json(path):
    """The parsed file, or None when it is absent or unreadable (a page shows what exists)."""
    try:
        with open(path) as f:
            return json.load(f, object_pairs_hook=collections.OrderedDict)
    except (IOError, OSError, ValueError) as exc:
        if os.path.exists(path):
            LOG.warning("%s: unreadable (%s); left out of the report", path, exc)
        return None


def _read_csv(path):
    if not os.path.isfile(path):
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [dict((k, v if k == "clip" else _number(v)) for k, v in row.items()) for row in reader]
        return list(reader.fieldnames or []), rows


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def _png(fig):
    """A matplotlib figure as a PNG data URI (closed afterwards)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plotting.plt.close(fig)
    return data_uri(buffer.getvalue(), "image/png")


def _file_uri(path):
    with open(path, "rb") as f:
        return data_uri(f.read(), "image/png" if path.endswith(".png") else "image/jpeg")


# ------------------------------------------------------------------------------------------- the run

def run_section(run_dir, hp):
    """Facts about the run, its hyperparameters against the preset, its checkpoints and final losses."""
    notes = []
    summary = _read_json(os.path.join(run_dir, rundir.SUMMARY)) or {}
    records = rundir.read_jsonl(os.path.join(run_dir, rundir.TRAIN_LOG))
    if not summary:
        notes.append("no %s: training was interrupted or is still running; figures below come from %s and the "
                     "checkpoints" % (rundir.SUMMARY, rundir.TRAIN_LOG))
    checkpoints = [(rundir.checkpoint_step(p), p) for p in rundir.list_checkpoints(rundir.checkpoint_dir(run_dir))]
    last_steps = [s for s in (summary.get("last_step"), records[-1]["step"] if records else None,
                              checkpoints[-1][0] if checkpoints else None) if s is not None]
    facts = [
        ("run directory", os.path.abspath(run_dir)),
        # "device_tree": the same field in run directories written before it was named "target"
        ("target", summary.get("target", summary.get("device_tree", "unknown (no %s)" % rundir.SUMMARY))),
        ("preset", preset_of(summary, hp)),
        ("batch size", hp.tacotron_batch_size),
        ("steps trained", max(last_steps) if last_steps else 0),
        ("wall time of the last segment (s)", summary.get("wall_seconds")),
        ("logged time span (s)", records[-1]["time"] - records[0]["time"] if len(records) > 1 else None),
        ("sec/step (median)", summary.get("sec_per_step_median")),
        ("samples/s", summary.get("samples_per_sec")),
        ("data wait share", summary.get("data_wait_share")),
        ("checkpoints", rundir.checkpoint_dir(os.path.abspath(run_dir))),
        ("checkpoint steps", ", ".join(str(step) for step, _ in checkpoints) or "none"),
        ("latest checkpoint", checkpoints[-1][1] if checkpoints else None),
    ]
    final = records[-1] if records else {}
    final_losses = [(k, v) for k, v in sorted(final.items()) if "loss" in k]
    if not final_losses and summary.get("final_loss") is not None:
        final_losses = [("loss", summary["final_loss"])]
    return {"facts": [(k, v) for k, v in facts if v is not None], "notes": notes, "final_losses": final_losses,
            "final_step": final.get("step"), "hparams_diff": hparams_diff(hp, preset_of(summary, hp), notes),
            "records": records}


def preset_of(summary, hp):
    """The preset a run started from: the run summary's, else its hparams'."""
    return summary.get("preset") or hp.preset


def hparams_diff(hp, preset, notes):
    """[(key, run value, preset value)] for every hyperparameter the run changed from its preset."""
    if preset not in hparams_lib.preset_names():
        notes.append("preset %r is not registered here; hyperparameters are compared with the defaults" % preset)
        preset = "default"
    base = hparams_lib.resolve(preset).to_dict()
    run = hp.to_dict()
    return [(key, run[key], base.get(key)) for key in sorted(run) if run[key] != base.get(key)]


# ------------------------------------------------------------------------------------------ curves

def curve_images(records):
    """One small plot per logged quantity, all losses in one panel; new log keys get a panel of their own."""
    if not records:
        return []
    keys = []
    for record in records:
        for key, value in record.items():
            if key not in keys and key not in LOG_KEYS_NOT_PLOTTED and isinstance(value, (int, float)):
                keys.append(key)
    losses = [k for k in keys if "loss" in k]
    panels = ([("losses", losses)] if losses else []) + [(k.replace("_", " "), [k]) for k in keys if k not in losses]
    marker = "o" if len(records) < 20 else None
    images = []
    for title, panel_keys in panels:
        fig, ax = plotting.plt.subplots(figsize=(5, 3))
        for key in panel_keys:
            points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, label=key)
        if len(panel_keys) > 1:
            values = [r[k] for r in records for k in panel_keys if isinstance(r.get(k), (int, float))]
            if min(values) > 0:
                ax.set_yscale("log")
            ax.legend(fontsize=7)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        images.append({"title": title, "png": _png(fig)})
    return images


def checkpoint_plots(run_dir):
    """{step, images: [(kind, uri)]} for up to MAX_CHECKPOINT_PLOTS saved checkpoints (first and last kept)."""
    by_step = collections.defaultdict(list)
    for path in glob.glob(os.path.join(run_dir, rundir.PLOTS, "step-*.png")):
        match = rundir.STEP_PLOT.match(os.path.basename(path))
        if match:
            by_step[int(match.group(1))].append((match.group(2), path))
    steps = sorted(by_step)
    if len(steps) > MAX_CHECKPOINT_PLOTS:
        picks = np.linspace(0, len(steps) - 1, MAX_CHECKPOINT_PLOTS).round().astype(int)
        steps = [steps[i] for i in sorted(set(picks))]
    shown = [{"step": step, "images": [(kind, _file_uri(path)) for kind, path in sorted(by_step[step])]}
             for step in steps]
    return shown, len(by_step)


# ------------------------------------------------------------------------------------- evaluations

def find_eval_dirs(run_dir):
    """Evaluation folders of this run: its own subfolders holding a summary.json (`invoke evaluate` writes
    RUN/eval-<split>), and folders beside it whose summary.json scored one of its checkpoints (the demo's eval/)."""
    found = [os.path.dirname(p) for p in sorted(glob.glob(os.path.join(run_dir, "*", rundir.EVAL_SUMMARY)))]
    run_real = os.path.realpath(run_dir)
    for summary_path in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(run_dir)), "*",
                                                      rundir.EVAL_SUMMARY))):
        summary = _read_json(summary_path)
        checkpoint = summary.get("checkpoint") if isinstance(summary, dict) else None
        if checkpoint and os.path.realpath(checkpoint).startswith(run_real + os.sep):
            found.append(os.path.dirname(summary_path))
    return found


def score_systems(summary, columns):
    """Names of the scored systems: entries of summary.json that map metrics to numbers and, when there is
    a scores.csv, have per-clip columns named <system>_<metric> (so counters such as pesq_failed are not)."""
    systems = []
    for name, value in summary.items():
        if name == "reference" or not isinstance(value, dict) or not value:
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            continue
        if columns and not any("%s_%s" % (name, metric) in columns for metric in value):
            continue
        systems.append(name)
    return systems


def means_table(summary, systems):
    metrics = []
    for system in systems:
        metrics += [m for m in summary[system] if m not in metrics]
    rows = [{"name": system, "definition": summary.get("%s_definition" % system),
             "cells": [summary[system].get(m) for m in metrics]} for system in systems]
    return {"columns": metrics, "rows": rows}


def clip_table(columns, rows, systems):
    """Per-clip rows plus a mean row, with a header row grouping <system>_<metric> columns by system."""
    def system_of(column):
        owners = [s for s in systems if column.startswith(s + "_")]
        return max(owners, key=len) if owners else ""
    groups = []
    for column in columns:
        owner = system_of(column)
        if groups and groups[-1][0] == owner:
            groups[-1][1] += 1
        else:
            groups.append([owner, 1])
    labels = [column[len(system_of(column)) + 1:] if system_of(column) else column for column in columns]
    mean = []
    for column in columns:
        values = [r[column] for r in rows if isinstance(r.get(column), float) and not math.isnan(r[column])]
        mean.append(float(np.mean(values)) if values else None)
    mean[0] = "mean" if mean[0] is None else mean[0]
    return {"groups": groups, "labels": labels, "rows": [[r.get(c) for c in columns] for r in rows], "mean": mean}


def other_fields(summary, systems):
    """Everything else summary.json says (paths, counts, definitions, nested tables), shown as it is."""
    skip = set(systems) | {"reference", "reference_source"} | set("%s_definition" % s for s in systems)
    return [(k, v if not isinstance(v, (dict, list)) else json.dumps(v, sort_keys=False))
            for k, v in summary.items() if k not in skip]


def evaluation_section(eval_dir, hp, max_clips):
    summary = _read_json(os.path.join(eval_dir, rundir.EVAL_SUMMARY)) or collections.OrderedDict()
    columns, rows = _read_csv(os.path.join(eval_dir, rundir.EVAL_SCORES))
    systems = score_systems(summary, columns)
    reference = summary.get("reference") or {}
    reference_metrics = []
    for values in reference.values():
        reference_metrics += [m for m in values if m not in reference_metrics]
    section = {
        "dir": os.path.abspath(eval_dir), "split": summary.get("split", "?"),
        "means": means_table(summary, systems) if systems else None,
        "clip_table": clip_table(columns, rows, systems) if rows else None,
        "reference": {"columns": reference_metrics, "source": summary.get("reference_source"),
                      "rows": [(name, [values.get(m) for m in reference_metrics])
                               for name, values in reference.items()]} if reference else None,
        "other": other_fields(summary, systems),
        "clips": [],
        "hidden_clips": max(0, len(rows) - max_clips),
    }
    data_dir = summary.get("data")
    for row in progress.bar(rows[:max_clips], desc="report clips", unit="clip"):
        section["clips"].append(clip_section(eval_dir, data_dir, row, columns, hp, summary))
    return section


# ------------------------------------------------------------------------------------------ clips

def clip_section(eval_dir, data_dir, row, columns, hp, summary):
    """Players for truth and every system wav of the clip, each with its mel, the face crops and the scores."""
    clip_id = str(row.get("clip", ""))
    name = clip_id.replace("/", "__")
    clip_dir = datadir.clip_folder(data_dir, clip_id) if data_dir else None
    sources = []
    if clip_dir:
        sources.append(("ground truth", datadir.audio_path(clip_dir)))
    sources.append(("model", os.path.join(eval_dir, rundir.EVAL_WAVS, name + ".wav")))
    for path in sorted(glob.glob(os.path.join(glob.escape(eval_dir), rundir.EVAL_WAVS, glob.escape(name) + ".*.wav"))):
        sources.append((os.path.basename(path)[len(name) + 1:-len(".wav")], path))
    players, missing = [], []
    wavs = [_load(path, hp) for _, path in sources]
    limits = _mel_limits(hp)
    for (label, path), wav in zip(sources, wavs):
        if wav is None:
            missing.append("%s (%s)" % (label, path))
            continue
        players.append({"label": label, "audio": _wav_uri(wav, hp.sample_rate),
                        "seconds": len(wav) / float(hp.sample_rate), "mel": _mel_png(wav, hp, limits, label),
                        "definition": summary.get("%s_definition" % label)})
    predicted = os.path.join(eval_dir, rundir.PLOTS, name + ".png")
    return {"id": clip_id, "players": players, "missing": missing,
            "scores": [(c, row.get(c)) for c in columns if c != "clip"],
            "predicted_plot": _file_uri(predicted) if os.path.isfile(predicted) else None,
            "face": face_strips(clip_dir, hp) if clip_dir and os.path.isdir(clip_dir) else None}


def _load(path, hp):
    if not os.path.isfile(path):
        return None
    return audio.load_wav(path, hp.sample_rate, rescaling_max=None)


def _wav_uri(wav, sample_rate):
    """16-bit PCM WAV bytes as a data URI: the one audio format every browser decodes."""
    import soundfile as sf
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wav, -1.0, 1.0), int(sample_rate), subtype="PCM_16", format="WAV")
    return data_uri(buffer.getvalue(), "audio/wav")


def _mel_limits(hp):
    return (-hp.max_abs_value if hp.symmetric_mels else 0.0), hp.max_abs_value


def _mel_png(wav, hp, limits, title):
    mel = audio.melspectrogram(wav, hp)
    fig, ax = plotting.plt.subplots(figsize=(4, 1.6))
    ax.imshow(mel, aspect="auto", origin="lower", interpolation="none", vmin=limits[0], vmax=limits[1])
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def face_strips(clip_dir, hp):
    """Face crops: FACE_STILLS stills in one strip, and a flip-book sprite at FACE_FPS for the first seconds."""
    import cv2
    numbers = sorted(datadir.crop_numbers(os.listdir(clip_dir)))
    if not numbers:
        return None
    stride = max(1, int(round(hp.fps / float(FACE_FPS))))
    flip = [n for n in numbers if n % stride == 0 and n < FACE_SECONDS * hp.fps]
    picks = sorted(set(numbers[i] for i in np.linspace(0, len(numbers) - 1, FACE_STILLS).round().astype(int)))

    side = min(hp.img_size, FACE_SIDE)  # stored at most FACE_SIDE wide, shown FACE_SIDE wide by the page

    def strip(chosen):
        frames = []
        for number in chosen:
            image = cv2.imread(datadir.crop_path(clip_dir, number), cv2.IMREAD_COLOR)
            if image is not None:
                frames.append(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA))
        ok, encoded = cv2.imencode(".jpg", np.concatenate(frames, axis=1), [cv2.IMWRITE_JPEG_QUALITY, 85])
        return data_uri(encoded.tobytes(), "image/jpeg"), len(frames)
    stills, still_count = strip(picks)
    sprite, frame_count = strip(flip)
    return {"stills": stills, "stills_width": still_count * FACE_SIDE, "sprite": sprite, "frames": frame_count,
            "side": FACE_SIDE, "seconds": frame_count * stride / float(hp.fps),
            "still_times": ", ".join("%.1f s" % (n / float(hp.fps)) for n in picks)}


# ------------------------------------------------------------------------------------------- bench

def bench_section(run_dir):
    """bench.json's rows as a table with the union of their keys (new columns appear by themselves)."""
    bench = _read_json(os.path.join(run_dir, rundir.BENCH))
    if not bench:
        return None
    rows = bench.get("rows", [])
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    facts = [(k, v if not isinstance(v, (dict, list)) else json.dumps(v)) for k, v in bench.items()
             if k not in ("rows", "table")]
    return {"columns": columns, "rows": [[row.get(c) for c in columns] for row in rows], "facts": facts}


# ------------------------------------------------------------------------------------------ render

def format_value(value):
    """Numbers to 4 significant digits, NaN and missing as an en dash; everything else as text."""
    if value is None:
        return "\u2013"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if value == int(value) and abs(value) < 1e9:
            return "%d" % value
        return "%.4g" % value
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def render(context):
    try:
        import jinja2
    except ImportError:
        raise ReportError("the run report needs Jinja2 (pip install -r requirements.txt); render it on a "
                          "workstation: python -m export.apps.report RUN_DIR")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["value"] = format_value
    return env.get_template(TEMPLATE).render(**context)


def build_report(run_dir, eval_dirs=None, out=None, max_clips=DEFAULT_MAX_CLIPS):
    """Write the page (default RUN_DIR/report.html) and return its path."""
    if not os.path.isdir(run_dir):
        raise ReportError("run directory %s does not exist; pass the --run-dir of a training run "
                          "(demo: demo/run)" % run_dir)
    hp_path = os.path.join(run_dir, rundir.HPARAMS)
    if not os.path.isfile(hp_path):
        raise ReportError("%s is not a run directory (no %s, which training writes first); pass the --run-dir of "
                          "a training run (demo: demo/run)" % (run_dir, rundir.HPARAMS))
    hp = hparams_lib.load(hp_path)
    out = out or os.path.join(run_dir, rundir.REPORT)
    run = run_section(run_dir, hp)
    eval_dirs = find_eval_dirs(run_dir) if eval_dirs is None else eval_dirs
    for eval_dir in eval_dirs:
        if not os.path.isfile(os.path.join(eval_dir, rundir.EVAL_SUMMARY)):
            raise ReportError("%s holds no %s; pass the --out folder of an evaluation" % (eval_dir, rundir.EVAL_SUMMARY))
    shown, saved = checkpoint_plots(run_dir)
    context = {
        "title": "Lip2Wav run report: %s" % os.path.join(*os.path.abspath(run_dir).split(os.sep)[-2:]),
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "run": run,
        "curves": curve_images(run["records"]),
        "checkpoint_plots": shown, "checkpoint_plots_saved": saved,
        "evaluations": [evaluation_section(d, hp, max_clips) for d in eval_dirs],
        "bench": bench_section(run_dir),
    }
    try:
        atomic.write_text(out, render(context))
    except OSError as exc:
        raise ReportError("cannot write %s (%s); pass a writable --out" % (out, exc.strerror or exc))
    LOG.info("report: %s (%.1f MB)", out, os.path.getsize(out) / 1e6)
    return out


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m export.apps.report", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", help="Run directory (from training or the demo: demo/run).")
    parser.add_argument("--eval", action="append", default=None,
                        help="Evaluation folder (repeatable); default: folders here or beside the run whose "
                             "summary.json scored one of its checkpoints.")
    parser.add_argument("--out", default=None, help="Output HTML (default RUN_DIR/report.html).")
    parser.add_argument("--max-clips", type=int, default=DEFAULT_MAX_CLIPS,
                        help="Clips with players, faces and mels per evaluation; all stay in the tables.")
    return parser


def main(argv=None):
    """Entrypoint: prints the page's path; `error: ...` and exit 2 on bad input."""
    args = build_parser().parse_args(argv)

    def body():
        print(build_report(args.run_dir, args.eval, args.out, args.max_clips))
    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
