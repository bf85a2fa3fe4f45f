"""``python -m common.synthetic --out DIR [--speaker grid]``: write an embedded speaker (astronaut.py, grid.py)."""
import sys

from common.synthetic import astronaut

sys.exit(astronaut.main())
