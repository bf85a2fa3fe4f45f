"""Hyperparameters: one declared set of defaults, named presets, one override order.

Resolution order (each step logged): preset (which derives from its parent) ->
optional JSON file -> ``key=value`` overrides. Unknown keys and values of the
wrong type raise ``HParamsError``. The resolved set is saved as ``hparams.json``
in every run directory, with the network architecture it builds, and restored from there on resume.
"""
import json
import logging
import os

from common import atomic
from common.errors import Lip2WavError

LOG = logging.getLogger(__name__)
PRESET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")


class HParamsError(Lip2WavError, ValueError):
    """A preset, key or value that cannot be used; the message names the fix."""


class Range(object):
    """The values a number may take (both ends optional, each inclusive or not); lists are checked per element."""

    def __init__(self, low=None, high=None, low_inclusive=True, high_inclusive=True):
        self.low, self.high = low, high
        self.low_inclusive, self.high_inclusive = low_inclusive, high_inclusive

    def contains(self, value):
        if isinstance(value, list):
            return all(self.contains(v) for v in value)
        if self.low is not None and (value < self.low or (value == self.low and not self.low_inclusive)):
            return False
        return self.high is None or value < self.high or (value == self.high and self.high_inclusive)

    def __str__(self):
        return "%s%s, %s%s" % ("[" if self.low_inclusive and self.low is not None else "(",
                               "-inf" if self.low is None else self.low,
                               "inf" if self.high is None else self.high,
                               "]" if self.high_inclusive and self.high is not None else ")")


class Choice(object):
    """The values a string may take."""

    def __init__(self, *values):
        self.values = values

    def contains(self, value):
        return value in self.values

    def __str__(self):
        return "{%s}" % ", ".join(self.values)


COUNT = Range(1)
NON_NEGATIVE = Range(0)
POSITIVE = Range(0, low_inclusive=False)
NEGATIVE = Range(high=0, high_inclusive=False)
UNIT = Range(0, 1)
FRACTION = Range(0, 1, high_inclusive=False)
SHARE = Range(0, 1, low_inclusive=False)

# How face crops are cut and read and whether audio is peak-rescaled before the mel (common/data/crops.py,
# common/prep/build_clip.py): the original's first, faithful by default; ours one flag away.
CROP_STYLES = ("original", "square-margin")
# How predicted mel windows are joined (common/data/windows.py): ours by default (crossfade), the original's
# (concat) one flag away.
STITCHES = ("crossfade", "concat")
# A run directory recorded before crop styles existed trained on square-margin crops.
LEGACY_CROP_STYLE = "square-margin"

