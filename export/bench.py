"""Former command path, kept so existing scripts work: `python -m export.bench` runs `python -m export.tools.bench`."""
import sys

from export.tools import bench

if __name__ == "__main__":
    sys.exit(bench.main())
