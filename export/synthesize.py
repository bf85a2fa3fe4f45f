"""Former command path, kept so existing scripts work: `python -m export.synthesize` runs `python -m export.apps.synthesize`."""
import sys

from export.apps import synthesize

if __name__ == "__main__":
    sys.exit(synthesize.main())
