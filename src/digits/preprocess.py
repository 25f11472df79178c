"""Any image a person supplies -> MNIST-style digits: uint8 (28, 28), light ink on black, centred.

MNIST's own procedure: the digit's bounding box is scaled into 20x20 keeping its aspect ratio
(anti-aliased) and placed in 28x28 with its centre of mass at the centre. Before that, the image
is made MNIST-like: EXIF orientation applied, alpha flattened, grey, a shadow or a desk around
the page evened out (lighting.py), light ink on a black background whatever the original
polarity, faint noise and specks ignored. The result feeds
``digits.evaluate.predict_logits`` (which normalises as in training). Needs numpy and Pillow only.

    pixels = preprocess("photo.jpg")             # uint8 (28, 28)
    ink, labels, factor, floor = prepare("2024.png")  # what number.py cuts into digits
"""
from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DigitsError, ImageError
from .lighting import even_out, reduce_to
from .segment import dilate, label_components, max_pool, significant

MAX_PIXELS = 40_000_000  # decoded pixels: a 24-megapixel photo passes, a decompression bomb does not
WORK_SIDE = 256  # longest side the image is analysed at; larger ones are reduced (area-averaged)
LABEL_SIDE = 128  # longest side of the ink mask that components are found on
INK = 0.3  # normalised intensity (background 0, typical ink 1) that counts as ink for segmentation
FAINT = 0.1  # below this, a pixel is noise: it neither extends the bounding box nor is kept
# what a folder argument is searched for (predict, fewshot-predict): formats Pillow reads
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".pbm", ".ppm"}
INK_AT_EDGE = 0.05  # share of the border a digit cropped to its edges covers (at least)
MIN_CONTRAST = 0.1  # ink must differ from the background by this much (of full scale) to be a digit
BOX, SIZE = 20, 28  # MNIST: the digit fits a 20x20 box inside the 28x28 image
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}



def load_grey(source, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """float32 (H, W) in [0, 1], 1 = white: orientation applied, alpha flattened, at most WORK_SIDE."""
    name = "image" if isinstance(source, (bytes, bytearray, Image.Image)) else str(source)
    try:
        if isinstance(source, Image.Image):
            return reduce_to(_to_grey(_shrink(ImageOps.exif_transpose(_checked(source, name, max_pixels)))), WORK_SIDE)
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as img:
            _checked(img, name, max_pixels)
            _draft(img)
            return reduce_to(_to_grey(_shrink(ImageOps.exif_transpose(img))), WORK_SIDE)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, not an image") from None
    except Image.DecompressionBombError:
        limit = min(max_pixels, pillow_limit() or max_pixels)
        raise ImageError(f"{name}: over the limit of {limit:,} pixels (Pillow refuses it as a "
                         "possible decompression bomb); scale it down first") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError,
            EOFError, TypeError, KeyError) as e:
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        if isinstance(e, UnidentifiedImageError):
            reason = "not an image format Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)"
        raise ImageError(f"{name}: cannot read it as an image ({reason})") from None


