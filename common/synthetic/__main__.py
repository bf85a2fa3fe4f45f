"""``python -m common.synthetic --out DIR``: write the embedded astronaut speaker (see astronaut.py)."""
import sys

from common.synthetic import astronaut

sys.exit(astronaut.main())
