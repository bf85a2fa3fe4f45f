"""``python -m common.synthetic --out DIR``: write an embedded speaker (see speakers.py)."""
import sys

from common.synthetic import speakers

sys.exit(speakers.main())