def pillow_limit() -> int | None:
    """The most pixels Pillow opens an image of at all (None: no limit). Read when asked, since an
    application may set Image.MAX_IMAGE_PIXELS; digits never changes it, as serve decodes in
    several threads at once and other code in the process may use Pillow too."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def check_max_pixels(max_pixels: int) -> None:
    """DigitsError unless ``max_pixels`` is a limit that can apply: Pillow refuses larger images
    before digits sees their size."""
    limit = pillow_limit()
    if limit is not None and max_pixels > limit:
        raise DigitsError(f"--max-pixels can be at most {limit:,}, the largest image Pillow opens (it "
                          f"refuses larger ones as possible decompression bombs), got {max_pixels:,}")


def _checked(img: Image.Image, name: str, max_pixels: int) -> Image.Image:
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
                         f"{max_pixels:,}; scale it down first")
    if width == 0 or height == 0:
        raise ImageError(f"{name}: the image is empty ({width}x{height})")
    return img


def _draft(img: Image.Image) -> None:
    """JPEG: decode at 1/2, 1/4 or 1/8 scale, the smallest that keeps the longest side at least
    WORK_SIDE, and colour straight to grey (libjpeg's luma, the weights convert("L") uses). For
    a 1536x2048 photo: 1/8 instead of 1/4, 0.9-1.0 ms instead of 2.0-2.2 ms to decode (measured)."""
    width, height = img.size
    side = max(width, height)
    img.draft("L" if img.mode == "RGB" else img.mode,
              (max(1, width * WORK_SIDE // side), max(1, height * WORK_SIDE // side)))


def _shrink(img: Image.Image) -> Image.Image:
    """A large image made at most ~2x WORK_SIDE by an integer box filter in Pillow, at its own bit
    depth: the float copies that _to_grey makes of a full-size image cost a 170 KB upload (a plain
    6300x6300 RGBA PNG, within the pixel limit) 1.6 GB of memory and 15 s (measured). Images up
    to 4x WORK_SIDE are left as they were, for reduce_to to handle."""
    factor = max(img.size) // (2 * WORK_SIDE)
    if factor < 2:
        return img
    if img.mode in ("1", "P", "PA") or img.mode.startswith("I;16"):
        alpha = "A" in img.mode or "transparency" in img.info
        img = img.convert("RGBA" if alpha else "I" if img.mode.startswith("I;16") else "L")
    size = (-(-img.size[0] // factor), -(-img.size[1] // factor))
    return img.resize(size, Image.Resampling.BOX)  # RGBA and LA: premultiplied by Pillow


def _to_grey(img: Image.Image) -> np.ndarray:
    if img.mode in _SIXTEEN_BIT:
        # a float image can hold NaN or inf pixels: as black, rather than poisoning every statistic
        values = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        peak = float(values.max())
        # full scale: the smallest bit depth that holds the brightest pixel, as 10-, 12- and 14-bit
        # sensors fill only the low bits of a 16-bit file (4095 over 65535 read as near black)
        top = 1.0 if img.mode == "F" and peak <= 1 else 2.0 ** math.ceil(math.log2(peak + 1)) - 1 if peak > 255 else 255.0
        # (for a float at float32's largest value, 2**128 - 1 would overflow float32: inf, all black)
        return np.clip(values / min(top, float(np.finfo(np.float32).max)), 0, 1)
    if "A" in img.mode or "a" in img.mode or "transparency" in img.info:
        return _flatten(np.asarray(img.convert("RGBA"), dtype=np.float32) / 255)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255


def _flatten(rgba: np.ndarray) -> np.ndarray:
    """Composite onto white, or onto black when the opaque strokes are light: either way the ink
    stays visible (a transparent canvas with black strokes is a common export)."""
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    alpha = rgba[..., 3]
    opaque = alpha > 0.5
    light_ink = opaque.any() and not opaque.all() and float(grey[opaque].mean()) > 0.5
    return grey * alpha + (0.0 if light_ink else 1.0) * (1 - alpha)


def ink_map(grey: np.ndarray) -> np.ndarray:
    """Background 0, typical ink 1: polarity decided (ink is the minority, so the mean leans from
    the median towards it; but a light border around a dark majority that reaches it is paper
    around bold ink),
    background level subtracted, contrast stretched."""
    sample = grey[::2, ::2] if grey.size > 4096 else grey  # medians of a quarter: same answer, 4x faster
    median, mean = float(np.median(sample)), float(grey.mean())
    edge = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    border = float(np.median(edge))
    paper = median
    if abs(mean - median) > 1e-4:
        dark_ink = mean < median
        # A bold dark digit cropped to its edges: mostly ink, so the lean says "light ink", but its
        # border is the paper, and the ink reaches the border (where a light frame or light edges
        # around a light-on-dark digit do not let the dark through). Not trusted the other way
        # round: a photo of paper on a dark desk has a dark border and dark ink.
        if not dark_ink and border > median + MIN_CONTRAST and \
                float(np.mean(edge < (median + border) / 2)) >= INK_AT_EDGE:
            dark_ink, paper = True, border
    else:  # no lean either way: the border is background
        dark_ink = border > 0.5
    ink = 1 - grey if dark_ink else grey
    background = 1 - paper if dark_ink else paper
    top = float(ink.max())
    if top - background < MIN_CONTRAST:
        raise ImageError("no digit found: the image is blank or has almost no contrast")
    strong = ink[ink > (background + top) / 2]
    level = float(np.median(strong)) - background
    out = ink - background  # then in place: two fewer full-size temporaries
    out /= level
    return np.clip(out, 0, 1, out=out)


def _components(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels of the ink mask at a resolution of at most LABEL_SIDE, and the reduction factor."""
    factor = max(1, -(-max(ink.shape) // LABEL_SIDE))
    return label_components(max_pool(ink > INK, factor)), factor


def _selection(labels: np.ndarray, ids: list[int] | None, factor: int, shape, grow: int = 1) -> np.ndarray:
    """The chosen components (None: all ink), grown by ``grow`` pixels of the label grid (their
    anti-aliased rim), at full resolution."""
    return _grown(labels > 0 if ids is None else np.isin(labels, ids), factor, shape, grow)


def _grown(mask: np.ndarray, factor: int, shape, grow: int = 1) -> np.ndarray:
    """A mask of the label grid grown by ``grow`` of its pixels, at full resolution ``shape``."""
    mask = dilate(mask, grow)
    if factor > 1:
        mask = mask.repeat(factor, 0).repeat(factor, 1)
    return mask[:shape[0], :shape[1]]


def noise_floor(ink: np.ndarray, near_ink: np.ndarray) -> float:
    """The level below which a pixel is noise: FAINT, or higher when the background away from the
    ink (outside ``near_ink``) is noisy (sensor noise, JPEG artefacts), judged by its 99th percentile."""
    away = ~near_ink
    count = np.count_nonzero(away)
    if count == 0:
        return FAINT
    # the floor is FAINT when the 99th percentile is at most FAINT / 1.2, that is when the values
    # above that are fewer than those above the percentile's upper rank: counting them skips a
    # partial sort of ~60,000 values on a clean background (0.25 ms, measured)
    if np.count_nonzero((ink > FAINT / 1.2) & away) < count - np.ceil(0.99 * (count - 1)):
        return FAINT
    return float(min(max(FAINT, 1.2 * np.percentile(ink[away], 99)), INK))


def to_mnist(ink: np.ndarray, floor: float = FAINT) -> np.ndarray:
    """Ink (background 0, ink 1) -> uint8 (28, 28): bounding box into 20x20, centre of mass centred.
    Pixels at or below ``floor`` count as noise (and are cleared when the floor is above FAINT)."""
    above = ink > floor
    rows, cols = np.flatnonzero(above.any(1)), np.flatnonzero(above.any(0))  # 6x faster than nonzero
    if rows.size == 0:
        raise ImageError("no digit found: no ink above the noise level")
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    crop = np.where(above[box], ink[box], 0) if floor > FAINT else ink[box]
    h, w = crop.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != (w, h):
        crop = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS))
    crop = np.clip(crop, 0, 1)
    total = crop.sum()
    ys, xs = np.indices(crop.shape)
    top = _place(SIZE // 2 - (ys * crop).sum() / total, crop.shape[0])
    left = _place(SIZE // 2 - (xs * crop).sum() / total, crop.shape[1])
    out = np.zeros((SIZE, SIZE), np.float32)
    out[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    return np.round(out * 255).astype(np.uint8)


def _place(offset: float, length: int) -> int:
    return int(min(max(round(offset), 0), SIZE - length))


def prepare(source, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Ink map, component labels (on a grid ``factor`` times coarser) and noise floor of an image."""
    ink = ink_map(even_out(load_grey(source, max_pixels)))
    labels, factor = _components(ink)
    if labels.max() == 0:
        raise ImageError("no digit found: no ink above the noise level")
    return ink, labels, factor, noise_floor(ink, _selection(labels, None, factor, ink.shape, 3))


def digit_of(ink: np.ndarray, mask: np.ndarray, factor: int, floor: float) -> np.ndarray:
    """The ink under a mask of the label grid (grown by its anti-aliased rim) as one MNIST digit."""
    return to_mnist(ink * _grown(mask, factor, ink.shape), floor)


def preprocess(source, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One digit: an image file, bytes or PIL image -> uint8 (28, 28), MNIST-style."""
    ink, labels, factor, floor = prepare(source, max_pixels)
    return to_mnist(ink * _selection(labels, significant(labels), factor, ink.shape), floor)
