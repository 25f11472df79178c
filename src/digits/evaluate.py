"""Metrics as pure tensor functions, and the evaluation of a model on a split.

Confusion matrices have rows = true class and columns = predicted class. Test-time augmentation
(``tta``: average over shifted views) and ensembles (average of several models' probabilities)
are options of ``evaluate_ensemble``.

    result = evaluate(model, data.test.images, data.test.labels)
    result.accuracy, result.confusion, result.per_class["f1"]
    evaluate_ensemble([model_a, model_b], images, labels, tta=True).accuracy
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import normalize
from .errors import DigitsError


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).float().mean().item() if len(labels) else float("nan")


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int = 10
                     ) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts; entry [t, p] counts images of class t predicted p."""
    flat = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(flat, minlength=num_classes ** 2).view(num_classes, num_classes)


def per_class_metrics(confusion: torch.Tensor) -> dict[str, list]:
    """Precision, recall and F1 per class (0 where undefined) and support, from a confusion matrix."""
    cm = confusion.double()
    tp = cm.diag()
    predicted, actual = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    return {"precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
            "support": actual.long().tolist()}


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 1024,
                   channels_last: bool = False) -> torch.Tensor:
    """Logits for uint8 images (N, 1, 28, 28), normalised batch by batch on the model's device."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        batch = normalize(images[start:start + batch_size].to(device))
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        out.append(model(batch).float())
    return torch.cat(out) if out else torch.empty(0, 10, device=device)


@dataclass
class EvalResult:
    accuracy: float
    batch_accuracies: list[float]  # per evaluation batch, as the tutorial prints
    confusion: torch.Tensor  # (10, 10), rows true, columns predicted
    per_class: dict[str, list]
    predictions: torch.Tensor  # (N,) on the CPU
    probs: torch.Tensor  # (N, 10) softmax, on the CPU

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "batch_accuracies": self.batch_accuracies,
                "confusion_matrix": self.confusion.tolist(), "per_class": self.per_class}


def checked_images(images, labels) -> torch.Tensor:
    """``images`` as (N, 1, 28, 28) uint8 pixels (an (N, 28, 28) batch gets its channel), or a
    DigitsError saying what is wrong: floats would be normalised as if they were 0-255 and score
    near chance without a word."""
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise DigitsError("images and labels must be torch tensors, as digits.load_mnist gives them")
    if images.dtype != torch.uint8:
        raise DigitsError(f"images must be uint8 pixels 0-255, as digits.load_mnist gives them, not "
                          f"{str(images.dtype).removeprefix('torch.')}; for floats in [0, 1] pass "
                          "(images * 255).round().to(torch.uint8)")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise DigitsError(f"images must be shaped (N, 1, 28, 28) or (N, 28, 28), not {tuple(images.shape)}")
    if labels.shape != (len(images),):
        raise DigitsError(f"{len(images)} images but labels shaped {tuple(labels.shape)}; one label per image")
    return images


def evaluate(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1024, channels_last: bool = False) -> EvalResult:
    """Accuracy, per-batch accuracy, confusion matrix and per-class metrics of ``model`` on uint8
    images (N, 1, 28, 28) or (N, 28, 28) and their labels (N,)."""
    images = checked_images(images, labels)
    logits = predict_logits(model, images, batch_size, channels_last).cpu()
    return metrics_from_probs(logits.softmax(1), labels, batch_size)


# (dy, dx) pixel shifts of the test-time views: the image itself and one pixel each way
TTA_SHIFTS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))


def shift_images(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """uint8 images moved by (dy, dx) pixels (down, right), blank (0) where they move in from outside."""
    h, w = images.shape[-2:]
    padded = torch.nn.functional.pad(images, (abs(dx), abs(dx), abs(dy), abs(dy)))
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[..., top:top + h, left:left + w]


def predict_probs(models, images: torch.Tensor, batch_size: int = 1024, tta: bool = False) -> torch.Tensor:
    """Softmax probabilities (N, 10) on the CPU, averaged over the models and, with ``tta``, over
    the shifted views of TTA_SHIFTS."""
    shifts = TTA_SHIFTS if tta else TTA_SHIFTS[:1]
    total = torch.zeros(len(images), 10)
    for model in models:
        for dy, dx in shifts:
            total += predict_logits(model, shift_images(images, dy, dx), batch_size).cpu().softmax(1)
    return total / (len(models) * len(shifts))


def evaluate_ensemble(models, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024,
                      tta: bool = False) -> EvalResult:
    """``evaluate`` for the average of several models' probabilities, optionally over shifted views."""
    images = checked_images(images, labels)
    return metrics_from_probs(predict_probs(models, images, batch_size, tta), labels, batch_size)


def metrics_from_probs(probs: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024) -> EvalResult:
    """The EvalResult of class probabilities ``probs`` (N, 10) against ``labels``."""
    labels = labels.cpu()
    predictions = probs.argmax(1)
    hits = (predictions == labels).float()
    batch_acc = [chunk.mean().item() for chunk in hits.split(batch_size)]
    cm = confusion_matrix(predictions, labels)
    return EvalResult(accuracy=accuracy(predictions, labels), batch_accuracies=batch_acc,
                      confusion=cm, per_class=per_class_metrics(cm), predictions=predictions,
                      probs=probs)
