"""The embedded speakers by name, and their command line: ``python -m common.synthetic --out DIR``.

astronaut: formant vowels driven by one latent articulation (astronaut.py); grid: GRID-grammar
sentences spoken by espeak-ng with visemes from its phoneme timings (grid.py).
"""
import argparse

from common import cli
from common.config import hparams as hparams_lib
from common.data import datadir
from common.synthetic import astronaut
from common.synthetic import grid

SPEAKERS = ("astronaut", "grid")
DEFAULT_SECONDS = {"astronaut": 4.0, "grid": grid.DEFAULT_SECONDS}
CORPUS = "corpus"  # --layout: GRID's own corpus layout instead of the preprocessed one
LAYOUTS = (datadir.PREPROCESSED, CORPUS)


def make(out, hp, speaker="astronaut", layout=datadir.PREPROCESSED, clips=24, seconds=None, seed=0):
    """Write ``speaker`` into ``out``: the preprocessed layout, or (grid only) GRID's own corpus layout."""
    seconds = seconds or DEFAULT_SECONDS[speaker]
    if speaker == "astronaut":
        if layout != datadir.PREPROCESSED:
            raise astronaut.SyntheticError("--layout corpus is for --speaker grid; drop --layout")
        return astronaut.make_speaker(out, hp, num_clips=clips, seconds=seconds, seed=seed)
    if layout == CORPUS:
        return grid.write_corpus(out, hp, num_clips=clips, seconds=seconds, seed=seed)
    return grid.make_speaker(out, hp, num_clips=clips, seconds=seconds, seed=seed)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m common.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="data directory to write")
    parser.add_argument("--speaker", default="astronaut", choices=SPEAKERS,
                        help="astronaut: formant vowels; grid: GRID-grammar sentences by espeak-ng")
    parser.add_argument("--layout", default=datadir.PREPROCESSED, choices=LAYOUTS,
                        help="grid only: corpus writes GRID's own layout (videos + alignments) for `preprocess --grid`")
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--hparams", default="", help="overrides k=v,...")
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=None, help="seconds per clip (default 4 astronaut, 3 grid)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def body():
        hp = hparams_lib.resolve(args.preset, overrides=args.hparams)
        make(args.out, hp, args.speaker, args.layout, args.clips, args.seconds, args.seed)
    return cli.run(body)