# name -> (default, description[, Range or Choice of meaningful values]). Grouped by section; defaults are the
# reference values. A value outside its Range (batch size 0, T=-5, a rate of 1.5) is refused before
# TensorFlow sees it.
DECLARED = {
    # Audio
    "sample_rate": (16000, "Audio sample rate in Hz.", COUNT),
    "num_mels": (80, "Mel bands per spectrogram frame.", COUNT),
    "n_fft": (800, "FFT size in samples.", COUNT),
    "hop_size": (200, "Hop between STFT frames in samples (200 at 16 kHz = 80 mel frames/s).", COUNT),
    "win_size": (800, "STFT window length in samples.", COUNT),
    "fmin": (55, "Lowest mel filter frequency in Hz.", NON_NEGATIVE),
    "fmax": (7600, "Highest mel filter frequency in Hz.", POSITIVE),
    "preemphasis": (0.97, "Pre-emphasis filter coefficient.", UNIT),
    "preemphasize": (True, "Apply pre-emphasis before the STFT (and de-emphasis after Griffin-Lim)."),
    "rescaling_max": (0.9, "Peak amplitude the audio is rescaled to before its mel with crop_style=square-margin "
                           "(the original computes mels from the unscaled audio).", SHARE),
    "min_level_db": (-100, "Floor of the dB scale before normalisation.", NEGATIVE),
    "ref_level_db": (20, "Reference level subtracted from the dB spectrogram."),
    "max_abs_value": (4.0, "Mels are normalised to [-max_abs_value, max_abs_value].", POSITIVE),
    "symmetric_mels": (True, "Normalise mels symmetrically around 0 (else to [0, max_abs_value])."),
    "power": (1.5, "Magnitude power applied before Griffin-Lim.", POSITIVE),
    "griffin_lim_iters": (60, "Griffin-Lim iterations.", COUNT),
    # Video and windows
    "fps": (30, "Video frame rate the crops are sampled at.", COUNT),
    "img_size": (96, "Side of the square face image the network reads (each crop is resized to it).", COUNT),
    "crop_style": ("original", "original: the detector's tight box, stored as cut, read with cv2 (BGR) and resized "
                               "bilinearly, mels of the unscaled audio (as Lip2Wav); square-margin: the box squared "
                               "and grown 10% a side, stored at img_size, read as RGB, audio peak-rescaled to "
                               "rescaling_max. Recorded in the data directory; training refuses another style's data.",
                   Choice(*CROP_STYLES)),
    "T": (90, "Face frames per input window.", COUNT),
    "mel_step_size": (240, "Mel frames per target window (T / fps seconds at 80 frames/s).", COUNT),
    "overlap": (15, "Frames shared by consecutive windows when a long video is synthesised.", NON_NEGATIVE),
    "mel_overlap": (40, "Mel frames shared by consecutive synthesised windows (crossfaded, or dropped from the later "
                        "window with stitch=concat).", NON_NEGATIVE),
    "stitch": ("crossfade", "How synthesis joins the windows of a long clip: crossfade (windows until one reaches "
                            "the end, the last padded) or concat (the original: full windows only, each later one "
                            "without its first mel_overlap frames, the tail past the last full window dropped; "
                            "seamless when T - overlap frames last mel_step_size - mel_overlap mel frames, as with "
                            "the defaults).",
               Choice(*STITCHES)),
    # Encoder
    "enc_conv_num_blocks": (5, "3D-conv blocks, each a conv halving height and width and two residual convs "
                               "(kernels 5x5x5 first, else 3x3x3: fixed, as in the original); after the last a "
                               "conv of stride (1, 3, 3).", COUNT),
    "num_init_filters": (24, "Filters of the first block; doubled every block.", COUNT),
    "encoder_lstm_units": (384, "Units per direction of the encoder BiLSTM.", COUNT),
    "zoneout_rate": (0.1, "Zoneout probability of every LSTM cell and hidden state.", FRACTION),
    "speaker_embedding_dim": (256, "Size of the speaker embedding concatenated to encoder outputs.", COUNT),
    # Decoder
    "outputs_per_step": (2, "Mel frames emitted per decoder step.", COUNT),
    "prenet_layers": ([256, 256], "Widths of the prenet dense layers.", COUNT),
    "dropout_rate": (0.5, "Dropout rate of the prenet (training, and inference while prenet_dropout_at_inference) "
                          "and of the postnet convs (training).", FRACTION),
    "prenet_dropout_at_inference": (True, "Keep the prenet's dropout on at inference, as the original does (mels then "
                                          "vary with tacotron_random_seed); false gives the dropout-free expectation."),
    "attention_dim": (128, "Location-sensitive attention depth.", COUNT),
    "attention_filters": (32, "Location features: conv filters over cumulative weights.", COUNT),
    "attention_kernel": (31, "Location features: conv kernel width.", COUNT),
    "decoder_layers": (2, "Decoder LSTM layers.", COUNT),
    "decoder_lstm_units": (1024, "Units per decoder LSTM layer.", COUNT),
    "postnet_num_layers": (5, "Postnet conv1d layers (the original names the last one conv_layer_5: at most 5).",
                           Range(1, 5)),
    "postnet_kernel_size": (5, "Postnet conv1d kernel width.", COUNT),
    "postnet_channels": (512, "Postnet conv1d channels (every layer; a dense layer projects them to num_mels).",
                         COUNT),
    # Training
    "tacotron_batch_size": (24, "Windows per training batch.", COUNT),
    "tacotron_random_seed": (5339, "Seed of the graph's random ops and of window sampling.", NON_NEGATIVE),
    "tacotron_initial_learning_rate": (1e-3, "Adam learning rate before decay.", POSITIVE),
    "tacotron_start_decay": (150000, "Step at which exponential learning-rate decay starts.", NON_NEGATIVE),
    "tacotron_decay_steps": (50000, "Steps over which the learning rate falls by tacotron_decay_rate.", COUNT),
    "tacotron_decay_rate": (0.5, "Learning-rate decay factor per tacotron_decay_steps.", SHARE),
    "tacotron_final_learning_rate": (1e-5, "Learning-rate floor.", POSITIVE),
    "tacotron_lr_scaling": ("sqrt", "Data-parallel learning rate: x1 (none), x world size (linear) or "
                                    "x sqrt(world size) (sqrt); README 'Several devices' says why sqrt."),
    "tacotron_lr_warmup_steps": (1000, "Steps over which a scaled learning rate ramps up from the 1-device rate.",
                                 NON_NEGATIVE),
    "tacotron_adam_beta1": (0.9, "Adam beta1.", FRACTION),
    "tacotron_adam_beta2": (0.999, "Adam beta2.", FRACTION),
    "tacotron_adam_epsilon": (1e-6, "Adam epsilon.", POSITIVE),
    "tacotron_reg_weight": (1e-7, "L2 weight on every trainable variable but biases, projections and LSTMs "
                                  "(the original's rule, network.L2_EXCLUDED).", NON_NEGATIVE),
    "tacotron_clip_norm": (1.0, "Global gradient-norm clip.", POSITIVE),
    "tacotron_teacher_forcing_init_ratio": (1.0, "Teacher-forcing ratio before the decay starts.", UNIT),
    "tacotron_teacher_forcing_final_ratio": (0.0, "Teacher-forcing ratio after the decay ends.", UNIT),
    "tacotron_teacher_forcing_start_decay": (10000, "Step at which the cosine teacher-forcing decay starts.",
                                             NON_NEGATIVE),
    "tacotron_teacher_forcing_decay_steps": (40000, "Steps of the cosine teacher-forcing decay.", COUNT),
    "speaker": ("", "The preset these values came from (the original's preset files call it speaker); "
                    "read hp.preset."),
}

