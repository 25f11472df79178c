"""Random distortions of whole training batches as tensor operations, on the batch's device.

One sampling grid per batch: a random affine map (rotation, zoom, shear, translation), plus an
optional smooth random displacement field (elastic distortion), applied with ``grid_sample``.
Every affine map has a positive determinant, so no image is ever mirrored: a flipped 2 or 7 is
not a digit.

    images = augment_batch(images, config.augment, generator)   # (N, 1, 28, 28) normalised float
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig, non_finite
from .data import MEAN, STD
from .errors import DigitsError

BACKGROUND = (0.0 - MEAN) / STD  # a blank pixel after normalisation
SIDE = 28  # MNIST's images are SIDE x SIDE pixels
# the elastic field's Gaussian reaches 3 sigma either side and is reflect-padded, so it must fit in
# the image (3 sigma < SIDE); below MIN_SIGMA its float32 kernel is exactly [0, 1, 0] (a field of
# unsmoothed noise), and far below it 2 sigma**2 underflows to 0 and the kernel is NaN
MIN_SIGMA = 0.01


def is_enabled(cfg: AugmentConfig) -> bool:
    return any((cfg.rotate, cfg.zoom, cfg.shift, cfg.shear, cfg.elastic))


def check_augment(cfg: AugmentConfig) -> None:
    if bad := non_finite(cfg):
        raise DigitsError(f"{bad[0]} must be a finite number, got {bad[1]}")
    if not 0 <= cfg.zoom < 1:
        raise DigitsError(f"--zoom must be in [0, 1) (a fraction of the size), got {cfg.zoom}")
    if not 0 <= cfg.shear < 90 or min(cfg.rotate, cfg.shift, cfg.elastic) < 0:
        raise DigitsError("augmentation: --rotate, --shift, --elastic must not be negative and --shear must "
                          "be in [0, 90) degrees")
    if not (cfg.elastic_sigma >= MIN_SIGMA and _radius(cfg.elastic_sigma) < SIDE):
        raise DigitsError(f"--elastic-sigma must be at least {MIN_SIGMA} and less than {SIDE}/3 (about "
                          f"{SIDE / 3:.2f}) pixels (3 sigma must fit in the {SIDE}-pixel image), "
                          f"got {cfg.elastic_sigma}")


def _uniform(n: int, limit: float, generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=generator, device=device) * 2 - 1) * limit


def random_affine_matrices(n: int, cfg: AugmentConfig, size: int = SIDE, generator=None,
                           device="cpu") -> torch.Tensor:
    """(n, 2, 3) maps from output to input coordinates in grid_sample's [-1, 1] units."""
    angle = _uniform(n, math.radians(cfg.rotate), generator, device)
    shear = torch.tan(_uniform(n, math.radians(cfg.shear), generator, device))
    zoom = 1 + _uniform(n, cfg.zoom, generator, device)
    shift = torch.stack([_uniform(n, cfg.shift, generator, device) for _ in range(2)], 1) * (2 / size)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation @ shear, divided by the zoom: determinant 1 / zoom**2 > 0, never a reflection
    linear = torch.stack([torch.stack([cos, cos * shear - sin], 1),
                          torch.stack([sin, sin * shear + cos], 1)], 1) / zoom.view(n, 1, 1)
    return torch.cat([linear, shift.unsqueeze(2)], 2)


def _radius(sigma: float) -> int:
    return max(1, int(3 * sigma))


def _gaussian_kernel(sigma: float, device) -> torch.Tensor:
    radius = _radius(sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def elastic_field(n: int, alpha: float, sigma: float, size: int = SIDE, generator=None,
                  device="cpu") -> torch.Tensor:
    """(n, size, size, 2) smooth random displacements of about ``alpha`` pixels, in [-1, 1] units."""
    noise = torch.rand(n * 2, 1, size, size, generator=generator, device=device) * 2 - 1
    k = _gaussian_kernel(sigma, device)
    pad = len(k) // 2
    noise = F.conv2d(F.pad(noise, (pad, pad, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    noise = F.conv2d(F.pad(noise, (0, 0, pad, pad), mode="reflect"), k.view(1, 1, -1, 1))
    noise = noise / noise.flatten(1).std(1).clamp(min=1e-8).view(-1, 1, 1, 1)  # unit strength
    return noise.view(n, 2, size, size).permute(0, 2, 3, 1) * (alpha * 2 / size)


def augment_batch(images: torch.Tensor, cfg: AugmentConfig, generator=None) -> torch.Tensor:
    """A randomly distorted copy of normalised float ``images`` (N, 1, H, W); same shape and dtype.

    Pixels pulled in from outside the image are blank (the normalised background)."""
    if not is_enabled(cfg):
        return images
    n, _, h, w = images.shape
    theta = random_affine_matrices(n, cfg, w, generator, images.device).to(images.dtype)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    if cfg.elastic:
        grid = grid + elastic_field(n, cfg.elastic, cfg.elastic_sigma, w, generator,
                                    images.device).to(grid.dtype)
    out = F.grid_sample(images - BACKGROUND, grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False) + BACKGROUND
    if images.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out
