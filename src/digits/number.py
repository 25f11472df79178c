"""A number written in one image -> its digits, left to right, with the model's help to cut
digits that touch.

Separate strokes are grouped into digits by where they lie (segment.group_digits). A group wider
than SPLIT line heights may be two or more digits joined by a stroke: it is also cut, by every
combination of up to MAX_CUTS of its candidate cuts (top-to-bottom paths through as little ink as
they can, starting at the thinnest columns). The model reads every piece of every way of cutting,
in one batch, and each group keeps the way whose features, summed over its pieces, score best
(WEIGHTS): the log probability of each piece's digit; how much wider, or narrower, than MNIST's
digits of that class it is (z**2 / 2 for the z beyond the mean on that side, z in standard
deviations of log(width / height)); how much lower than the line it is; how many pieces; the
margin to the second digit's log probability; and how many strokes the cuts went through. A
model trained on whole digits is sure of itself on half a digit too, so shapes, counts and cuts
decide as much as its probabilities.

WEIGHTS were found by benchmarks/tune_number.py (1,000 numbers of benchmarks/number_set.py made of
MNIST's validation digits, read by the seed-0 model of `digits run`); the other constants were set
by hand on numbers of test digits (its first 300, number seed 0, tests/data/seed.pt). Measured on
test digits with all three seed models: BENCHMARKS.md "Numbers".

    pixels, probs = read_number("2024.png", probs_of)   # probs_of: uint8 (n, 28, 28) -> (n, 10)
"""
from __future__ import annotations

import itertools
from typing import Callable, NamedTuple

import numpy as np

from .preprocess import MAX_PIXELS, digit_of, prepare
from .segment import box, cut_path, drop_slivers, group_digits, stroke_width

SPLIT = 0.8  # a group wider than this many line heights (its tallest group's height) may be cut
MAX_CUTS = 3  # a group is read as at most 4 digits
CANDIDATES = 5  # starting columns tried for cuts: the thinnest, at least PIECE_MIN apart
PIECE_MIN = 0.15  # in line heights: how far cuts start from each other and from the edges
#                   (a 1 is about 0.4 wide)
EDGE = 0.12  # share of a group's width at each side where no cut starts
REACH = 0.15  # in line heights: how far a cut may wander from its starting column
SLIVER = 0.15  # parts of a piece under this share of its largest part are dropped (a neighbour's
#                stroke end that the cut took)
SHORT = 0.6  # pieces lower than this share of the line height count as short
# a way's score: its features, summed over its pieces, weighed
FEATURES = ("log p", "wider", "narrower", "short", "pieces", "margin", "height off", "strokes crossed")
WEIGHTS = np.array([1.0, -0.3, -0.07, -4.06, 0.36, 0.09, -1.38, -0.67])
# log(width / height) of MNIST's training digits by class (ink above 0.3): mean and spread. Checked
# against the training set by tests/test_number.py.
ASPECT_MEAN = np.array([-0.108, -0.943, -0.074, -0.240, -0.247, -0.077, -0.333, -0.270, -0.288, -0.403])
ASPECT_STD = np.array([0.200, 0.462, 0.222, 0.214, 0.216, 0.263, 0.219, 0.218, 0.224, 0.207])


