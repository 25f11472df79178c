"""Hostile and odd images through the preprocessing: a defined 28x28 result or a one-line
DigitsError, never another exception, a hang or a decoded giant. Hypothesis adds random and
mutated bytes."""
import io
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from digits.errors import DigitsError
from digits.preprocess import preprocess
from test_preprocess import png_header_only

settings.register_profile("images", max_examples=50, deadline=3000, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ = settings.get_profile("images")


def _digit(size=(120, 160)) -> np.ndarray:
    """A dark 'seven' on white, as uint8 (H, W)."""
    image = np.full(size[::-1], 255, np.uint8)
    h, w = image.shape
    image[h // 5:h // 5 + h // 12, w // 4:3 * w // 4] = 0  # the bar
    for i in range(h // 5, 4 * h // 5):  # the stem, slanting left
        c = 3 * w // 4 - (i - h // 5) * w // (2 * h)
        image[i, c - w // 16:c + w // 16] = 0
    return image


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _outcome(data: bytes):
    start = time.perf_counter()
    try:
        result = preprocess(data)
    except DigitsError as e:
        assert "\n" not in str(e) and "Traceback" not in str(e)
        result = e
    assert time.perf_counter() - start < 5.0
    if isinstance(result, np.ndarray):
        assert result.shape == (28, 28) and result.dtype == np.uint8
    return result


def _reference() -> np.ndarray:
    return preprocess(_encode(Image.fromarray(_digit())))


def _odd_images() -> dict:
    digit = _digit()
    rgb = Image.fromarray(digit).convert("RGB")
    frames = [Image.fromarray(digit), Image.fromarray(255 - digit)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    png = _encode(Image.fromarray(digit))
    return {
        "1x1 white": (_encode(Image.new("L", (1, 1), 255)), "no digit"),
        "1x1 black": (_encode(Image.new("L", (1, 1), 0)), "no digit"),
        "all white": (_encode(Image.new("L", (300, 200), 255)), "no digit"),
        "all black": (_encode(Image.new("RGB", (300, 200), 0)), "no digit"),
        "50000x50000 header": (png_header_only(50000, 50000), "over the limit"),
        "truncated PNG": (png[:len(png) // 2], "cannot read it"),
        "empty": (b"", "cannot read it"),
        "16-bit grey": (_encode(Image.fromarray(digit.astype(np.uint16) * 257)), None),
        "CMYK JPEG": (_encode(rgb.convert("CMYK"), "JPEG", quality=95), None),
        "CMYK TIFF": (_encode(rgb.convert("CMYK"), "TIFF"), None),
        "palette": (_encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)), None),
        "palette + transparency": (_encode(Image.fromarray(digit).convert("P"), transparency=255), None),
        "animated GIF (first frame)": (gif.getvalue(), None),
        "RGBA": (_encode(rgb.convert("RGBA")), None),
        "1-bit": (_encode(Image.fromarray(digit).convert("1")), None),
        "float TIFF": (_encode(Image.fromarray(digit.astype(np.float32) / 255), "TIFF"), None),
    }


@pytest.mark.parametrize("name", list(_odd_images()))
def test_odd_images_give_a_digit_or_a_clear_error(name):
    data, error = _odd_images()[name]
    result = _outcome(data)
    if error is None:
        assert isinstance(result, np.ndarray), result
        # the same seven as the plain PNG, give or take resampling
        assert np.abs(result.astype(int) - _reference().astype(int)).mean() < 20
    else:
        assert isinstance(result, DigitsError) and error in str(result), result


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    _outcome(data)


_SEED = {fmt: _encode(Image.fromarray(_digit((40, 30))), fmt) for fmt in ("PNG", "GIF", "BMP", "JPEG", "TIFF")}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt TIFF tags
@FUZZ
@given(st.sampled_from(sorted(_SEED)), st.data())
def test_mutated_and_truncated_images(fmt, draw):
    data = bytearray(_SEED[fmt])
    for _ in range(draw.draw(st.integers(1, 6), label="mutations")):
        data[draw.draw(st.integers(0, len(data) - 1))] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(1, len(data)), label="length")
    _outcome(bytes(data[:cut]))


@pytest.mark.slow  # 3000x3000 images: about a second each
@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16"])
def test_a_large_image_is_reduced_before_any_float_copy(mode):
    """A 3000x3000 image within the pixel limit: numpy's share of the work stays small (tracemalloc
    sees numpy's buffers, not Pillow's). Without the reduction an RGBA one took 144 MB of float32."""
    import tracemalloc

    digit = Image.fromarray(_digit((300, 300))).resize((3000, 3000), Image.Resampling.NEAREST)
    image = digit.convert(mode) if mode != "I;16" else Image.fromarray(np.asarray(digit).astype(np.uint16) * 257)
    data = _encode(image)
    tracemalloc.start()
    try:
        result = preprocess(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak
    small = preprocess(_encode(Image.fromarray(_digit((300, 300))).convert(mode if mode != "I;16" else "L")))
    assert np.abs(result.astype(int) - small.astype(int)).mean() < 10
