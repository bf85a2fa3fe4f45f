"""Hyperparameters: one declared set of defaults, named presets, one override order.

Resolution order (each step logged): preset (which derives from its parent) ->
optional JSON file -> ``key=value`` overrides. Unknown keys and values of the
wrong type raise ``HParamsError``. The resolved set is saved as ``hparams.json``
in every run directory and restored from there on resume.
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


# name -> (default, description). Grouped by section; defaults are the reference values.
DECLARED = {
    # Audio
    "sample_rate": (16000, "Audio sample rate in Hz."),
    "num_mels": (80, "Mel bands per spectrogram frame."),
    "n_fft": (800, "FFT size in samples."),
    "hop_size": (200, "Hop between STFT frames in samples (200 at 16 kHz = 80 mel frames/s)."),
    "win_size": (800, "STFT window length in samples."),
    "fmin": (55, "Lowest mel filter frequency in Hz."),
    "fmax": (7600, "Highest mel filter frequency in Hz."),
    "preemphasis": (0.97, "Pre-emphasis filter coefficient."),
    "preemphasize": (True, "Apply pre-emphasis before the STFT (and de-emphasis after Griffin-Lim)."),
    "rescaling_max": (0.9, "Peak amplitude waveforms are rescaled to on load."),
    "min_level_db": (-100, "Floor of the dB scale before normalisation."),
    "ref_level_db": (20, "Reference level subtracted from the dB spectrogram."),
    "max_abs_value": (4.0, "Mels are normalised to [-max_abs_value, max_abs_value]."),
    "symmetric_mels": (True, "Normalise mels symmetrically around 0 (else to [0, max_abs_value])."),
    "power": (1.5, "Magnitude power applied before Griffin-Lim."),
    "griffin_lim_iters": (60, "Griffin-Lim iterations."),
    # Video and windows
    "fps": (30, "Video frame rate the crops are sampled at."),
    "img_size": (96, "Side of the square RGB face crop in pixels."),
    "T": (90, "Face frames per input window."),
    "mel_step_size": (240, "Mel frames per target window (T / fps seconds at 80 frames/s)."),
    "overlap": (15, "Frames shared by consecutive windows when a long video is synthesised."),
    "mel_overlap": (40, "Mel frames crossfaded between consecutive synthesised windows."),
    # Encoder
    "enc_conv_num_blocks": (5, "3D-conv blocks; each halves height and width."),
    "enc_conv_num_layers": (3, "Conv layers per block: one strided, the rest residual."),
    "enc_conv_kernel_size": ([5, 3, 3], "3D-conv kernel (time, height, width)."),
    "num_init_filters": (24, "Filters of the first block; doubled every block."),
    "encoder_lstm_units": (384, "Units per direction of the encoder BiLSTM."),
    "zoneout_rate": (0.1, "Zoneout probability of every LSTM cell and hidden state."),
    "speaker_embedding_dim": (256, "Size of the speaker embedding concatenated to encoder outputs."),
    # Decoder
    "outputs_per_step": (2, "Mel frames emitted per decoder step."),
    "prenet_layers": ([256, 256], "Widths of the prenet dense layers."),
    "dropout_rate": (0.5, "Prenet dropout rate, applied in training and inference."),
    "attention_dim": (128, "Location-sensitive attention depth."),
    "attention_filters": (32, "Location features: conv filters over cumulative weights."),
    "attention_kernel": (31, "Location features: conv kernel width."),
    "decoder_layers": (2, "Decoder LSTM layers."),
    "decoder_lstm_units": (1024, "Units per decoder LSTM layer."),
    "postnet_num_layers": (5, "Postnet conv1d layers."),
    "postnet_kernel_size": (5, "Postnet conv1d kernel width."),
    "postnet_channels": (512, "Postnet conv1d channels."),
    # Training
    "tacotron_batch_size": (24, "Windows per training batch."),
    "tacotron_random_seed": (5339, "Seed of the graph's random ops and of window sampling."),
    "tacotron_initial_learning_rate": (1e-3, "Adam learning rate before decay."),
    "tacotron_start_decay": (150000, "Step at which exponential learning-rate decay starts."),
    "tacotron_decay_steps": (50000, "Steps over which the learning rate falls by tacotron_decay_rate."),
    "tacotron_decay_rate": (0.5, "Learning-rate decay factor per tacotron_decay_steps."),
    "tacotron_final_learning_rate": (1e-5, "Learning-rate floor."),
    "tacotron_lr_scaling": ("sqrt", "Data-parallel learning rate: x1 (none), x world size (linear) or "
                                    "x sqrt(world size) (sqrt); README 'Several devices' says why sqrt."),
    "tacotron_lr_warmup_steps": (1000, "Steps over which a scaled learning rate ramps up from the 1-device rate."),
    "tacotron_adam_beta1": (0.9, "Adam beta1."),
    "tacotron_adam_beta2": (0.999, "Adam beta2."),
    "tacotron_adam_epsilon": (1e-6, "Adam epsilon."),
    "tacotron_reg_weight": (1e-7, "L2 regularisation weight on non-bias, non-norm weights."),
    "tacotron_clip_norm": (1.0, "Global gradient-norm clip."),
    "tacotron_teacher_forcing_init_ratio": (1.0, "Teacher-forcing ratio before the decay starts."),
    "tacotron_teacher_forcing_final_ratio": (0.0, "Teacher-forcing ratio after the decay ends."),
    "tacotron_teacher_forcing_start_decay": (10000, "Step at which the cosine teacher-forcing decay starts."),
    "tacotron_teacher_forcing_decay_steps": (40000, "Steps of the cosine teacher-forcing decay."),
    "speaker": ("", "Name of the speaker the preset was made for (informational)."),
}

# Keys of the reference preset files that this model has no use for.
IGNORED_PRESET_KEYS = {
    "enc_conv_channels": "width of Tacotron-2's text encoder; the 3D-conv encoder sets widths with num_init_filters",
}

SYNTHETIC_OVERRIDES = {
    "speaker": "synthetic",
    "img_size": 32,
    "T": 30,
    "mel_step_size": 80,
    "overlap": 5,
    "mel_overlap": 12,
    "enc_conv_num_blocks": 3,
    "enc_conv_num_layers": 2,
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
        return HParams(_apply(self._values, overrides, "replace"))

    @property
    def max_iters(self):
        """Decoder steps per window: the output length is fixed by the window."""
        return self.mel_step_size // self.outputs_per_step

    @property
    def mel_frames_per_second(self):
        return float(self.sample_rate) / self.hop_size

    def save(self, path):
        """Write hparams.json atomically (temp file, then rename)."""
        atomic.write_json(path, self._values)


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
    values = {key: default for key, (default, _) in DECLARED.items()}
    values = _apply(values, presets[preset], "preset %s" % preset)
    LOG.info("hparams: preset %s", preset)
    if json_path:
        if not os.path.isfile(json_path):
            raise HParamsError("hparams file %s does not exist" % json_path)
        with open(json_path) as f:
            values = _apply(values, json.load(f), json_path)
        LOG.info("hparams: applied %s", json_path)
    if isinstance(overrides, str):
        overrides = parse_overrides(overrides)
    values = _apply(values, overrides, "--hparams")
    if overrides:
        LOG.info("hparams: overrides %s", ", ".join("%s=%r" % kv for kv in sorted(overrides.items())))
    return HParams(values)


def load(path):
    """Restore the exact set a run was trained with."""
    if not os.path.isfile(path):
        raise HParamsError("%s does not exist; is this a run directory?" % path)
    with open(path) as f:
        saved = json.load(f)
    values = {key: default for key, (default, _) in DECLARED.items()}
    return HParams(_apply(values, saved, path))
