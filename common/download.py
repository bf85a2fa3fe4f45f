"""Former command path, kept so existing scripts work: `python -m common.download` runs `python -m common.prep.download`."""
import sys

from common.prep import download

if __name__ == "__main__":
    sys.exit(download.main())
