"""The GRID speaker: grammar, .align files, visemes, the fixed recognizer, WER, GRID corpus import, evaluate."""
import csv
import json
import os

import numpy as np
import pytest

from common.config import hparams
from common.data import align
from common.synthetic import astronaut
from common.synthetic import grid
from common.synthetic import visemes
from export.scoring import words
from tests.conftest import error_line, run_entrypoint

# Ground-truth WER of the fixed recognizer on RECOGNIZER_SENTENCES espeak-ng sentences (seeds 0..11 below):
# measured 0.083 (6 errors in 72 words, 5 of them letters); 0.083 on 24 rendered clips and 0.101 on 48.
RECOGNIZER_SENTENCES = 12
GROUND_TRUTH_WER_FLOOR = 0.15


@pytest.fixture(scope="module")
def hp():
    return hparams.resolve("synthetic")


@pytest.fixture(scope="module")
def grid_data(tmp_path_factory, hp):
    data_dir = str(tmp_path_factory.mktemp("grid_speaker"))
    grid.make_speaker(data_dir, hp, num_clips=5, seconds=3.0, seed=0)
    return data_dir


def test_grammar_sampler_draws_every_word_of_every_slot_in_order():
    rng = np.random.RandomState(0)
    sentences = [align.sample_sentence(rng) for _ in range(600)]
    for sentence in sentences:
        align.check_sentence(sentence)
    for i, (slot, vocabulary) in enumerate(align.SLOTS.items()):
        assert set(s[i] for s in sentences) == set(vocabulary), slot
    assert align.sample_sentence(np.random.RandomState(5)) == align.sample_sentence(np.random.RandomState(5))
    assert "w" not in align.SLOTS["letter"] and len(align.SLOTS["letter"]) == 25
    assert align.sentence_id("bin blue at f two now".split()) == "bbaf2n"
    with pytest.raises(align.AlignError):
        align.check_sentence("blue bin at f two now".split())


def test_align_files_round_trip_in_grid_units(tmp_path):
    path = str(tmp_path / "x.align")
    align.write_align(path, [(0.5, 0.8, "bin"), (0.8, 1.0, "blue")], 3.0)
    with open(path) as f:
        assert f.read() == "0 12500 sil\n12500 20000 bin\n20000 25000 blue\n25000 75000 sil\n"
    assert align.read_align(path) == [(0.5, 0.8, "bin"), (0.8, 1.0, "blue")]


def test_clip_words_are_timed_inside_the_clip_and_the_audio_starts_with_them(hp):
    clip = grid.render_clip(3, hp, 3.0, frame_size=96)
    assert clip.frames.shape == (90, 96, 96, 3) and len(clip.wav) == 3 * hp.sample_rate
    assert [w for _, _, w in clip.spans] == clip.words
    starts = [a for a, _, _ in clip.spans]
    assert starts == sorted(starts) and 0.1 < starts[0] and clip.spans[-1][1] < 3.0
    first = int(starts[0] * hp.sample_rate)
    assert np.abs(clip.wav[:first - 160]).max() == 0 and np.abs(clip.wav[first:first + 1600]).max() > 0.05


def test_the_letter_a_is_said_as_a_letter(hp):
    _, phonemes, spans = grid.speak_sentence("set red at a one again".split(), grid.RATE, grid.PITCH, hp.sample_rate)
    start, end, word = spans[3]
    assert word == "a" and [p for t, p in phonemes if start <= t < end] == ["eI"]


def test_look_alike_phonemes_share_a_viseme():
    assert visemes.visemes_of("p") == visemes.visemes_of("b") == visemes.visemes_of("m")
    assert visemes.visemes_of("f") == visemes.visemes_of("v")
    assert visemes.visemes_of("t") == visemes.visemes_of("d") == visemes.visemes_of("n")
    assert visemes.visemes_of("p") != visemes.visemes_of("f")
    assert visemes.visemes_of("aI") == ("aa", "ee")


def _mouth_darkness(frames):
    cx, cy, width = astronaut.face_geometry()["mouth"]
    scale = frames.shape[1] / 512.0
    x0, x1 = int((cx - 0.3 * width) * scale), int(np.ceil((cx + 0.3 * width) * scale))
    y0, y1 = int((cy - 0.25 * width) * scale), int(np.ceil((cy + 0.35 * width) * scale))
    return 255.0 - frames[:, y0:y1, x0:x1].astype(np.float64).mean(axis=(1, 2, 3))


