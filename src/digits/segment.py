"""Connected components of an ink mask, and their grouping into digits, in numpy alone.

No scipy: components are found by propagating the smallest pixel index through each 8-connected
region, with pointer jumping so that long strokes converge in a few passes.

    labels = label_components(mask)           # int32, 0 = background, 1..n left to right
    groups = group_digits(labels)             # [[1], [2, 3], ...]: component ids per digit
"""
from __future__ import annotations

import numpy as np

SPECK = 0.03  # components under this fraction of the largest one's area are noise (dust, JPEG blocks)
OVERLAP = 0.5  # components sharing this much of the narrower one's width belong to one digit


def _neighbourhood(a: np.ndarray, fill, reduce) -> np.ndarray:
    """Elementwise ``reduce`` over each pixel's 3x3 neighbourhood."""
    h, w = a.shape
    padded = np.full((h + 2, w + 2), fill, dtype=a.dtype)
    padded[1:-1, 1:-1] = a
    out = a.copy()
    for dy in range(3):
        for dx in range(3):
            reduce(out, padded[dy:dy + h, dx:dx + w], out=out)
    return out


def dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    """Grow a boolean mask by ``steps`` pixels (8-connected)."""
    for _ in range(steps):
        mask = _neighbourhood(mask, False, np.logical_or)
    return mask


def max_pool(a: np.ndarray, factor: int) -> np.ndarray:
    """Downscale by an integer factor keeping each block's maximum (thin strokes survive)."""
    if factor == 1:
        return a
    h, w = a.shape
    H, W = -(-h // factor), -(-w // factor)
    padded = np.zeros((H * factor, W * factor), dtype=a.dtype)
    padded[:h, :w] = a
    return padded.reshape(H, factor, W, factor).max(axis=(1, 3))


def label_components(mask: np.ndarray) -> np.ndarray:
    """8-connected components of a boolean mask: int32 labels, 0 for background and 1..n for the
    components in order of their leftmost pixel (ties: topmost)."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if rows.size == 0:
        return np.zeros(mask.shape, np.int32)
    out = np.zeros(mask.shape, np.int32)  # label only the ink's bounding box: less to propagate over
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    out[box] = _label(mask[box])
    return out


def _label(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    background = h * w
    labels = np.where(mask, np.arange(h * w).reshape(h, w), background)
    while True:
        smaller = _neighbourhood(labels, background, np.minimum)
        smaller = np.where(mask, smaller, background)
        flat = smaller.ravel()
        on = flat < background
        for _ in range(4):  # pointer jumping: adopt the label of the pixel the label names
            flat[on] = flat[flat[on]]
        if np.array_equal(smaller, labels):
            break
        labels = smaller
    return _renumber(labels, mask)


def _renumber(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    roots = np.unique(labels[mask])
    if roots.size == 0:
        return np.zeros(mask.shape, np.int32)
    ys, xs = np.nonzero(mask)
    leftmost = np.full(roots.size, np.iinfo(np.int64).max)
    index = np.searchsorted(roots, labels[mask])
    np.minimum.at(leftmost, index, xs.astype(np.int64) * (mask.shape[0] + 1) + ys)
    order = np.empty(roots.size, np.int32)
    order[np.argsort(leftmost, kind="stable")] = np.arange(1, roots.size + 1, dtype=np.int32)
    out = np.zeros(mask.shape, np.int32)
    out[mask] = order[index]
    return out


def component_stats(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Area and column extent [x0, x1) of components 1..n."""
    n = int(labels.max())
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    ys, xs = np.nonzero(labels)
    ids = labels[ys, xs] - 1
    x0 = np.full(n, labels.shape[1])
    x1 = np.zeros(n, np.int64)
    np.minimum.at(x0, ids, xs)
    np.maximum.at(x1, ids, xs + 1)
    return area, np.stack([x0, x1], 1)


def significant(labels: np.ndarray) -> list[int]:
    """Ids of the components that are not specks, left to right."""
    if labels.max() == 0:
        return []
    area, _ = component_stats(labels)
    return [i + 1 for i in np.nonzero(area >= SPECK * area.max())[0]]


def group_digits(labels: np.ndarray) -> list[list[int]]:
    """Significant components grouped into digits, left to right: components that overlap in x
    (the bar and body of a 5, a broken stroke) form one digit."""
    keep = significant(labels)
    if not keep:
        return []
    _, extent = component_stats(labels)
    groups: list[list[int]] = []
    span = None
    for cid in keep:  # already ordered by leftmost pixel
        x0, x1 = extent[cid - 1]
        if span is not None:
            narrower = min(x1 - x0, span[1] - span[0])
            if min(x1, span[1]) - max(x0, span[0]) >= OVERLAP * narrower:
                groups[-1].append(cid)
                span = (min(span[0], x0), max(span[1], x1))
                continue
        groups.append([cid])
        span = (x0, x1)
    return groups