# Keys of the reference preset files that this model has no use for.
IGNORED_PRESET_KEYS = {
    "enc_conv_channels": "width of Tacotron-2's text encoder; the original's 3D-conv encoder never reads it (widths "
                         "come from num_init_filters)",
    "enc_conv_kernel_size": "never read by the original's 3D-conv encoder (5x5x5 for its first conv, 3x3x3 elsewhere)",
    "enc_conv_num_layers": "never read by the original's 3D-conv encoder (one strided and two residual convs a block)",
}
# The network these hyperparameters build (common/model/network.py), recorded in every hparams.json. Run
# directories of another architecture are refused: their checkpoints do not fit this network.
ARCHITECTURE = "lip2wav-original-v1"
ARCHITECTURE_KEY = "architecture"

SYNTHETIC_OVERRIDES = {
    "speaker": "synthetic",
    "img_size": 32,
    "T": 30,
    "mel_step_size": 80,
    "overlap": 5,
    "mel_overlap": 12,
    "enc_conv_num_blocks": 3,
    "num_init_filters": 8,
    "encoder_lstm_units": 64,
    "speaker_embedding_dim": 16,
    "prenet_layers": [64, 64],
    "attention_dim": 32,
    "attention_filters": 8,
    "attention_kernel": 15,
    "decoder_lstm_units": 128,
    "postnet_channels": 64,
    "griffin_lim_iters": 32,
    "tacotron_batch_size": 8,
    "tacotron_initial_learning_rate": 2e-3,
    "tacotron_start_decay": 2000,
    "tacotron_decay_steps": 2000,
    "tacotron_final_learning_rate": 2e-4,
    "tacotron_teacher_forcing_start_decay": 100,
    "tacotron_teacher_forcing_decay_steps": 400,
}


def mel_frames_lasting(video_frames, sample_rate, hop_size, fps):
    """Mel frames that ``video_frames`` video frames last (not rounded; arrays work too)."""
    return video_frames * sample_rate / (hop_size * fps)


def _mel_frames_of(v, video_frames):
    return mel_frames_lasting(float(video_frames), v["sample_rate"], v["hop_size"], v["fps"])


def _window_times_differ(v):
    step, window = v["outputs_per_step"], _mel_frames_of(v, v["T"])
    return ("a window's face and mel must cover the same time: T=%d frames at fps=%d last %.2f s = %.1f mel "
            "frames, mel_step_size=%d lasts %.2f s; set mel_step_size=%d or T=%g"
            % (v["T"], v["fps"], v["T"] / float(v["fps"]), window, v["mel_step_size"],
               v["mel_step_size"] * v["hop_size"] / float(v["sample_rate"]), step * max(1, round(window / step)),
               v["T"] * v["mel_step_size"] / window))


