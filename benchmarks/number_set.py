"""Numbers written with MNIST test digits, as a person would photograph or scan them, to check
`digits predict --number`.

Each number takes the next 2-4 test digits in order, crops each to its ink, sizes and shifts it a
little (handwriting is not on a grid) and writes them left to right with a gap between their ink
drawn from GAPS pixels (at MNIST's scale, where a digit is about 20 high): a negative gap pushes a
digit into its neighbour's box, so that about half of the numbers have digits that touch. Then the
page is enlarged 3-6x, blurred a little and saved in turn as a photo (dark ink on tinted, unevenly
lit paper, JPEG) or a grey PNG scan (benchmarks/photo_set.py's styles).

File names carry the index, the number and whether two of its digits touch (their ink, enlarged
and blurred, joined into one stroke as digits' reading sees it): 00042_2024_t.png, 00043_517_a.jpg.

    python benchmarks/number_set.py --out /tmp/numbers --count 1000
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from photo_set import _photo, _scan

STYLES = ("photo", "scan")
GAPS = (-4.0, 5.0)  # pixels between neighbouring digits' ink, at 28x28 scale
INK = 77  # of 255: what counts as ink when deciding whether two digits touch (preprocess.INK)
LABEL_SIDE = 128  # and the grid it is decided on (preprocess.LABEL_SIDE)


def _crop(image: np.ndarray) -> np.ndarray:
    """A uint8 (28, 28) digit cut to the rows and columns holding ink."""
    from digits.segment import box

    y0, y1, x0, x1 = box(image > 0)
    return image[y0:y1, x0:x1]


def compose(images: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Digits side by side at MNIST's scale: one layer each (N, height, width), ink in [0, 1]."""
    parts = []
    for image in images:
        part = Image.fromarray(_crop(image))
        scale = rng.uniform(0.9, 1.1)
        size = (max(1, round(part.width * scale)), max(1, round(part.height * scale)))
        parts.append(np.asarray(part.resize(size, Image.Resampling.BICUBIC), np.float32) / 255)
    margin = 6
    lefts, x = [], float(margin)
    for i, part in enumerate(parts):
        if i:
            x += rng.uniform(*GAPS)
        lefts.append(max(0, round(x)))
        x = lefts[-1] + part.shape[1]
    tops = [margin + round(rng.uniform(-2, 2)) + (24 - part.shape[0]) // 2 for part in parts]
    height = max(t + p.shape[0] for t, p in zip(tops, parts)) + margin
    width = max(left + p.shape[1] for left, p in zip(lefts, parts)) + margin
    layers = np.zeros((len(parts), height, width), np.float32)
    for layer, part, top, left in zip(layers, parts, tops, lefts):
        layer[top:top + part.shape[0], left:left + part.shape[1]] = part
    return np.clip(layers, 0, 1)


def touching(layers: np.ndarray) -> bool:
    """Whether the ink of two different digits forms one connected stroke, as digits' reading of
    the picture sees it: ink above INK, on a grid of at most LABEL_SIDE a side (each cell inked if
    any of its pixels is)."""
    from digits.segment import label_components, max_pool

    factor = max(1, -(-max(layers.shape[1:]) // LABEL_SIDE))
    inked = np.stack([max_pool(layer >= INK / 255, factor) for layer in layers])
    labels = label_components(inked.any(0))
    owners = [set(np.unique(labels[layer])) - {0} for layer in inked]
    return any(owners[i] & owners[j] for i in range(len(owners)) for j in range(i + 1, len(owners)))


def render(layers: np.ndarray, style: str, rng: np.random.Generator) -> tuple[bytes, str, bool]:
    """Digits at MNIST's scale enlarged 3-6x, blurred like a camera, in a style of photo_set; and
    whether two of them touch once enlarged and blurred."""
    scale = rng.uniform(3, 6)
    size = (round(layers.shape[2] * scale), round(layers.shape[1] * scale))
    radius = scale * rng.uniform(0.1, 0.3)
    big = np.stack([_enlarge(layer, size, radius) for layer in layers])
    page = _enlarge(layers.max(0), size, radius)
    return *{"photo": _photo, "scan": _scan}[style](page, rng), touching(big)


def _enlarge(ink: np.ndarray, size: tuple[int, int], radius: float) -> np.ndarray:
    big = Image.fromarray(np.round(ink * 255).astype(np.uint8)).resize(size, Image.Resampling.BICUBIC)
    return np.asarray(big.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255


def write_number_set(images: np.ndarray, labels: np.ndarray, out: Path, count: int,
                     seed: int = 0, lengths: tuple[int, int] = (2, 4)) -> list[Path]:
    """Write ``count`` numbers made of the digits in order (``lengths``: fewest and most digits in
    one, 2-4 unless told), cycling the styles."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths, start = [], 0
    for i in range(count):
        k = int(rng.integers(lengths[0], lengths[1] + 1))
        if start + k > len(images):
            start = 0
        layers = compose(list(images[start:start + k]), rng)
        number = "".join(str(int(d)) for d in labels[start:start + k])
        start += k
        data, suffix, joined = render(layers, STYLES[i % len(STYLES)], rng)
        path = out / f"{i:05d}_{number}_{'t' if joined else 'a'}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def number_of(path: str | Path) -> tuple[str, bool]:
    """The true number and whether its digits touch, from a file name written above."""
    _, number, touching = Path(path).stem.split("_")
    return number, touching == "t"


def main() -> None:
    from digits.data import load_mnist

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="folder to write the images into")
    p.add_argument("--count", type=int, default=1000, help="numbers to write (default 1000)")
    p.add_argument("--data-dir", help="MNIST folder (default: as digits finds it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random layout and styling (default 0)")
    args = p.parse_args()
    test = load_mnist(args.data_dir, val_size=0, download=False).test
    paths = write_number_set(test.images[:, 0].numpy(), test.labels.numpy(), Path(args.out), args.count, args.seed)
    touching = sum(number_of(p)[1] for p in paths)
    print(f"wrote {len(paths)} numbers to {args.out} ({touching} with touching digits)")


if __name__ == "__main__":
    main()
