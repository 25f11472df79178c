"""The run folder's written results: metrics.json and report.md.

    write_metrics(out, metrics); write_report(out, config, metrics)
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .atomic import atomic_write
from .data import CLASSES

FIGURES = {
    "samples": "Training images (first 60 of a shuffled batch)",
    "training_curves": "Training curves",
    "confusion_matrix": "Confusion matrix on the test set (rows true, columns predicted)",
    "predictions": "First 16 test images of the last test batch: predicted (true)",
    "misclassified": "Misclassified test images: predicted (true)",
}


def write_text(path: str | Path, text: str) -> Path:
    """Write atomically: a reader sees the old file or the whole new one, never half of it."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data))


def write_json(path: str | Path, value) -> Path:
    """Strict JSON: RFC 8259 has no NaN or Infinity, which Python writes by default and JavaScript's
    JSON.parse and jq refuse. A non-finite float is written as null, "no value", as JSON.stringify
    writes it (fewshot.json's spread of one value; compare's val_accuracy without a validation split)."""
    return write_text(path, json.dumps(finite_or_none(value), indent=2, allow_nan=False) + "\n")


def finite_or_none(value):
    """A copy of ``value`` with every NaN or infinite float in it, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def _per_class_table(per_class: dict) -> list[str]:
    rows = ["| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for i, name in enumerate(CLASSES):
        rows.append(f"| {name} | {per_class['precision'][i]:.4f} | {per_class['recall'][i]:.4f} | "
                    f"{per_class['f1'][i]:.4f} | {per_class['support'][i]} |")
    return rows


def render_report(config: dict, metrics: dict) -> str:
    val = metrics.get("val_accuracy")
    lines = [
        f"# digits run: {config['model']['name']}, seed {config['seed']}", "",
        "## Results", "",
        f"- Test accuracy: **{100 * metrics['test_accuracy']:.2f}%** "
        f"({metrics['test_errors']} errors in {metrics['test_images']} images)",
        f"- Validation accuracy: {'n/a (no validation split)' if val is None else f'{100 * val:.2f}%'}",
        f"- Parameters: {metrics['parameters']:,}",
        f"- Training: {metrics['train_seconds']:.1f} s for {metrics['iterations']} steps "
        f"({metrics['train_images_per_second']:,.0f} images/s) on {metrics['device']}"
        + (f" in each of {metrics['world_size']} processes (DDP, global batch {metrics['global_batch_size']})"
           if metrics.get("world_size", 1) > 1 else "")
        + (f", the whole run (resumed at step {metrics['resumed_at_step']})"
           if metrics.get("resumed_at_step") is not None else ""),
        f"- Test pass: {metrics['test_seconds']:.2f} s ({metrics['test_images_per_second']:,.0f} images/s)",
        f"- Data to report (the run, without Python's start-up and torch's import): "
        f"{metrics['total_seconds']:.1f} s; torch {metrics['torch_version']}", "",
        "Test accuracy per batch of " f"{config['test_batch_size']}: "
        + ", ".join(f"{100 * a:.1f}%" for a in metrics["test_batch_accuracies"]), "",
        "## Per class (test set)", "", *_per_class_table(metrics["per_class"]), "",
        "## Figures", "",
    ]
    for name, caption in FIGURES.items():
        lines += [f"### {caption}", "", f"![{caption}](figures/{name}.png)", ""]
    lines += ["## Configuration", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(lines)
