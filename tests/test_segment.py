"""Connected components against a breadth-first-search reference, and digit grouping."""
from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from digits.segment import dilate, group_digits, label_components, max_pool


def reference_components(mask: np.ndarray) -> set[frozenset]:
    """8-connected components by breadth-first search, as sets of pixel coordinates."""
    seen, comps = np.zeros_like(mask), set()
    h, w = mask.shape
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        comp, queue = set(), deque([start])
        seen[start] = True
        while queue:
            y, x = queue.popleft()
            comp.add((y, x))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        comps.add(frozenset(comp))
    return comps


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 24), st.integers(1, 24))))
def test_components_match_breadth_first_search(mask):
    labels = label_components(mask)
    found = {frozenset(zip(*np.nonzero(labels == i))) for i in range(1, labels.max() + 1)}
    assert found == reference_components(mask)
    assert ((labels > 0) == mask).all()
    leftmost = [np.nonzero(labels == i)[1].min() for i in range(1, labels.max() + 1)]
    assert leftmost == sorted(leftmost)  # numbered left to right


def test_a_long_spiral_is_one_component():
    mask = np.zeros((60, 60), bool)
    for k in range(0, 30, 4):  # nested square rings joined by a gap: a path of ~1,000 pixels
        mask[k, k:60 - k] = mask[59 - k, k:60 - k] = mask[k:60 - k, k] = mask[k:60 - k, 59 - k] = True
        mask[k + 1:k + 3, k] = True
    assert label_components(mask).max() == 8  # eight rings, none touching
    mask[0:30, 30] = True  # a spoke joining every ring
    assert label_components(mask).max() == 1


def test_groups_merge_overlapping_parts_and_drop_specks():
    mask = np.zeros((30, 60), bool)
    mask[5:25, 2:6] = True  # a "1"
    mask[5:8, 20:30] = True  # the bar of a "5" ...
    mask[10:25, 20:28] = True  # ... and its body, apart from the bar
    mask[5:25, 45:50] = True  # another digit
    mask[28, 38] = True  # a speck of dust
    groups = group_digits(label_components(mask))
    assert groups == [[1], [2, 3], [5]]


def test_dilate_and_max_pool():
    mask = np.zeros((5, 5), bool)
    mask[2, 2] = True
    assert dilate(mask).sum() == 9 and dilate(mask, 2).sum() == 25
    a = np.arange(25).reshape(5, 5)
    assert max_pool(a, 2).tolist() == [[6, 8, 9], [16, 18, 19], [21, 23, 24]]


def test_a_serpentine_stroke_is_one_component():
    """One stroke folding back on itself 64 times: labels must travel the whole ~8,000-pixel path."""
    mask = np.zeros((128, 128), bool)
    mask[::2] = True
    mask[1::4, -1] = mask[3::4, 0] = True  # the turns, alternately at the right and left ends
    assert label_components(mask).max() == 1
    mask[63, 0] = False  # cut one turn: two strokes, both from column 0, the upper one first
    labels = label_components(mask)
    assert labels.max() == 2 and labels[0, 0] == 1 and labels[127, 0] == 2


def test_max_pool_matches_block_maxima():
    rng = np.random.default_rng(0)
    for h, w, factor in [(7, 5, 3), (128, 96, 2), (1, 9, 4), (10, 10, 1)]:
        for a in (rng.random((h, w)) < 0.2, rng.integers(0, 100, (h, w))):  # padding is 0: non-negative input
            out = max_pool(a, factor)
            H, W = -(-h // factor), -(-w // factor)
            expected = [[a[y * factor:(y + 1) * factor, x * factor:(x + 1) * factor].max() for x in range(W)]
                        for y in range(H)]
            assert out.dtype == a.dtype and out.tolist() == expected
