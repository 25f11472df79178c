"""Which files a figure can be written to, known without importing matplotlib (0.5 s of CPU), so
that a command can refuse a name before it does its work.

    fmt = figure_format("out.png")      # "png"; DigitsError for "out.bmp"
"""
from __future__ import annotations

from pathlib import Path

from .errors import DigitsError

# Formats matplotlib >= 3.7 writes with the Agg backend and nothing else installed; not pgf (it
# runs LaTeX), raw or rgba (bare pixel buffers). A name without a suffix is written as PNG.
FIGURE_FORMATS = ("png", "jpg", "jpeg", "tif", "tiff", "webp", "pdf", "svg", "svgz", "eps", "ps")


def figure_format(path: str | Path) -> str:
    """The format ``path`` names by its suffix ("png" when it has none), or one-line DigitsError."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in FIGURE_FORMATS:
        raise DigitsError(f"{path}: a figure cannot be written as .{fmt}; name it .png (or .jpg, .tif, "
                          ".webp, .pdf, .svg, .eps)")
    return fmt
