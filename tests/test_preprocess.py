"""Preprocessing against references: MNIST digits come back as themselves, and the same digit
photographed (large, off-centre, dark on light, any format) comes back nearly the same."""
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from digits.data import TEST_IMAGES, read_idx
from digits.errors import ImageError
from digits.preprocess import FAINT, INK, WORK_SIDE, ink_map, load_grey, noise_floor, preprocess, to_mnist


@pytest.fixture(scope="module")
def mnist_test_images():
    from conftest import REAL_DATA

    path = REAL_DATA / f"{TEST_IMAGES}.gz"
    if not path.exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"real MNIST not found at {REAL_DATA}")
    return read_idx(path).numpy()[:200]


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, fmt, **kw) if mode else Image.fromarray(array).save(buf, fmt, **kw)
    return buf.getvalue()


def photographed(image: np.ndarray, scale: int = 6, top: int = 40, left: int = 150) -> np.ndarray:
    """Dark ink on light paper, enlarged and off-centre, in a larger page."""
    big = np.asarray(Image.fromarray(image).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC))
    page = np.zeros((28 * scale + 90, 28 * scale + 200), np.uint8)
    page[top:top + 28 * scale, left:left + 28 * scale] = big
    return (235 - page.astype(np.float32) * 0.8).astype(np.uint8)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_an_mnist_digit_comes_back_as_itself(mnist_test_images):
    d = [distance(preprocess(encode(im)), im) for im in mnist_test_images]
    # measured: 1.03 of 255 on average over these 200; bounding boxes differ by a pixel at most
    assert np.mean(d) < 2.0 and np.median(d) < 1.0


def test_the_same_digit_photographed_comes_back_nearly_the_same(mnist_test_images):
    distances, correlations = [], []
    for image in mnist_test_images[:30]:
        photo = photographed(image)
        for data in (encode(photo), encode(np.stack([photo] * 3, -1), "JPEG", quality=85)):
            out = preprocess(data)
            distances.append(distance(out, image))
            correlations.append(np.corrcoef(out.ravel(), image.ravel())[0, 1])
    # measured on these 30: mean distance 7.1 of 255 (a digit moved by one pixel is ~20),
    # correlation 0.95 on average and 0.79 at worst
    assert np.mean(distances) < 9 and np.mean(correlations) > 0.92 and min(correlations) > 0.6


def test_centre_of_mass_is_centred_and_digit_fits_20x20():
    page = np.full((300, 400), 255, np.uint8)
    page[30:200, 300:330] = 0  # a thick "1" near the right edge
    out = preprocess(encode(page))
    ys, xs = np.nonzero(out)
    assert ys.max() - ys.min() + 1 == 20 and xs.max() - xs.min() + 1 <= 20
    com = np.array([(ys * out[ys, xs]).sum(), (xs * out[ys, xs]).sum()]) / out[ys, xs].sum()
    assert np.abs(com - 14).max() <= 0.5


def _digit_page(size=(120, 90)) -> np.ndarray:
    img = np.zeros(size[::-1], np.uint8)
    img[20:70, 30:40] = 255
    img[20:28, 30:80] = 255  # an "L" lying on its back: asymmetric, so rotations show
    return img


@pytest.mark.parametrize("fmt,mode", [("PNG", "L"), ("JPEG", "RGB"), ("BMP", "RGB"), ("GIF", "P"),
                                      ("TIFF", "I;16"), ("WEBP", "RGB"), ("PNG", "LA"), ("PNG", "RGBA"),
                                      ("PNG", "I;16 holding 12 bits"), ("TIFF", "I;16 holding 10 bits")])
