"""Predict the digits in people's image files with a trained model.

Folders are read for their image files (by suffix); a file that fails gets an error of its own and
the others are still predicted. With ``number=True`` each file is read as a number written in
several digits, left to right.

    result = predict_paths(load_predictor("model.onnx"), ["photos/", "seven.jpg"])
    result.predictions[0].prediction, result.errors
"""
from __future__ import annotations

import csv
import importlib.util
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DigitsError
from .figformat import figure_format
from .number import read_number
from .outpath import check_output
from .predictor import Predictor
from .preprocess import IMAGE_SUFFIXES, MAX_PIXELS, preprocess


@dataclass
class Prediction:
    file: str
    prediction: int | str  # the digit, or with number=True the digits as a string ("2024")
    probabilities: list  # 10 floats, or with number=True one list of 10 per digit
    pixels: np.ndarray  # uint8 (n, 28, 28): what the model saw, one per digit

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k most probable digits of the (first) digit with their probabilities."""
        probs = np.asarray(self.probabilities, dtype=np.float64).reshape(-1, 10)[0]
        order = np.argsort(-probs, kind="stable")[:k]
        return [(int(d), float(probs[d])) for d in order]

    def to_dict(self) -> dict:
        """{"file", "prediction": 7, "probabilities": [10 floats]}; for a number {"file", "prediction":
        "274" (a string: a leading 0 is kept), "digits": [{"prediction": 2, "probabilities": [10
        floats]}, ...]}, left to right. "probabilities" is always one digit's 10."""
        if isinstance(self.prediction, int):
            return {"file": self.file, "prediction": self.prediction, "probabilities": self.probabilities}
        return {"file": self.file, "prediction": self.prediction,
                "digits": [{"prediction": int(np.argmax(p)), "probabilities": p} for p in self.probabilities]}


@dataclass
class PredictResult:
    predictions: list[Prediction] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, message)


def expand_paths(paths: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files as given, and the image files inside folders (sorted, recursively); missing paths
    become errors."""
    files, errors = [], []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                errors.append((str(path), "no image files in this folder"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            errors.append((str(path), "no such file or folder"))
    return files, errors


def predict_pixels(predictor: Predictor, pixels: np.ndarray) -> np.ndarray:
    """Probabilities (n, 10) for uint8 digits (n, 28, 28)."""
    return predictor.probs(pixels.reshape(-1, 1, 28, 28))


def predict_image(predictor: Predictor, source, number: bool = False, name: str = "image",
                  max_pixels: int = MAX_PIXELS) -> Prediction:
    """One image (path, bytes or PIL image) -> its prediction."""
    if number:
        pixels, probs = read_number(source, lambda digits: predict_pixels(predictor, digits), max_pixels)
        text = "".join(str(int(d)) for d in probs.argmax(1))
        return Prediction(name, text, probs.tolist(), pixels)
    pixels = preprocess(source, max_pixels)[None]
    probs = predict_pixels(predictor, pixels)[0]
    return Prediction(name, int(probs.argmax()), probs.tolist(), pixels)


def predict_paths(predictor: Predictor, paths: list[str | Path], number: bool = False) -> PredictResult:
    """Every image file under ``paths``; unreadable ones are reported in ``errors``."""
    files, errors = expand_paths(paths)
    result = PredictResult(errors=errors)
    for path in files:
        try:
            result.predictions.append(predict_image(predictor, path, number, str(path)))
        except DigitsError as e:
            result.errors.append(file_error(path, e))
    return result


def file_error(path: str | Path, error: Exception) -> tuple[str, str]:
    """(file, message) for an image that could not be read, the message without the file's name
    that it may start with (the caller prints "FILE: MESSAGE")."""
    message, prefix = str(error), f"{path}: "
    return str(path), message.removeprefix(prefix)


def to_csv(predictions: list[Prediction]) -> str:
    """file, prediction and one probability column per digit: single digits only (a number's digits
    would not fit the columns; to_dict gives them)."""
    if any(not isinstance(p.prediction, int) for p in predictions):
        raise ValueError("to_csv writes predictions of single digits, not numbers (number=True)")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "prediction", *(f"p{d}" for d in range(10))])
    for p in predictions:
        writer.writerow([p.file, p.prediction, *(f"{v:.6f}" for v in p.probabilities)])
    return buf.getvalue()


DRAWING_MODULES = ("torch", "matplotlib")  # what show() draws with; predicting an .onnx model needs neither


def check_show(out: str | Path, inputs: list[str | Path]) -> None:
    """Refuse ``--show OUT`` before anything is predicted: a format matplotlib cannot write, a name
    that is a folder or lies under a file, one of ``inputs`` (the model, and the image files and
    folders given, whose images are checked too), or torch or matplotlib not installed."""
    figure_format(out)
    check_output(out, [*inputs, *expand_paths(inputs)[0]], "--show")
    missing = [name for name in DRAWING_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise _needs(missing)


def _needs(names: list[str]) -> DigitsError:
    return DigitsError(f"--show needs {' and '.join(names)}: pip install {' '.join(names)}")


def show(predictions: list[Prediction], out: str | Path) -> Path:
    """Each preprocessed input with its prediction and probability, in a grid PNG."""
    figure_format(out)  # before drawing anything: matplotlib refuses .bmp with a traceback
    try:
        import torch

        from .plots import plot_inputs
    except ImportError as e:  # check_show refuses a missing one early; this is one installed but broken
        name = (e.name or "").split(".")[0]
        raise _needs([name] if name in DRAWING_MODULES else list(DRAWING_MODULES)) from None

    pixels = [px for p in predictions for px in p.pixels]
    titles = []
    for p in predictions:
        probs = np.asarray(p.probabilities).reshape(-1, 10)
        name = Path(p.file).name
        titles += [f"{name if len(name) <= 14 else name[:13] + '…'}\n{probs[i].argmax()} "
                   f"({100 * probs[i].max():.0f}%)" for i in range(len(probs))]
    if not pixels:
        raise DigitsError("--show: nothing was predicted, so there is nothing to draw")
    return plot_inputs(torch.from_numpy(np.stack(pixels)), titles, out)