def test_mouth_opening_follows_the_phoneme_timeline():
    # "bob ... mam": lips shut for b/m, wide open for the vowels, at rest in the pauses. The second b is
    # timed 15 ms long, as espeak-ng times plosives: the lips must still close.
    timeline = [(0.2, "b"), (0.3, "0"), (0.5, "b"), (0.515, "0"), (0.6, "_"), (1.0, "m"), (1.1, "a"), (1.3, "m"),
                (1.4, "_:")]
    fps = 50.0
    track = visemes.viseme_track(timeline, 2.0)
    times = np.arange(100) / fps
    frames = astronaut.draw_mouths(visemes.at_times(track, times), 160)
    darkness = _mouth_darkness(frames)
    opening = visemes.at_times(track, times)["opening"]
    assert np.corrcoef(darkness, opening)[0, 1] > 0.9
    vowel = darkness[(times > 0.35) & (times < 0.42)].min()
    assert vowel > darkness[times < 0.15].max() + 10
    assert vowel > darkness[(times > 0.75) & (times < 0.95)].max() + 10
    assert opening[(times > 0.44) & (times < 0.54)].min() < 0.1 and opening[int(1.32 * fps)] < 0.1


def _changed_pixels(params):
    frame = astronaut.draw_mouths({k: np.array([v]) for k, v in params.items()}, 512)[0]
    cx, cy, mouth_width = astronaut.face_geometry()["mouth"]
    rows = slice(int(cy - mouth_width), int(cy + mouth_width))
    columns = slice(int(cx - mouth_width), int(cx + mouth_width))
    return np.abs(frame[rows, columns].astype(int) - astronaut._neutral_face()[rows, columns]).max(axis=2) > 20


def test_lip_rounding_narrows_the_mouth_and_the_jaw_lowers_it():
    neutral = dict(opening=0.4, spread=0.5, jaw=0.0, rounding=0.0)
    width = {r: np.flatnonzero(_changed_pixels(dict(neutral, rounding=r)).any(axis=0)).ptp() for r in (0.0, 1.0)}
    assert width[1.0] < 0.8 * width[0.0]
    bottom = {j: np.flatnonzero(_changed_pixels(dict(neutral, jaw=j)).any(axis=1)).max() for j in (0.0, 1.0)}
    assert bottom[1.0] > bottom[0.0] + 3
    assert visemes.VISEMES["w"][2] > visemes.VISEMES["ee"][2]


def test_without_jaw_and_rounding_the_mouth_is_the_formant_speakers(hp):
    track = astronaut.articulation(2, 0.5)
    params = {k: np.interp(np.arange(10) / 30.0, np.arange(track["opening"].size) / 400.0, v)
              for k, v in track.items()}
    plain = astronaut.draw_mouths({"opening": params["opening"], "spread": params["spread"]}, 96)
    np.testing.assert_array_equal(plain, astronaut._draw_frames(track, 10, 30, 96))


def test_recognizer_on_ground_truth_speech_stays_below_the_measured_floor(hp):
    recognizer = words.Recognizer()
    references, hypotheses = [], []
    for seed in range(RECOGNIZER_SENTENCES):
        sentence = align.sample_sentence(np.random.RandomState(seed))
        wav, _, _ = grid.speak_sentence(sentence, grid.RATE, grid.PITCH, hp.sample_rate)
        references.append(sentence)
        hypotheses.append(recognizer.recognize(wav))
    scores = words.word_scores(references, hypotheses)
    assert scores["wer"] < GROUND_TRUTH_WER_FLOOR, (scores, hypotheses)
    assert scores["slot_accuracy"]["command"] == 1.0 and scores["slot_accuracy"]["colour"] == 1.0
    assert len(recognizer.recognize(np.zeros(16000))) in (0, 6)  # held to the grammar: a sentence or nothing


def test_word_error_rate_and_slot_accuracy_arithmetic():
    references = ["bin blue at f two now".split(), "set red by a one soon".split()]
    scores = words.word_scores(references, ["bin blue at s two now".split(), []])
    assert scores["wer"] == pytest.approx(7 / 12.0)
    assert scores["slot_accuracy"] == {"command": 0.5, "colour": 0.5, "preposition": 0.5, "letter": 0.0,
                                       "digit": 0.5, "adverb": 0.5}
    assert scores["unrecognised"] == 1 and scores["words"] == 12
    assert words.word_scores(references, references)["wer"] == 0.0
    inserted = words.word_scores(references[:1], ["bin blue at f two now now".split()])
    assert inserted["wer"] == pytest.approx(1 / 6.0) and inserted["slot_accuracy"]["adverb"] == 1.0
    with pytest.raises(words.RecognizerError):
        words.word_scores(references, [[]])


