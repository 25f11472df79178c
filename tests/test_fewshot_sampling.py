"""Few-shot sampling: class-balanced seeded subsets of the training split only, and episodes."""
import pytest
import torch

from digits.data import load_mnist
from digits.errors import DigitsError
from digits.fewshot.subsets import class_balanced_subset, sample_episode


def _rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(img.flatten().tolist()) for img in images}


def test_subset_is_class_balanced_and_seeded():
    labels = torch.arange(200) % 10
    idx = class_balanced_subset(labels, k=7, seed=3)
    assert torch.bincount(labels[idx], minlength=10).tolist() == [7] * 10
    assert len(set(idx.tolist())) == 70 and torch.equal(idx, idx.sort().values)
    assert torch.equal(idx, class_balanced_subset(labels, k=7, seed=3))
    assert not torch.equal(idx, class_balanced_subset(labels, k=7, seed=4))


def test_subsets_come_from_the_training_split_only(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=50)
    idx = class_balanced_subset(data.train.labels, k=3, seed=0)
    chosen = _rows(data.train.images[idx])
    # the synthetic images carry random noise: every image is unique, so bytes identify it
    assert len(chosen) == 30
    assert not chosen & _rows(data.val.images) and not chosen & _rows(data.test.images)


def test_subset_larger_than_a_class_is_a_clear_error():
    with pytest.raises(DigitsError, match="class 1 has only 2 images, 3 are needed"):
        class_balanced_subset(torch.tensor([0, 0, 0, 1, 1]), k=3, seed=0)
    with pytest.raises(DigitsError, match="must be positive"):
        class_balanced_subset(torch.tensor([0, 1]), k=0, seed=0)


def test_episode_draws_disjoint_support_and_query_from_the_given_classes():
    labels = torch.arange(300) % 10
    g = torch.Generator().manual_seed(0)
    ep = sample_episode(labels, [5, 6, 7, 8, 9], shots=2, queries=4, generator=g)
    assert len(ep.support) == 10 and len(ep.query) == 20
    assert not set(ep.support.tolist()) & set(ep.query.tolist())
    assert ep.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # positions map back to the requested classes, in order
    assert torch.equal(labels[ep.support] - 5, ep.support_labels)
    assert torch.equal(labels[ep.query] - 5, ep.query_labels)
    again = sample_episode(labels, [5, 6, 7, 8, 9], 2, 4, torch.Generator().manual_seed(0))
    assert torch.equal(again.support, ep.support) and torch.equal(again.query, ep.query)
    following = sample_episode(labels, [5, 6, 7, 8, 9], 2, 4, g)
    assert not torch.equal(following.query, ep.query)  # the generator moves on: episodes differ