def test_formats_and_modes_give_the_same_digit(fmt, mode):
    ink = _digit_page()
    reference = preprocess(encode(ink))
    paper = 255 - ink  # dark on light
    if mode == "I;16":
        image = Image.fromarray(paper.astype(np.uint16) * 257)
    elif mode.startswith("I;16 holding"):  # a 10- or 12-bit sensor's values in a 16-bit file
        bits = int(mode.split()[2])
        image = Image.fromarray((paper.astype(np.uint16) << (bits - 8)) | (paper.astype(np.uint16) >> (16 - bits)))
    elif mode in ("LA", "RGBA"):  # black strokes on a transparent canvas
        rgba = np.zeros(ink.shape + (4,), np.uint8)
        rgba[..., 3] = ink
        image = Image.fromarray(rgba).convert(mode)
    else:
        image = Image.fromarray(paper).convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
    assert distance(preprocess(buf.getvalue()), reference) < 4


def test_light_strokes_on_transparent_and_exif_orientation():
    ink = _digit_page()
    reference = preprocess(encode(ink))
    rgba = np.full(ink.shape + (4,), 255, np.uint8)
    rgba[..., 3] = ink  # white strokes, transparent elsewhere
    assert distance(preprocess(encode(rgba)), reference) < 4
    sideways = Image.fromarray(255 - ink).transpose(Image.Transpose.ROTATE_90)  # a phone held upright
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buf = io.BytesIO()
    sideways.save(buf, "JPEG", exif=exif, quality=95)
    assert distance(preprocess(buf.getvalue()), reference) < 4


def test_faint_noise_and_specks_do_not_move_the_box():
    rng = np.random.default_rng(0)
    ink = _digit_page((300, 200)).astype(np.float32)
    noisy = np.clip(ink + rng.normal(0, 12, ink.shape), 0, 255)
    noisy[180:183, 250:253] = 255  # a speck of dust far from the digit
    assert distance(preprocess(encode(noisy.astype(np.uint8))), preprocess(encode(ink.astype(np.uint8)))) < 4


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size (a decompression bomb) but holds almost nothing."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("data,message", [
    (png_header_only(50_000, 50_000), "over the limit"),
    (png_header_only(7_000, 7_000), "over the limit"),  # under Pillow's own limit, over ours
    (b"hello, not an image", "cannot read it as an image"),
    (encode(np.full((50, 50), 200, np.uint8)), "no digit found"),
    (encode(np.zeros((1, 1), np.uint8)), "no digit found"),
], ids=["bomb", "too-many-pixels", "not-an-image", "blank", "one-pixel"])
def test_bad_images_raise_one_clear_error(data, message):
    with pytest.raises(ImageError, match=message):
        preprocess(data)