def aspect_stats(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of log(width / height) by class, for uint8 digits (N, 28, 28)."""
    ink = images > 0.3 * 255
    rows, cols = ink.any(2), ink.any(1)
    height = rows.shape[1] - rows[:, ::-1].argmax(1) - rows.argmax(1)
    width = cols.shape[1] - cols[:, ::-1].argmax(1) - cols.argmax(1)
    ratio = np.log(width / height)
    return (np.array([ratio[labels == d].mean() for d in range(10)]),
            np.array([ratio[labels == d].std() for d in range(10)]))


class Reading(NamedTuple):
    """Every way of cutting an image's groups into digits, before the model has read them."""
    pixels: np.ndarray  # uint8 (n, 28, 28): every piece of every way
    boxes: np.ndarray  # (n, 4): each piece's rows and columns [y0, y1, x0, x1) on the label grid
    ways: list  # per group, left to right: [(indices into pixels, strokes the cuts crossed), ...]
    height: int  # the line's height on the label grid: its tallest group's


def read_number(source, probs_of: Callable[[np.ndarray], np.ndarray],
                max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """The digits of a number in an image: uint8 (n, 28, 28) and their probabilities (n, 10)."""
    reading = pieces(source, max_pixels)
    probs = probs_of(reading.pixels)
    chosen = [k for ways, features in zip(reading.ways, way_features(reading, probs))
              for k in ways[best_way(features)][0]]
    return reading.pixels[chosen], probs[chosen]


def best_way(features: np.ndarray, weights: np.ndarray | None = None) -> int:
    """Which of a group's ways (its rows of way_features) scores best (WEIGHTS, or ``weights``
    when tuning them)."""
    return int(np.argmax(features @ (WEIGHTS if weights is None else weights)))


def pieces(source, max_pixels: int = MAX_PIXELS) -> Reading:
    """An image's ink grouped into digits, each group with every way of cutting it, as MNIST digits."""
    ink, labels, factor, floor = prepare(source, max_pixels)
    groups = [np.isin(labels, ids) for ids in group_digits(labels)]
    height = max(y1 - y0 for y0, y1, _, _ in map(box, groups))
    masks, ways = [], []
    for group in groups:
        ways.append([])
        for parts, crossed in ways_to_cut(group, height):
            ways[-1].append((list(range(len(masks), len(masks) + len(parts))), crossed))
            masks += parts
    return Reading(np.stack([digit_of(ink, mask, factor, floor) for mask in masks]),
                   np.array([box(mask) for mask in masks]), ways, height)


def way_features(reading: Reading, probs: np.ndarray) -> list[np.ndarray]:
    """Per group, (ways, len(FEATURES)): each way's features, summed over its pieces (each piece's
    worked out once)."""
    digit = probs.argmax(1)
    boxes = reading.boxes
    ratio = np.log((boxes[:, 3] - boxes[:, 2]) / (boxes[:, 1] - boxes[:, 0]))
    z = (ratio - ASPECT_MEAN[digit]) / ASPECT_STD[digit]
    short = np.maximum(0, SHORT - (boxes[:, 1] - boxes[:, 0]) / reading.height) / SHORT
    top2 = np.log(np.sort(probs, 1)[:, -2:] + 1e-12)
    each = np.stack([top2[:, 1], np.maximum(0, z) ** 2 / 2, np.maximum(0, -z) ** 2 / 2,
                     short ** 2, np.ones(len(probs)), np.minimum(top2[:, 1] - top2[:, 0], 10),
                     np.abs((boxes[:, 1] - boxes[:, 0]) / reading.height - 1)], 1)
    return [np.array([np.append(each[index].sum(0), crossed) for index, crossed in ways]) for ways in reading.ways]


def ways_to_cut(group: np.ndarray, height: int) -> list[tuple[list[np.ndarray], float]]:
    """Ways to read a group (a mask of the label grid) as digits: (masks of its pieces left to
    right, strokes its cuts cross). The first is the whole group; a wide one may be cut."""
    ways = [([group], 0.0)]
    y0, y1, x0, x1 = box(group)
    inside = group[y0:y1, x0:x1]
    width = x1 - x0
    if width <= SPLIT * height:
        return ways
    starts = cut_starts(inside.sum(0), height)
    paths = {c: cut_path(inside, c, max(1, int(REACH * height))) for c in starts}
    stroke = stroke_width(inside)
    crossed = {c: float(inside[np.arange(y1 - y0), path].sum()) / stroke for c, path in paths.items()}
    columns = np.arange(width)[None, :]
    for k in range(1, MAX_CUTS + 1):
        for cuts in itertools.combinations(starts, k):
            bounds = [np.full(y1 - y0, -1)] + [paths[c] for c in cuts] + [np.full(y1 - y0, width)]
            parts = []
            for left, right in zip(bounds, bounds[1:]):
                piece = inside & (columns > left[:, None]) & (columns <= right[:, None])
                if not piece.any():
                    break
                whole = np.zeros_like(group)
                whole[y0:y1, x0:x1] = drop_slivers(piece, SLIVER)
                parts.append(whole)
            else:
                ways.append((parts, sum(crossed[c] for c in cuts)))
    return ways


def cut_starts(ink_per_column: np.ndarray, height: int) -> list[int]:
    """Columns where cuts start: the CANDIDATES thinnest local minima of the (smoothed) ink per
    column, away from the edges (EDGE of the width, and PIECE_MIN line heights) and at least
    PIECE_MIN line heights apart, left to right; among equally thin ones, the nearest the middle."""
    width = len(ink_per_column)
    if width < 3:
        return []
    profile = np.convolve(ink_per_column.astype(float), np.ones(3) / 3, "same")
    margin = max(EDGE * width, PIECE_MIN * height)
    lo, hi = max(1, int(np.ceil(margin))), min(width - 1, int(width - margin) + 1)
    minima = [c for c in range(lo, hi) if profile[c] <= profile[c - 1] and profile[c] <= profile[c + 1]]
    chosen: list[int] = []
    for c in sorted(minima, key=lambda c: (profile[c], abs(2 * c - width))):
        if len(chosen) == CANDIDATES:
            break
        if all(abs(c - d) >= PIECE_MIN * height for d in chosen):
            chosen.append(c)
    return sorted(chosen)
