"""Uneven light and a dark surface around the page, evened out before the ink is found.

A photo of dark ink on paper is the paper's brightness times the light falling on it: a shadow
across the page, or a desk around it, splits the background into levels that no single paper
level fits (half the page read as ink). Where the background is that uneven, the paper's level
is taken at every pixel as the brightest surface around it, wider than a stroke (a grey-level
closing: the largest value in a window, then the smallest). A page that does not fill the
picture is found as the one bright surface holding all the ink, and what lies around it made
paper; then the paper's level is divided out. Light ink on a dark background is left as it is:
a screen or a drawing app is lit evenly, and light changes dark surfaces little.

    grey = even_out(grey)        # float32 (H, W) in [0, 1], 1 = white
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .segment import box, dilate, label_components

WINDOW = 0.25  # window judging evenness, as a share of the longest side: wider than any stroke
# window the paper's level is taken over where uneven: wider than a pen's stroke in a photo of a
# digit (5-8% of the side in benchmarks/photo_set.py; photos read there as well at 1/4), and
# narrow enough that a strip of desk a sixth of the picture wide stays desk (tests/test_lighting.py)
PAPER_WINDOW = 0.125
COARSE_SIDE = 32  # longest side the evenness is judged at (a 256-pixel image: 8x8 blocks)
PAPER = 0.3  # paper is at least this bright (of full scale), even in a dim photo
SMOOTH = 5  # box (pixels) the background is judged through
UNEVEN = 0.3  # the paper's level varying by this share of its brightest level or more is evened out
# the darkest surface at least this much (of full scale) above the darkest pixels: paper in shade
# (0.11 and above for 99% of 300 shadowed photos of benchmarks/photo_set.py), not the ground
# under light ink (0.05 at most for 100 MNIST digits on a noisy grey ground lit from one side)
INK_GAP = 0.08
STRONG = 0.5  # a pixel darker than this share of the paper around it, and by CONTRAST at least, is ink
CONTRAST = 0.2  # of the brightest paper's level: ink in a shadow is 0.25-0.5 darker, a desk's grain 0.1-0.15
PAGE_AREA = (0.15, 0.95)  # share of the picture a page lying on a desk covers
PAGE_FILL = 0.8  # share of its bounding box a page covers (a sheet seen at an angle: 0.85-1)
PAGE_INK = 0.2  # most of a page that is ink (a digit's strokes, where a light digit's hull is half gaps)
SURFACE = 0.2  # share of the brightest paper's level below which a surface is not paper
EDGE = 2  # pixels of a page's blurred edge taken as desk
STRAY = 0.25  # ink outside a page, as a share of the ink on it: a desk's grain, not part of the digit


def even_out(grey: np.ndarray) -> np.ndarray:
    """``grey`` with a desk around the page made paper and the paper's level divided out, where
    the background is uneven; otherwise ``grey`` itself."""
    coarse = reduce_to(grey, COARSE_SIDE)
    low, high = _levels(closing(coarse, _window(coarse.shape)))
    if high < PAPER or high - low < UNEVEN * high:
        return grey
    smooth = _box(grey, SMOOTH)  # judged without the sensor's noise, which closing lifts
    paper = closing(smooth, _window(grey.shape, PAPER_WINDOW))
    page = page_mask(smooth, paper)
    seen = grey
    if page is not None:
        level = float(np.percentile(paper[::2, ::2][page[::2, ::2]], 98))
        seen, smooth, paper = (np.where(page, a, level) for a in (grey, smooth, paper))
    low, high = _levels(paper[::2, ::2])  # a quarter: the same levels, faster
    if page is None and (high - low < UNEVEN * high or _light_ink(grey, paper, low, high)):
        return grey
    # the darkest pixels (a thin digit's strokes are a few hundred) against the darkest surface
    if low - float(np.percentile(smooth, 0.1)) < INK_GAP:  # light ink on dark, or ink bolder than the window
        return grey
    flat = np.minimum(seen / np.maximum(paper, 1e-6), 1.0)
    # under a fifth of the paper's light is no paper (a black object, a dark desk left in view):
    # divided, its noise would be ink-dark specks
    return np.where(paper >= SURFACE * high, flat, 1.0).astype(np.float32)


def _light_ink(grey: np.ndarray, paper: np.ndarray, low: float, high: float) -> bool:
    """Whether the only bright surface is light ink's outline on a dark ground (chalk on a board):
    the closing, filling the dark between strokes, makes a light digit a surface too, but a small
    one, on a picture mostly dark. (A thin dark line on the board would pass for ink in a shadow.)"""
    bright = np.count_nonzero(paper[::2, ::2] > (low + high) / 2) / paper[::2, ::2].size
    return bright < PAGE_AREA[0] and float(np.median(grey[::2, ::2])) < PAPER


def page_mask(grey: np.ndarray, paper: np.ndarray) -> np.ndarray | None:
    """The page, when the picture shows a page on a darker surface: the largest bright region of
    ``paper`` (the closing), page-shaped, with some ink on it but not much, and none around it
    beyond a desk's grain. None when there is no such page (the picture is all page, or part of
    the digit lies in a shadow)."""
    low, high = _levels(paper[::2, ::2])
    labels = label_components(paper > (low + high) / 2)
    if labels.max() == 0:
        return None
    area = np.bincount(labels.ravel())[1:]
    page = ~dilate(labels != 1 + int(area.argmax()), EDGE)  # its blurred edge left out
    share = page.mean()
    if share == 0:  # a bright region no wider than its blurred edge
        return None
    y0, y1, x0, x1 = box(page)
    bounding = (y1 - y0) * (x1 - x0)
    strong = (grey < STRONG * paper) & (paper - grey >= CONTRAST * high)  # not a desk's grain
    inside, outside = _largest(strong & page), _largest(strong & ~page)
    if not (PAGE_AREA[0] <= share <= PAGE_AREA[1] and page.sum() >= PAGE_FILL * bounding
            and 0 < np.count_nonzero(strong & page) <= PAGE_INK * page.sum() and outside <= STRAY * inside):
        return None
    return page


def _levels(a: np.ndarray) -> tuple[float, float]:
    """The 2nd and 98th percentiles (nearest rank) of ``a``: by partition, 10x faster than
    np.percentile on the 4,096 values of the coarse picture."""
    flat = a.ravel()
    ranks = [round(0.02 * (flat.size - 1)), round(0.98 * (flat.size - 1))]
    low, high = np.partition(flat, ranks)[ranks]
    return float(low), float(high)


def _largest(mask: np.ndarray) -> int:
    """Pixels in the largest connected part of ``mask`` (0 if none)."""
    labels = label_components(mask)
    return int(np.bincount(labels.ravel())[1:].max()) if labels.max() else 0


def closing(a: np.ndarray, window: int) -> np.ndarray:
    """Grey-level closing with a ``window`` x ``window`` square (odd): dark features narrower than
    it filled. The picture is first extended by a window on each side with its edge pixels, so a
    dark strip along the edge (the desk beside a page) counts as wide as it is plus that; the
    filters then run over whole windows only, each pass shrinking the picture by window - 1."""
    padded = np.pad(a, window, mode="edge")
    wide = _valid(_valid(padded, window, np.maximum).T, window, np.maximum).T
    closed = _valid(_valid(wide, window, np.minimum).T, window, np.minimum).T
    return closed[1:1 + a.shape[0], 1:1 + a.shape[1]]  # padded pixel x + window is closed[x + 1]


def _valid(a: np.ndarray, window: int, op) -> np.ndarray:
    """``op`` (np.maximum or np.minimum) over every whole window along the last axis: out[i] covers
    a[i:i + window]. By doubling: the window of 2p is two windows of p, so a window of 33 takes 6
    passes instead of 32."""
    span, out = 1, a
    while 2 * span <= window:
        out = op(out[:, :-span], out[:, span:])
        span *= 2
    width = a.shape[1] - window + 1
    return op(out[:, :width], out[:, window - span:window - span + width])


def _box(a: np.ndarray, size: int) -> np.ndarray:
    """Mean over a centred ``size`` x ``size`` box (odd), edges extended."""
    half = size // 2
    total = np.pad(a, half, mode="edge").cumsum(0, dtype=np.float64).cumsum(1)
    total = np.pad(total, ((1, 0), (1, 0)))
    h, w = a.shape
    sums = total[size:size + h, size:size + w] - total[:h, size:size + w] - total[size:size + h, :w] + total[:h, :w]
    return (sums / size**2).astype(np.float32)


def _window(shape: tuple[int, ...], share: float = WINDOW) -> int:
    """Odd, so that the largest then the smallest value over it return a step edge to its place."""
    return max(3, 2 * round(share * max(shape) / 2) + 1)


def reduce_to(grey: np.ndarray, side: int) -> np.ndarray:
    """``grey`` area-averaged so that its longest side is at most ``side`` (itself if it is)."""
    h, w = grey.shape
    scale = side / max(h, w)
    if scale >= 1:
        return grey
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BOX), dtype=np.float32)