def _crossfade_too_long(v):
    return ("mel_overlap=%d crossfades more than the overlap=%d frames of consecutive windows last (%.1f mel "
            "frames); set mel_overlap to at most %d or raise overlap"
            % (v["mel_overlap"], v["overlap"], _mel_frames_of(v, v["overlap"]),
               round(_mel_frames_of(v, v["overlap"]))))


# Limits that involve two keys: (holds(values), what is wrong and the fix: a text, or a function of the values).
CONSTRAINTS = (
    (lambda v: v["overlap"] < v["T"], "overlap must be smaller than T"),
    (lambda v: v["mel_overlap"] < v["mel_step_size"], "mel_overlap must be smaller than mel_step_size"),
    (lambda v: v["mel_step_size"] % v["outputs_per_step"] == 0,
     "mel_step_size must be a multiple of outputs_per_step (the decoder emits outputs_per_step frames a step)"),
    (lambda v: v["img_size"] >= 2 ** v["enc_conv_num_blocks"],
     "img_size must be at least 2**enc_conv_num_blocks (each encoder block halves the crop)"),
    (lambda v: v["win_size"] <= v["n_fft"], "win_size must not exceed n_fft"),
    (lambda v: v["fmin"] < v["fmax"] <= v["sample_rate"] / 2.0, "need fmin < fmax <= sample_rate / 2"),
    # Training pairs T frames with the mel_step_size mel frames from the window's first frame; within one
    # decoder step, as mel_step_size is a multiple of outputs_per_step.
    (lambda v: abs(v["mel_step_size"] - _mel_frames_of(v, v["T"])) < v["outputs_per_step"], _window_times_differ),
    # Synthesis crossfades consecutive windows over mel_overlap frames inside the time their overlap shares.
    (lambda v: v["mel_overlap"] <= round(_mel_frames_of(v, v["overlap"])), _crossfade_too_long),
)


def declared_default(key):
    return DECLARED[key][0]


def limit(key):
    """The Range declared for ``key``, or None when any value of its type is meaningful."""
    return DECLARED[key][2] if len(DECLARED[key]) > 2 else None


def _check_limits(values, where):
    for key in sorted(values):
        allowed = limit(key)
        if allowed is not None and not allowed.contains(values[key]):
            raise HParamsError("%s: %s=%r is outside %s; pass a value in range, e.g. --hparams %s=%r"
                               % (where, key, values[key], allowed, key, declared_default(key)))
    for holds, message in CONSTRAINTS:
        if not holds(values):
            raise HParamsError("%s: %s; fix it with --hparams"
                               % (where, message(values) if callable(message) else message))
    return values


class HParams(object):
    """A resolved, frozen set of hyperparameters with attribute access."""

    def __init__(self, values):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError("no hyperparameter %r" % name)

    def __setattr__(self, name, value):
        raise HParamsError("hyperparameters are frozen; pass overrides like --hparams %s=..." % name)

    def __eq__(self, other):
        return isinstance(other, HParams) and self._values == other._values

    def __reduce__(self):
        return HParams, (self._values,)

    def to_dict(self):
        return dict(self._values)

    def replace(self, **overrides):
        return HParams(_check_limits(_apply(self._values, overrides, "replace"), "replace"))

    @property
    def preset(self):
        """The preset these values were resolved from, kept under the original's key "speaker"."""
        return self.speaker or "default"

    @property
    def max_iters(self):
        """Decoder steps per window: the output length is fixed by the window."""
        return self.mel_step_size // self.outputs_per_step

    @property
    def mel_frames_per_second(self):
        return float(self.sample_rate) / self.hop_size

    def save(self, path):
        """Write hparams.json atomically; an identical file is left alone (nothing to write on a full disk)."""
        recorded = dict(self._values)
        recorded[ARCHITECTURE_KEY] = ARCHITECTURE
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    if json.load(f) == recorded:
                        return
            except ValueError:
                pass
        atomic.write_json(path, recorded)


