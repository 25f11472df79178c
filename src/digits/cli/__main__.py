"""`python -m digits.cli`: the `digits` command, as it was when the CLI was one module."""
import sys

from . import entry

sys.exit(entry())
