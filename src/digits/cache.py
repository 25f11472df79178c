"""The user's cache folder for digits: downloaded MNIST (download.py) and the compiled CPU kernels
(convpool.py), in $XDG_CACHE_HOME/digits, by default ~/.cache/digits.

    cache_root() / "mnist"
"""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", ""))
    if not base.is_absolute():  # unset, empty or relative: the XDG spec says ignore it
        base = Path.home() / ".cache"
    return base / "digits"
