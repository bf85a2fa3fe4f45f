"""Former command path, kept so existing scripts work: `python -m common.preprocess` runs `python -m common.prep.preprocess`."""
import sys

from common.prep import preprocess

if __name__ == "__main__":
    sys.exit(preprocess.main())
