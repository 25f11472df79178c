"""Metrics against hand-computed references."""
import pytest
import torch

from digits.evaluate import accuracy, confusion_matrix, evaluate, per_class_metrics


def test_confusion_matrix_matches_hand_count():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 9])
    preds = torch.tensor([0, 1, 1, 1, 2, 2, 0, 9])
    cm = confusion_matrix(preds, labels)
    expected = torch.zeros(10, 10, dtype=torch.long)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 1), (1, 2), (2, 2), (2, 0), (9, 9)]:
        expected[t, p] += 1  # rows true, columns predicted
    assert torch.equal(cm, expected)
    assert cm.sum() == len(labels) and cm.trace() == 5


def test_per_class_metrics_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 9])
    preds = torch.tensor([0, 1, 1, 1, 2, 2, 0, 9])
    m = per_class_metrics(confusion_matrix(preds, labels))
    # class 0: tp 1, predicted 2, actual 2; class 1: tp 2, predicted 3, actual 3; class 2: tp 1, 2, 2
    assert m["precision"][:3] == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert m["recall"][:3] == pytest.approx([1 / 2, 2 / 3, 1 / 2])
    assert m["f1"][1] == pytest.approx(2 / 3)
    assert m["support"] == [2, 3, 2, 0, 0, 0, 0, 0, 0, 1]
    assert m["precision"][5] == 0 and m["f1"][5] == 0  # undefined -> 0, not NaN
    assert m["precision"][9] == 1 and m["recall"][9] == 1


def test_accuracy():
    assert accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])) == 0.75


class _Fixed(torch.nn.Module):
    """Predicts class (first pixel value mod 10): a model whose answers we know."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        raw = torch.round((images[:, 0, 0, 0] * 0.3081 + 0.1307) * 255).long() % 10
        return torch.nn.functional.one_hot(raw, 10).float() + self.dummy


def test_evaluate_batches_and_totals():
    labels = torch.arange(25) % 10
    images = torch.zeros(25, 1, 28, 28, dtype=torch.uint8)
    images[:, 0, 0, 0] = labels.to(torch.uint8)
    images[20:, 0, 0, 0] = 0  # the last 5 predicted 0: wrong except the label-0 one
    result = evaluate(_Fixed(), images, labels, batch_size=10)
    assert result.accuracy == pytest.approx(21 / 25)
    assert result.batch_accuracies == pytest.approx([1.0, 1.0, 1 / 5])
    assert result.confusion.sum() == 25 and result.confusion[3, 0] == 1
    assert result.probs.shape == (25, 10) and torch.allclose(result.probs.sum(1), torch.ones(25))
