"""Former command path, kept so existing scripts work: `python -m export.evaluate` runs `python -m export.apps.evaluate`."""
import sys

from export.apps import evaluate

if __name__ == "__main__":
    sys.exit(evaluate.main())
