"""Former command path, kept so existing scripts work: `python -m export.lint_graphs` runs `python -m export.tools.lint_graphs`."""
import sys

from export.tools import lint_graphs

if __name__ == "__main__":
    sys.exit(lint_graphs.main())