def test_missing_file_and_pixel_limit_argument(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_grey(tmp_path / "none.png")
    with pytest.raises(ImageError, match="over the limit"):
        preprocess(encode(_digit_page()), max_pixels=100)


def test_to_mnist_output_contract():
    ink = np.zeros((40, 40), np.float32)
    ink[5:35, 18:22] = 1
    out = to_mnist(ink)
    assert out.dtype == np.uint8 and out.shape == (28, 28) and out.max() == 255
    assert ink_map(np.where(ink > 0, 0.0, 1.0).astype(np.float32)).max() == 1  # dark ink inverted


@pytest.mark.parametrize("noisy", [0, 18, 36, 37, 38, 74, 1848, 3696])
def test_noise_floor_is_the_percentile_rule(noisy):
    """Background values above FAINT / 1.2 around the shortcut's edge (of 3,696, the 99th
    percentile reaches them from the 37th on) and far from it."""
    rng = np.random.default_rng(noisy)
    ink = rng.uniform(0, FAINT / 1.2, (64, 64)).astype(np.float32)
    near = np.zeros(ink.shape, bool)
    near[20:40, 20:40] = True
    chosen = rng.choice(np.flatnonzero(~near.ravel()), noisy, replace=False)
    ink.ravel()[chosen] = rng.uniform(FAINT / 1.2, 0.5, noisy)
    expected = min(max(FAINT, 1.2 * float(np.percentile(ink[~near], 99))), INK)
    assert noise_floor(ink, near) == pytest.approx(expected, abs=1e-6)


def test_a_large_jpeg_is_decoded_small_and_grey():
    """JPEG drafts decode a 1536x2048 photo at 1/8 (libjpeg averages each 8x8 block): the same grey
    image, within JPEG's rounding, as decoding it whole and box-averaging."""
    page = np.full((2048, 1536), 230, np.uint8)
    page[600:1400, 400:1100] = 40
    rgb = np.stack([page, page - 20, page // 2], -1)
    data = encode(rgb, "JPEG", quality=90)
    grey = load_grey(data)
    assert grey.shape == (WORK_SIDE, WORK_SIDE * 3 // 4)
    whole = Image.open(io.BytesIO(data)).convert("L").reduce(8)
    assert np.abs(grey - np.asarray(whole, np.float32) / 255).max() < 3 / 255


def test_a_bold_dark_digit_cropped_to_its_edges_keeps_its_polarity():
    # a thick "0" touching all four edges: two thirds of the pixels are ink, the corners are paper
    yy, xx = np.mgrid[:60, :60]
    r = np.hypot(yy - 29.5, xx - 29.5)
    grey = np.where((r < 30) & (r > 12), 0, 255).astype(np.uint8)
    assert (grey == 0).mean() > 0.6
    out = preprocess(Image.fromarray(grey))
    assert out[14, 14] < 50 and out.max() > 200  # the hole is background, the ring is ink


def test_a_float_image_with_a_nan_pixel_is_still_read(recwarn):
    grey = np.ones((40, 40), np.float32)
    grey[8:32, 18:22] = 0.0  # a dark "1" on white
    grey[0, 0] = np.nan
    out = preprocess(Image.fromarray(grey, mode="F"))
    assert out.max() > 200 and not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_float_image_as_bright_as_float32_goes_is_read_without_overflow(recwarn):
    grey = np.zeros((40, 40), np.float32)
    grey[8:32, 18:22] = np.finfo(np.float32).max  # a light "1": full scale would be 2**128, past float32
    out = preprocess(Image.fromarray(grey, mode="F"))
    assert out.max() > 200 and not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_light_digit_on_dark_inside_a_light_frame_keeps_its_polarity():
    # the frame makes the border light, but no dark pixel reaches it: not a cropped dark digit
    grey = np.zeros((60, 60), np.float32)
    grey[10:50, 27:33] = 1.0  # a light "1"
    grey[:2, :] = grey[-2:, :] = grey[:, :2] = grey[:, -2:] = 1.0
    ink = ink_map(grey)
    assert ink[30, 30] > 0.9 and ink[30, 10] < 0.1


def test_a_limit_above_pillows_own_names_the_limit_that_applied():
    """Pillow refuses images over 2 x Image.MAX_IMAGE_PIXELS (~179 M) before digits sees their
    size: a larger max_pixels cannot apply, and the message must not claim it did."""
    pillow = 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError) as error:
        preprocess(png_header_only(15_000, 13_000), max_pixels=200_000_000)  # 195 M pixels
    assert f"over the limit of {pillow:,} pixels (Pillow refuses it" in str(error.value)
    with pytest.raises(ImageError, match="over the limit of 100,000,000 pixels"):  # ours, when lower
        preprocess(png_header_only(15_000, 13_000), max_pixels=100_000_000)


def test_max_pixels_above_pillows_limit_is_refused_up_front(monkeypatch):
    from digits.errors import DigitsError
    from digits.preprocess import check_max_pixels, pillow_limit

    assert pillow_limit() == 2 * Image.MAX_IMAGE_PIXELS
    check_max_pixels(pillow_limit())
    with pytest.raises(DigitsError, match=f"--max-pixels can be at most {pillow_limit():,}, the largest "
                                          "image Pillow opens .* got 200,000,000$"):
        check_max_pixels(200_000_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # an application lifted Pillow's limit
    check_max_pixels(10**12)
