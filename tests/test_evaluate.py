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



def test_evaluate_refuses_images_it_would_misread_and_takes_them_without_a_channel():
    from digits.errors import DigitsError
    from digits.evaluate import evaluate_ensemble
    labels = torch.arange(10)
    images = torch.zeros(10, 1, 28, 28, dtype=torch.uint8)
    images[:, 0, 0, 0] = labels.to(torch.uint8)
    for score in (lambda i, lab: evaluate(_Fixed(), i, lab), lambda i, lab: evaluate_ensemble([_Fixed()], i, lab)):
        assert score(images, labels).accuracy == 1.0
        assert score(images[:, 0], labels).accuracy == 1.0  # (N, 28, 28): the channel added
        with pytest.raises(DigitsError, match=r"uint8 pixels 0-255.*not float32.*\(images \* 255\)"):
            score(images.float() / 255, labels)  # would be normalised as 0-255 and score near chance
        with pytest.raises(DigitsError, match=r"\(N, 1, 28, 28\).*not \(10, 1, 14, 14\)"):
            score(images[:, :, :14, :14], labels)
        with pytest.raises(DigitsError, match="10 images but labels shaped \\(9,\\)"):
            score(images, labels[:9])


def test_shift_images_moves_pixels_and_fills_blank():
    from digits.evaluate import shift_images

    images = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    images[0, 0, 5, 7] = 200
    down_left = shift_images(images, 2, -3)
    assert down_left[0, 0, 7, 4] == 200 and down_left.sum() == 200
    edge = torch.zeros_like(images)
    edge[0, 0, 0, 27] = 9
    assert shift_images(edge, 0, 1).sum() == 0  # moved out: gone, nothing wraps round


class _Constant(torch.nn.Module):
    """Always the same logits, whatever the image."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor(logits))

    def forward(self, images):
        return self.logits.expand(len(images), 10)


def test_ensemble_averages_probabilities_not_votes():
    from digits.evaluate import evaluate_ensemble, predict_probs

    confident_3 = [0.0] * 10
    confident_3[3] = 10.0
    unsure = [0.0] * 10
    unsure[5], unsure[3] = 1.0, 0.5
    models = [_Constant(confident_3), _Constant(unsure), _Constant(unsure)]
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    probs = predict_probs(models, images)
    expected = sum(torch.tensor(m).softmax(0) for m in (confident_3, unsure, unsure)) / 3
    assert torch.allclose(probs, expected.expand(4, 10), atol=1e-6)
    result = evaluate_ensemble(models, images, torch.full((4,), 3))
    assert result.accuracy == 1.0  # two of three vote 5, but the mean probability says 3


class _LeftColumn(torch.nn.Module):
    """Class 1 when the image has ink in column 0, else class 0: a model that sees shifts."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        ink = (images[:, 0, :, 0] > 0).any(1).float()
        return torch.stack([1 - ink, ink], 1).repeat(1, 5) * 10 + self.dummy


def test_tta_averages_the_image_and_its_four_one_pixel_shifts():
    from digits.evaluate import predict_probs

    images = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    images[0, 0, 10, 1] = 255  # one pixel from the left edge: only the left-shifted view has ink in column 0
    plain = predict_probs([_LeftColumn()], images)
    tta = predict_probs([_LeftColumn()], images, tta=True)
    p0 = torch.tensor([10.0, 0.0] * 5).softmax(0)  # the model's output without ink in column 0
    p1 = torch.tensor([0.0, 10.0] * 5).softmax(0)
    assert torch.allclose(plain[0], p0, atol=1e-6)
    assert torch.allclose(tta[0], (4 * p0 + p1) / 5, atol=1e-6)
