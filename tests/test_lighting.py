"""Evening out the light: the filters against direct references, and photos with a shadow across
the page or a dark desk around it read as the same digit evenly lit."""
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from digits.lighting import PAPER_WINDOW, _box, _valid, _window, closing, even_out, page_mask
from digits.preprocess import load_grey, preprocess
from test_preprocess import distance, encode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from photo_set import STYLES, photograph  # noqa: E402


def _seven(side: int = 120) -> np.ndarray:
    """Ink coverage in [0, 1]: a "7" with strokes 8 pixels wide, in the middle of a square page."""
    ink = np.zeros((side, side), np.float32)
    ink[30:38, 35:85] = 1  # the bar
    for y in range(38, 95):  # the stem, slanting down to the left
        x = 85 - (y - 38) // 2
        ink[y, x - 8:x] = 1
    return ink


def _photo(ink: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Dark ink on white paper under ``light`` (1: full light), uint8 grey."""
    return np.clip((230 - 200 * ink) * light, 0, 255).astype(np.uint8)


def _paper(grey: np.ndarray) -> np.ndarray:
    return closing(grey, _window(grey.shape, PAPER_WINDOW))


def test_the_window_extremum_is_a_sliding_window_over_whole_windows():
    rng = np.random.default_rng(0)
    rows = rng.random((4, 50)).astype(np.float32)
    for window in (1, 2, 3, 5, 8, 13, 32, 33, 50):
        for op, reduce in ((np.maximum, np.max), (np.minimum, np.min)):
            expected = reduce(sliding_window_view(rows, window, axis=1), axis=-1)
            assert np.array_equal(_valid(rows, window, op), expected), (window, op)


def test_closing_is_a_centred_maximum_then_minimum_over_the_edge_extended_picture():
    rng = np.random.default_rng(5)
    a = rng.random((23, 31)).astype(np.float32)
    for window in (3, 7, 11):
        half = window // 2
        wide = sliding_window_view(np.pad(a, half, mode="edge"), (window, window)).max(axis=(-1, -2))
        expected = sliding_window_view(np.pad(wide, half, mode="edge"), (window, window)).min(axis=(-1, -2))
        # the same away from the edges, where extending the picture first and then each filter agree
        inner = slice(window, -window)
        assert np.array_equal(closing(a, window)[inner, inner], expected[inner, inner]), window


def test_closing_fills_dark_strokes_narrower_than_its_window_and_keeps_wide_ones_in_place():
    grey = np.full((60, 80), 0.9, np.float32)
    grey[10:50, 20:24] = 0.1  # a stroke 4 wide
    grey[:, 50:] = 0.4  # a shadow 30 wide, its edge a step at column 50
    closed = closing(grey, 11)
    assert np.allclose(closed[:, :50], 0.9)  # the stroke filled with the paper around it
    assert np.allclose(closed[:, 50:], 0.4)  # the shadow kept, its edge where it was


def test_the_box_mean_matches_a_direct_mean_with_edges_extended():
    rng = np.random.default_rng(1)
    a = rng.random((9, 12)).astype(np.float32)
    padded = np.pad(a, 2, mode="edge")
    expected = sliding_window_view(padded, (5, 5)).mean(axis=(-1, -2))
    assert np.allclose(_box(a, 5), expected, atol=1e-6)


@pytest.mark.parametrize("case", ["even paper", "light ink on noisy black", "light ink on an uneven grey ground",
                                  "chalk on a lit board with dark joins", "bold ring cropped to it"])
def test_what_is_evenly_lit_or_not_on_paper_is_left_as_it_is(case):
    rng = np.random.default_rng(2)
    if case == "even paper":
        grey = _photo(_seven(), np.ones((120, 120))) / np.float32(255)
    elif case == "light ink on noisy black":
        grey = np.clip(_seven() * 0.9 + rng.normal(0, 0.05, (120, 120)), 0, 1).astype(np.float32)
    elif case == "light ink on an uneven grey ground":  # a chalkboard lit from one side, say
        light = 1 + 0.3 * np.linspace(-1, 1, 120)[None, :]
        grey = np.clip((0.25 + 0.7 * _seven()) * light + rng.normal(0, 0.05, (120, 120)), 0, 1).astype(np.float32)
    elif case == "chalk on a lit board with dark joins":  # darker than the board: taken for ink in shade
        yy, xx = np.mgrid[:120, :120]
        lamp = 1.3 - 0.6 * np.hypot(yy - 40, xx - 80) / 120
        board = np.full((120, 120), 0.25)
        board[:, 20:23] = board[95:98] = 0.06
        grey = np.clip((board * (1 - _seven()) + 0.88 * _seven()) * lamp, 0, 1).astype(np.float32)
    else:  # most pixels ink, wider than any window: the corners and the hole are the paper
        yy, xx = np.mgrid[:60, :60]
        r = np.hypot(yy - 29.5, xx - 29.5)
        grey = np.where((r < 30) & (r > 12), 0.0, 1.0).astype(np.float32)
    assert np.array_equal(even_out(grey), grey)


@pytest.mark.parametrize("style", STYLES)
def test_pictures_of_the_plain_styles_are_handed_back_untouched(style):
    """benchmarks/photo_set.py's photos (a light gradient of up to 12%), scans and transparent
    PNGs: evenly lit, so predict reads them as it did before lighting.py."""
    rng = np.random.default_rng(4)
    digit = np.asarray(Image.fromarray((_seven() * 255).astype(np.uint8)).resize((28, 28), Image.Resampling.BOX))
    for _ in range(60):
        grey = load_grey(photograph(digit, style, rng)[0])
        assert even_out(grey) is grey


def _shadowed(depth: float, softness: float, slope: float, offset: float) -> np.ndarray:
    """The "7" with a shadow's edge across it: left of a slanted line, the light ``depth`` less."""
    yy, xx = np.mgrid[:120, :120].astype(np.float32)
    across = (xx - offset) + slope * (yy - 60)
    light = 1 - depth / (1 + np.exp(np.clip(across / softness, -50, 50)))
    return _photo(_seven(), light)


# (depth, softness, slope, offset): measured distances 0.18, 0.08, 0.04 of 255 (without evening
# out: 57, 66 and 50, the shadow read as ink)
SHADOWS = [(0.45, 0.5, 0.3, 60), (0.55, 4.0, -1.0, 40), (0.65, 8.0, 0.3, 60)]


@pytest.mark.parametrize("shadow", SHADOWS)
def test_a_shadow_across_the_digit_is_evened_out(shadow):
    reference = preprocess(encode(_photo(_seven(), np.ones((120, 120)))))
    assert distance(preprocess(encode(_shadowed(*shadow))), reference) < 3


def _on_a_desk(page: np.ndarray, level: float = 40, grain: float = 12) -> np.ndarray:
    """The page placed off-centre on a larger dark desk, its grain as dark as ink in places."""
    rng = np.random.default_rng(3)
    desk = level + grain * np.asarray(Image.fromarray(rng.normal(0, 1, (12, 15)).astype(np.float32))
                                      .resize((300, 240), Image.Resampling.BICUBIC))
    desk[50:50 + page.shape[0], 120:120 + page.shape[1]] = page
    return np.clip(desk, 0, 255).astype(np.uint8)


def test_a_page_lying_on_a_dark_desk_reads_as_the_page_alone():
    page = _photo(_seven(), np.ones((120, 120)))
    photo = _on_a_desk(page)
    grey = photo / np.float32(255)
    found = page_mask(grey, _paper(grey))
    assert found is not None and found[100, 180] and not found[10, 10]  # the page, not the desk
    assert distance(preprocess(encode(photo)), preprocess(encode(page))) < 3  # measured: 0.84 of 255 (without evening out: 111)


def test_a_shadow_crossing_the_digit_is_not_taken_for_the_edge_of_a_page():
    grey = _shadowed(0.5, 0.5, 0.0, 60) / np.float32(255)  # the lit side a rectangle, as a page is
    assert page_mask(grey, _paper(grey)) is None  # but part of the ink lies in the shadow
