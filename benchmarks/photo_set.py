"""MNIST test digits drawn as a person would photograph or export them, to check `digits predict`.

Each test image is enlarged 3-8x, blurred a little like a camera, and placed off-centre on a
larger page in one of three styles, in turn:
  photo        dark ink on tinted paper, uneven light, sensor noise, JPEG; some stored rotated with
               an EXIF orientation tag (as phones do)
  scan         dark ink on white, grey PNG
  transparent  black strokes on a transparent background, RGBA PNG (a drawing app's export)
Two harder styles, asked for by name (``--styles shadow,desk``), JPEG photos like ``photo``:
  shadow       a shadow's edge across the page (a hand or the phone over the paper): one side
               35-65% darker, the edge soft or sharp, on top of a stronger light gradient
  desk         the page does not fill the picture: it lies on a dark desk that shows around it
File names carry the index and true label: 00042_7.jpg.

    python benchmarks/photo_set.py --out /tmp/photos --count 1000
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

STYLES = ("photo", "scan", "transparent")
HARD_STYLES = ("shadow", "desk")


def _page(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage in [0, 1] on a page several times the digit's size, digit off-centre."""
    scale = rng.uniform(3, 8)
    side = round(28 * scale)
    big = Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC)
    big = big.filter(ImageFilter.GaussianBlur(scale * rng.uniform(0.1, 0.3)))
    h, w = (round(side * rng.uniform(1.3, 2.2)) for _ in range(2))
    page = np.zeros((h, w), np.float32)
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    page[top:top + side, left:left + side] = np.asarray(big, np.float32) / 255
    return page


def _photo(ink: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    return _jpeg(_paper(ink, rng, lambda rng: _gradient(ink.shape, 0.06, rng)), rng)


def _gradient(shape: tuple[int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Light falling off linearly across the page, by up to ``strength`` each way."""
    h, w = shape
    return 1 + rng.uniform(-strength, strength) * np.linspace(-1, 1, w)[None, :] \
        + rng.uniform(-strength, strength) * np.linspace(-1, 1, h)[:, None]


def _paper(ink: np.ndarray, rng: np.random.Generator, light_of) -> np.ndarray:
    """RGB float: dark ink on tinted paper under ``light_of`` (drawn after the colours), with noise."""
    paper = rng.uniform([215, 210, 195], [250, 248, 240])
    pen = rng.uniform([10, 10, 30], [60, 60, 110])
    light = light_of(rng)
    rgb = (paper * (1 - ink[..., None]) + pen * ink[..., None]) * light[..., None]
    return rgb + rng.normal(0, rng.uniform(2, 6), rgb.shape)


def _jpeg(rgb: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    exif = Image.Exif()
    if rng.random() < 0.3:  # stored sideways with the tag that says how to turn it upright
        img = img.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(70, 95)), exif=exif)
    return buf.getvalue(), ".jpg"


def _shadow(ink: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    def light(rng: np.random.Generator) -> np.ndarray:
        h, w = ink.shape
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        across = (xs - rng.uniform(0.2, 0.8) * w) * np.cos(angle) + (ys - rng.uniform(0.2, 0.8) * h) * np.sin(angle)
        soft = rng.uniform(0.005, 0.08) * max(h, w)
        shade = 1 - rng.uniform(0.35, 0.65) / (1 + np.exp(np.clip(-across / soft, -50, 50)))
        return shade * _gradient(ink.shape, 0.15, rng)
    return _jpeg(_paper(ink, rng, light), rng)


def _desk(ink: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    page = _paper(ink, rng, lambda rng: _gradient(ink.shape, 0.06, rng))
    h, w = ink.shape
    H, W = (round(side / rng.uniform(0.55, 0.85)) for side in (h, w))
    desk = rng.uniform([40, 30, 20], [130, 110, 90])
    grain = Image.fromarray(rng.normal(0, 1, (H // 16 + 2, W // 16 + 2)).astype(np.float32)).resize((W, H), Image.Resampling.BICUBIC)
    rgb = desk * (1 + 0.15 * np.asarray(grain, np.float32)[..., None]) + rng.normal(0, 4, (H, W, 3))
    top, left = rng.integers(0, H - h + 1), rng.integers(0, W - w + 1)
    rgb[top:top + h, left:left + w] = page
    return _jpeg(rgb, rng)


def _scan(ink: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    grey = 245 - ink * rng.uniform(170, 235) + rng.normal(0, 3, ink.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue(), ".png"


def _transparent(ink: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    rgba = np.zeros(ink.shape + (4,), np.uint8)
    rgba[..., 3] = np.round(ink * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue(), ".png"


def photograph(image: np.ndarray, style: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """One uint8 (28, 28) MNIST image -> (encoded file, suffix) in the given style."""
    ink = _page(image, rng)
    return {"photo": _photo, "scan": _scan, "transparent": _transparent,
            "shadow": _shadow, "desk": _desk}[style](ink, rng)


def write_photo_set(images: np.ndarray, labels: np.ndarray, out: Path, seed: int = 0,
                    styles: tuple[str, ...] = STYLES) -> list[Path]:
    """Write images (N, 28, 28) as files named INDEX_LABEL.ext, cycling through the styles."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        data, suffix = photograph(image, styles[i % len(styles)], rng)
        path = out / f"{i:05d}_{int(label)}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def label_of(path: str | Path) -> int:
    return int(Path(path).stem.split("_")[1])


def main() -> None:
    from digits.data import load_mnist

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder to write the images into")
    p.add_argument("--count", type=int, default=10000, help="first N test images (default all 10,000)")
    p.add_argument("--data-dir", help="MNIST folder (default: as digits finds it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random styling (default 0)")
    args = p.parse_args()
    test = load_mnist(args.data_dir, val_size=0, download=False).test
    images, labels = test.images[:args.count, 0].numpy(), test.labels[:args.count].numpy()
    paths = write_photo_set(images, labels, Path(args.out), args.seed)
    print(f"wrote {len(paths)} images to {args.out}")


if __name__ == "__main__":
    main()
