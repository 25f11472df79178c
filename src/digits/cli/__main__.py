"""`python -m digits.cli`: the `digits` command."""
import sys

from . import entry

sys.exit(entry())
