"""Former command path, kept so existing scripts work: `python -m export.demo` runs `python -m export.apps.demo`."""
import sys

from export.apps import demo

if __name__ == "__main__":
    sys.exit(demo.main())