def _file_preset(name):
    path = os.path.join(PRESET_DIR, name + ".json")
    with open(path) as f:
        values = json.load(f)
    for key, why in IGNORED_PRESET_KEYS.items():
        if values.pop(key, None) is not None:
            LOG.debug("preset %s: ignoring %s (%s)", name, key, why)
    # The reference files label dl as "mk" and hs as "chess"; the preset name is the truth.
    values["speaker"] = name
    return values


def _registry():
    presets = {"default": {}, "synthetic": SYNTHETIC_OVERRIDES}
    for filename in sorted(os.listdir(PRESET_DIR)):
        if filename.endswith(".json"):
            name = filename[:-len(".json")]
            if name in presets:
                raise HParamsError("preset %r is defined twice" % name)
            presets[name] = _file_preset(name)
    return presets


def preset_names():
    return sorted(_registry())


def _coerce(key, value, where):
    default = DECLARED[key][0]
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, list):
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    raise HParamsError("%s: %s=%r should be a %s like %r" % (where, key, value, type(default).__name__, default))


def _apply(base, overrides, where):
    values = dict(base)
    for key, value in overrides.items():
        if key not in DECLARED:
            raise HParamsError("%s: unknown hyperparameter %r (see common/config/hparams.py for the declared keys)" % (where, key))
        values[key] = _coerce(key, value, where)
    return values


def parse_overrides(text):
    """Parse ``a=1,b=[5,3,3],c=name`` into a dict; values are JSON, bare words are strings."""
    overrides = {}
    if not text:
        return overrides
    depth, start, parts = 0, 0, []
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    for part in parts:
        if not part.strip():
            continue
        if "=" not in part:
            raise HParamsError("--hparams: %r is not key=value" % part)
        key, raw = part.split("=", 1)
        key, raw = key.strip(), raw.strip()
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        overrides[key] = value
    return overrides


def resolve(preset="default", json_path=None, overrides=""):
    """Resolve preset -> JSON file -> overrides into a frozen HParams."""
    presets = _registry()
    if preset not in presets:
        raise HParamsError("unknown preset %r; choose one of: %s" % (preset, ", ".join(sorted(presets))))
    values = _apply(_defaults(), presets[preset], "preset %s" % preset)
    LOG.info("hparams: preset %s", preset)
    if json_path:
        if not os.path.isfile(json_path):
            raise HParamsError("hparams file %s does not exist" % json_path)
        values = _apply(values, _read_json_object(json_path, "write it as one JSON object like {\"T\": 30}"),
                        json_path)
        LOG.info("hparams: applied %s", json_path)
    if isinstance(overrides, str):
        overrides = parse_overrides(overrides)
    values = _apply(values, overrides, "--hparams")
    if overrides:
        LOG.info("hparams: overrides %s", ", ".join("%s=%r" % kv for kv in sorted(overrides.items())))
    return HParams(_check_limits(values, "preset %s with overrides" % preset))


def _defaults():
    return dict((key, entry[0]) for key, entry in DECLARED.items())


def _read_json_object(path, fix):
    """The JSON object in ``path``; a file that is not one is an HParamsError naming it and ``fix``."""
    try:
        with open(path) as f:
            payload = json.load(f)
    except (IOError, OSError) as error:
        raise HParamsError("cannot read %s (%s); %s" % (path, error.strerror or error, fix))
    except ValueError as error:
        raise HParamsError("%s is not valid JSON (%s); %s" % (path, error, fix))
    if not isinstance(payload, dict):
        raise HParamsError("%s holds a JSON %s, not an object of hyperparameters; %s"
                           % (path, type(payload).__name__, fix))
    return payload


def load(path):
    """Restore the exact set a run was trained with."""
    if not os.path.isfile(path):
        raise HParamsError("%s does not exist; is this a run directory?" % path)
    saved = _read_json_object(path, "restore it from a backup or start a new run directory (its checkpoints need "
                                    "the exact hyperparameters they were trained with)")
    architecture = saved.pop(ARCHITECTURE_KEY, None)
    saved.setdefault("crop_style", LEGACY_CROP_STYLE)
    if architecture != ARCHITECTURE:
        raise HParamsError("%s is of the network %s, not %s (the original Lip2Wav's) that this code builds; its "
                           "checkpoints cannot load: start a new run directory, or import an original checkpoint "
                           "with invoke import-checkpoint"
                           % (path, architecture or "before the original's architecture", ARCHITECTURE))
    return HParams(_check_limits(_apply(_defaults(), saved, path), path))
