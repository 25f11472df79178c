"""Augmentation for tiny training sets: one random affine warp per image, done as batched tensor
ops (affine_grid + grid_sample), never flips (a mirrored 2 or 5 is not the same digit).

    batch = random_affine(images.float(), generator)      # pixels 0-255 in, 0-255 out
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineRange:
    shift: float = 2.5  # pixels, each direction, each axis
    rotate: float = 12.0  # degrees, either way
    scale: float = 0.1  # relative: zoom in [1 - scale, 1 + scale]
    shear: float = 0.15  # horizontal shear factor, either way (slanted handwriting)


def _uniform(n: int, half_width: float, generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2 - 1).mul_(half_width).to(device)


def random_affine(images: torch.Tensor, generator: torch.Generator,
                  ranges: AffineRange = AffineRange()) -> torch.Tensor:
    """Warp float images (N, 1, H, W) of pixel values 0-255 (background 0) by a random affine map
    each: shift, rotation, zoom and shear. The generator lives on the CPU so runs repeat anywhere."""
    n, device = len(images), images.device
    angle = _uniform(n, math.radians(ranges.rotate), generator, device)
    scale = 1 + _uniform(n, ranges.scale, generator, device)
    shear = _uniform(n, ranges.shear, generator, device)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size
    shift = torch.stack([_uniform(n, ranges.shift * 2 / images.shape[-1], generator, device),
                         _uniform(n, ranges.shift * 2 / images.shape[-2], generator, device)], 1)
    cos, sin = angle.cos() / scale, angle.sin() / scale
    theta = torch.stack([torch.stack([cos, -sin + shear, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