def test_grammar_names_every_word_once_per_slot():
    text = words.grammar()
    assert "public <sentence> = <command> <colour> <preposition> <letter> <digit> <adverb>;" in text
    assert "<letter> = a | b | c" in text and " w " not in text


def test_grid_corpus_layout_imports_with_words_and_fixed_splits(tmp_path, hp):
    from common.prep import grid as grid_layout, preprocess
    corpus = str(tmp_path / "GRID")
    ids = grid.write_corpus(corpus, hp, num_clips=2, seconds=3.0, seed=1, frame_size=160)
    assert sorted(os.listdir(os.path.join(corpus, "s1"))) == sorted(i + ".mp4" for i in ids)
    data = str(tmp_path / "data")
    report = preprocess.import_grid(corpus, data, hp, workers=1)
    assert sorted(report["kept"]) == sorted("s1/" + i for i in ids)
    for sentence in ids:
        folder = os.path.join(data, "preprocessed", "s1", sentence)
        assert len([f for f in os.listdir(folder) if f.endswith(".jpg")]) == 3 * hp.fps
        assert align.sentence_id(align.clip_words(folder)) == sentence
    with open(os.path.join(data, "train.txt")) as f:
        assert f.read().split() == sorted("s1/" + i for i in ids)
    assert [grid_layout.split_of(i) for i in range(10)] == ["train"] * 8 + ["val", "test"]


def test_grid_folder_without_alignments_is_one_error_line(tmp_path, capsys):
    from common.prep import preprocess
    os.makedirs(str(tmp_path / "GRID" / "s1"))
    open(str(tmp_path / "GRID" / "s1" / "bbaf2n.mpg"), "w").close()
    code, _, stderr = run_entrypoint(capsys, preprocess.main, "--grid", str(tmp_path / "GRID"),
                                     "--data", str(tmp_path / "data"))
    assert code == 2 and "alignments/<speaker>/<id>.align" in error_line(stderr)


def test_evaluate_reports_words_for_model_ceiling_baseline_and_truth(untrained_run, grid_data, tmp_path):
    from export.apps import evaluate
    summary = evaluate.evaluate(untrained_run, grid_data, "test", str(tmp_path / "eval"), save_wavs=False)
    assert set(summary["words"]) == {"model", "ceiling", "baseline", "truth"}
    assert summary["words"]["truth"]["wer"] <= summary["words"]["ceiling"]["wer"] + 1e-9
    assert summary["words"]["truth"]["wer"] < 0.5 and summary["words"]["model"]["wer"] > 0.5
    assert summary["ceiling"]["stoi"] > summary["model"]["stoi"]
    with open(summary["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert {"ceiling_stoi", "model_words", "truth_words"} <= set(rows[0])
    with open(summary["json"]) as f:
        assert json.load(f)["grid_reference"]["paper Lip2Wav (GRID, commercial ASR)"]["wer"] == 0.1408
    table = evaluate.format_word_table(summary)
    assert "ceiling: true mel + G-L" in table and "not comparable" in table


def test_demo_defaults_to_the_grid_speaker_and_summarises_word_scores():
    from common.synthetic import speakers
    from export.apps import demo
    assert demo.build_parser().parse_args([]).speaker == "grid" and speakers.DEFAULT_SECONDS["grid"] == 3.0
    scores = {"wer": 0.4, "slot_accuracy": {}}
    summary = {"table": "", "model": {"stoi": 0.5}, "baseline": {"stoi": 0.4}, "beats_baseline_stoi": True,
               "words": {"model": scores, "baseline": dict(scores, wer=1.0), "ceiling": dict(scores, wer=0.125)},
               "wavs": "w", "plots": "p", "report": "h", "scores_csv": "c", "scores_json": "j", "run": "r", "exported": {},
               "seconds": {"total": 1.0}}
    assert "model WER 0.400 vs mean-mel baseline WER 1.000 (ceiling 0.125" in demo.format_summary(summary)
