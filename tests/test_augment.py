"""Batch augmentation: shape and dtype kept, background stays blank, digits are never mirrored."""
import math

import pytest
import torch

from digits.augment import BACKGROUND, augment_batch, check_augment, elastic_field, random_affine_matrices
from digits.config import AugmentConfig
from digits.data import normalize
from digits.errors import DigitsError

STRONG = AugmentConfig(rotate=15, zoom=0.15, shift=3, shear=15, elastic=2)


def _letter_f(n: int = 64) -> torch.Tensor:
    """A left/right asymmetric pattern (an 'F'), normalised: its mirror image is a different picture."""
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 6:22, 9:12] = 255  # the stem, on the left
    images[:, :, 6:9, 9:20] = 255  # the top bar, to the right
    images[:, :, 13:16, 9:17] = 255  # the middle bar, to the right
    return normalize(images)


def test_off_is_the_identity_and_shape_dtype_are_kept():
    images = _letter_f(8)
    assert augment_batch(images, AugmentConfig()) is images
    out = augment_batch(images, STRONG, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == images.dtype and not torch.equal(out, images)
    last = images.contiguous(memory_format=torch.channels_last)
    assert augment_batch(last, STRONG).is_contiguous(memory_format=torch.channels_last)


def test_random_numbers_come_from_the_generator():
    images = _letter_f(8)
    a = augment_batch(images, STRONG, torch.Generator().manual_seed(3))
    b = augment_batch(images, STRONG, torch.Generator().manual_seed(3))
    c = augment_batch(images, STRONG, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _best_match(images: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
    """Per image, the highest overlap of its ink with the template's at any relative shift."""
    ink = (images > 0).float()
    return torch.nn.functional.conv2d(ink, (template > 0).float(), padding=27).flatten(1).max(1).values


def test_never_flips_an_asymmetric_pattern():
    images = _letter_f()
    f, mirrored_f = images[:1], images[:1].flip(-1)
    assert (_best_match(images.flip(-1), f) < _best_match(images, f)).all()  # the measure can tell
    affine = augment_batch(images, AugmentConfig(rotate=12, zoom=0.1, shift=3, shear=10),
                           torch.Generator().manual_seed(0))
    # wherever it moved, each distorted F still overlaps an F better than a mirrored F
    assert (_best_match(affine, f) > _best_match(affine, mirrored_f)).all()
    # 2-pixel elastic distortion smudges a few thin Fs; on average they stay Fs
    elastic = augment_batch(images, AugmentConfig(elastic=2), torch.Generator().manual_seed(0))
    assert (_best_match(elastic, f) - _best_match(elastic, mirrored_f)).mean() > 10
    theta = random_affine_matrices(1000, STRONG, generator=torch.Generator().manual_seed(1))
    assert (torch.linalg.det(theta[:, :, :2]) > 0).all()  # no reflection in any sampled map


def test_shift_moves_the_pattern_by_whole_pixels_and_fills_with_background():
    images = _letter_f(4)
    out = augment_batch(images, AugmentConfig(shift=3), torch.Generator().manual_seed(0))
    ink = lambda x: (x > 0).float()  # noqa: E731
    cols = torch.arange(28.0)
    before = (ink(images).sum(2) * cols).sum(-1) / ink(images).sum((2, 3))
    after = (ink(out).sum(2) * cols).sum(-1) / ink(out).sum((2, 3))
    assert ((after - before).abs() <= 3.5).all() and ((after - before).abs() > 0).any()
    assert out[:, :, 0, 0].allclose(torch.full((4, 1), BACKGROUND))  # blank corner stays blank


def test_bad_settings_are_clear_errors():
    with pytest.raises(DigitsError, match="--zoom must be in"):
        check_augment(AugmentConfig(zoom=1.5))
    with pytest.raises(DigitsError, match="must not be negative"):
        check_augment(AugmentConfig(rotate=-1))


@pytest.mark.parametrize("field", ["rotate", "zoom", "shift", "shear", "elastic", "elastic_sigma"])
def test_values_that_are_not_finite_are_refused(field):
    flag = "--" + field.replace("_", "-")
    for value in (math.nan, math.inf):  # NaN passed "< 0"; --rotate nan made every image NaN
        with pytest.raises(DigitsError, match=f"^{flag} must be a finite number, got {value}$"):
            check_augment(AugmentConfig(**{field: value}))


def test_elastic_sigma_is_refused_where_its_kernel_does_not_fit_the_image():
    """--elastic-sigma 10: the kernel's radius int(3 sigma) = 30 reflect-padded a 28-pixel image and the
    first step crashed with a RuntimeError; the largest sigma accepted still makes a smooth field."""
    for sigma in (28 / 3, 10.0, 1e-30):  # 1e-30: 2 sigma**2 underflows in float32, the field was NaN
        with pytest.raises(DigitsError, match=r"^--elastic-sigma must be at least 0.01 and less than 28/3 "):
            check_augment(AugmentConfig(elastic=2, elastic_sigma=sigma))
    for sigma in (0.01, 9.333):
        check_augment(AugmentConfig(elastic=2, elastic_sigma=sigma))
        field = elastic_field(3, 2.0, sigma, generator=torch.Generator().manual_seed(0))
        assert field.shape == (3, 28, 28, 2) and torch.isfinite(field).all()
