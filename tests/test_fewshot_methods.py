"""Few-shot methods on hand-made cases: baselines, prototypes, episodes, augmentation."""
import math

import pytest
import torch

from digits.fewshot.augment import AffineRange, random_affine
from digits.fewshot.baselines import (class_means, nearest_neighbour, nearest_prototype, pixels,
                                      squared_distances)
from digits.fewshot.curve import parse_counts, steps_for
from digits.fewshot.episodes import episode_accuracies, percent_pm, summary
from digits.fewshot.protonet import prototype_logits
from digits.config import FewShotConfig
from digits.errors import DigitsError

# class 0 at x = 0 and x = 10 (mean 5), class 1 at x = 7
TRAIN = torch.tensor([[0.0, 0.0], [10.0, 0.0], [7.0, 0.0]])
TRAIN_LABELS = torch.tensor([0, 0, 1])


def test_nearest_neighbour_and_class_mean_disagree_where_they_should():
    query = torch.tensor([[9.0, 0.0], [1.0, 1.0], [6.5, 0.0]])
    # x=9: nearest point is 10 (class 0), nearest mean is 7 (class 1, distance 2 vs 4)
    assert nearest_neighbour(TRAIN, TRAIN_LABELS, query).tolist() == [0, 0, 1]
    assert class_means(TRAIN, TRAIN_LABELS, 2).tolist() == [[5.0, 0.0], [7.0, 0.0]]
    assert nearest_prototype(query, class_means(TRAIN, TRAIN_LABELS, 2)).tolist() == [1, 0, 1]


def test_chunked_nearest_neighbour_and_distances_match_references():
    g = torch.Generator().manual_seed(0)
    train, test = torch.rand(50, 6, generator=g), torch.rand(23, 6, generator=g)
    labels = torch.randint(0, 4, (50,), generator=g)
    assert torch.allclose(squared_distances(test, train), torch.cdist(test, train) ** 2, atol=1e-5)
    assert torch.equal(nearest_neighbour(train, labels, test, chunk=4),
                       labels[torch.cdist(test, train).argmin(1)])
    assert pixels(torch.full((2, 1, 28, 28), 255, dtype=torch.uint8)).shape == (2, 784)
    assert pixels(torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)).max() == 1.0


def test_prototype_logits_prefer_the_nearer_prototype():
    logits = prototype_logits(TRAIN, TRAIN_LABELS, torch.tensor([[6.0, 0.0], [4.0, 0.0]]), ways=2)
    assert logits.tolist() == [[-1.0, -1.0], [-1.0, -9.0]]


def test_episodes_on_a_perfect_and_a_useless_feature_space():
    labels = torch.arange(100) % 5
    perfect = torch.nn.functional.one_hot(labels, 5).float()
    useless = torch.zeros(100, 3)  # every prototype ties: argmin picks class 0, right 1 time in 5
    accs = episode_accuracies({"perfect": perfect, "useless": useless}, labels, [0, 1, 2, 3, 4],
                              shots=1, queries=3, episodes=20, seed=0)
    assert accs["perfect"] == [1.0] * 20
    assert accs["useless"] == [pytest.approx(0.2)] * 20


def test_summary_is_mean_sample_std_and_normal_ci():
    s = summary([0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2)
    assert s["ci95"] == pytest.approx(1.96 * 0.2 / math.sqrt(3)) and s["n"] == 3
    assert percent_pm(s) == "70.00 ± 20.00" and percent_pm(s, "ci95", "+-") == "70.00 +- 22.63"


def test_one_value_has_no_spread_and_it_reads_n_a():
    """One episode (or subset) says nothing about the spread: NaN, shown as n/a, never ± 0.00."""
    s = summary([0.8])
    assert s["mean"] == pytest.approx(0.8) and s["n"] == 1
    assert math.isnan(s["std"]) and math.isnan(s["ci95"])
    assert percent_pm(s, "ci95") == "80.00 ± n/a" and percent_pm(s) == "80.00 ± n/a"


def test_augmentation_keeps_shape_repeats_by_seed_and_is_identity_at_zero_range():
    images = torch.zeros(4, 1, 28, 28)
    images[:, :, 10:18, 6:12] = 255.0
    a = random_affine(images, torch.Generator().manual_seed(1))
    b = random_affine(images, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, images)
    assert a.min() >= 0 and a.max() <= 255 + 1e-3
    assert (a[:, :, 0, 0] == 0).all()  # warped-in border is background (0), not grey
    still = random_affine(images, torch.Generator(), AffineRange(0, 0, 0, 0))
    assert torch.allclose(still, images, atol=1e-3)


def test_shift_moves_ink_without_mirroring():
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 14, 4] = 255.0  # a dot on the left stays on the left half (no horizontal flip)
    for seed in range(10):
        out = random_affine(image, torch.Generator().manual_seed(seed))
        assert out[0, 0, :, :14].sum() > out[0, 0, :, 14:].sum()


def test_counts_and_steps():
    assert parse_counts("1, 10,full", allow_full=True) == [1, 10, "full"]
    with pytest.raises(DigitsError, match="bad count 'full'"):
        parse_counts("1,full")
    with pytest.raises(DigitsError, match="bad count '0'"):
        parse_counts("0,5")
    cfg = FewShotConfig(min_steps=300, max_steps=600, epochs=10, batch_size=64)
    assert [steps_for(n, cfg) for n in (10, 5000, 55000)] == [300, 600, 600]
    assert steps_for(2560, cfg) == 400
