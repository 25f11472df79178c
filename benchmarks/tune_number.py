"""Tune the weights that choose how `digits predict --number` cuts touching digits
(digits/number.py WEIGHTS), on numbers written with MNIST's validation digits, which neither the
seed models nor the test set hold.

    PYTHONPATH=src python benchmarks/tune_number.py --checkpoint runs/seed-0/checkpoint.pt

Every way of cutting each number is read by the model once; then weights are searched (random
steps from the current ones, kept when more numbers come out right) and the best printed, with the
share of numbers read right by WEIGHTS, by the best weights, and by an oracle that knows the
answer and picks any way offered (what better weights could reach at most). `--set NAME=VALUE`
changes one of number.py's other constants for the run, to compare them.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from number_set import number_of, write_number_set  # noqa: E402


def main() -> None:
    from digits import number
    from digits.data import load_mnist
    from digits.predict import predict_pixels
    from digits.predictor import load_predictor

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="model that reads the pieces")
    p.add_argument("--count", type=int, default=1500, help="numbers to write (default 1500)")
    p.add_argument("--seed", type=int, default=7, help="seed of the numbers' layout and styling (default 7)")
    p.add_argument("--lengths", default="2,4", help="fewest and most digits in a number (default 2,4)")
    p.add_argument("--steps", type=int, default=3000, help="weight vectors tried (default 3000)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a constant of digits/number.py, e.g. --set CANDIDATES=7")
    args = p.parse_args()
    for item in args.set:
        name, _, value = item.partition("=")
        if not name.isupper() or not isinstance(getattr(number, name, None), (int, float)) or not value:
            p.error(f"--set {item}: expected NAME=VALUE for one of number.py's numeric constants")
        kind = type(getattr(number, name))
        if kind is int and not value.lstrip("-").isdigit():
            p.error(f"--set {item}: {name} is a whole number")
        setattr(number, name, kind(value))
    predictor = load_predictor(args.checkpoint)
    val = load_mnist(download=False).val
    groups, truths = [], []  # per number: [(features (ways, F), texts per way)] per group
    with tempfile.TemporaryDirectory() as tmp:
        files = write_number_set(val.images[:, 0].numpy(), val.labels.numpy(), Path(tmp), args.count, args.seed,
                                 tuple(map(int, args.lengths.split(","))))
        for f in files:
            reading = number.pieces(f)
            probs = predict_pixels(predictor, reading.pixels)
            digits = probs.argmax(1)
            groups.append([(features, ["".join(str(digits[k]) for k in index) for index, _ in ways])
                           for ways, features in zip(reading.ways, number.way_features(reading, probs))])
            truths.append(number_of(f)[0])

    def accuracy(weights: np.ndarray) -> float:
        return float(np.mean([truth == "".join(texts[int(np.argmax(features @ weights))]
                                               for features, texts in number_groups)
                              for truth, number_groups in zip(truths, groups)]))

    oracle = np.mean([_reachable(truth, [texts for _, texts in g]) for truth, g in zip(truths, groups)])
    rng = np.random.default_rng(0)
    start = accuracy(number.WEIGHTS)
    best, best_accuracy = number.WEIGHTS.astype(float), start
    for origin in (number.WEIGHTS.astype(float), np.eye(best.size)[0]):  # from the weights, and from log p alone
        here, here_accuracy = origin, accuracy(origin)
        for step in range(args.steps):
            scale = 0.5 if step < args.steps // 2 else 0.15
            trial = here + rng.normal(0, scale, here.size) * (rng.random(here.size) < 0.5)
            trial[0] = 1.0  # the log probability's weight fixes the scale
            if (got := accuracy(trial)) > here_accuracy:
                here, here_accuracy = trial, got
        if here_accuracy > best_accuracy:
            best, best_accuracy = here, here_accuracy
    print(f"{len(truths)} numbers, {np.mean([number_of(f)[1] for f in files]):.0%} with touching digits")
    print(f"WEIGHTS {number.WEIGHTS.tolist()}: {100 * start:.2f}% read right")
    print(f"best {np.round(best, 2).tolist()}: {100 * best_accuracy:.2f}%  ({', '.join(number.FEATURES)})")
    print(f"oracle (any way offered): {100 * oracle:.2f}%")


def _reachable(truth: str, options: list[list[str]]) -> bool:
    """Whether picking one text per group can spell ``truth``."""
    prefixes = {""}
    for texts in options:
        prefixes = {a + b for a in prefixes for b in texts if truth.startswith(a + b)}
    return truth in prefixes


if __name__ == "__main__":
    main()
