"""Named recipes: documented starting configurations that command-line flags then override.

    config = recipe("best")          # a fresh RunConfig; change it freely
"""
from __future__ import annotations

from .config import AugmentConfig, FewShotConfig, ModelConfig, OptimConfig, RunConfig
from .errors import DigitsError


def _seed() -> RunConfig:
    """The tutorial's recipe: its network, SGD lr 0.01 momentum 0.9 wd 5e-4, StepLR(6, 0.99),
    batch 256, 2 epochs."""
    return RunConfig()


def _short() -> RunConfig:
    """Any registered model to about 99% in two epochs, for comparing models on a CPU: Adam at
    lr 3e-3 with one-cycle, batch 128, no weight decay, no augmentation (it slows short runs)."""
    return RunConfig(optim=OptimConfig(optimizer="adam", lr=3e-3, weight_decay=0.0, scheduler="onecycle",
                                       epochs=2, batch_size=128))


def _best() -> RunConfig:
    """The most accurate single network: `bn-cnn` (width 64, dropout 0.2), SGD with Nesterov
    momentum 0.9, one-cycle to lr 0.2, weight decay 5e-4, batch 512, 15 epochs, label smoothing
    0.1, random affine augmentation (rotation +-12 degrees, zoom +-10%, shift +-2.5 px).

    The configuration the issue reports measured on an H200 (test accuracy 0.9968 / 0.9968 /
    0.9970 over three seeds); see BENCHMARKS.md for what was measured here."""
    return RunConfig(
        model=ModelConfig(name="bn-cnn", kwargs={"width": 64, "dropout": 0.2}),
        optim=OptimConfig(optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
                          scheduler="onecycle", epochs=15, batch_size=512, label_smoothing=0.1),
        augment=AugmentConfig(rotate=12.0, zoom=0.1, shift=2.5))


def _fast() -> RunConfig:
    """The `fast` network at widths 8-24-96 (models/fast.py: batch norm, ReLU classifier), Adam lr
    0.01 betas 0.7/0.9, torch's one-cycle shape (a quarter of the steps rising), batch 256, 2 epochs.
    Chosen on the validation split (benchmarks/tune_fast.py, BENCHMARKS.md): the first layer sets
    the cost of a step on the CPU, and 8 channels there trained ~1.5x faster than 12 for about the
    same accuracy."""
    return RunConfig(model=ModelConfig(name="fast", kwargs={"c1": 8, "c2": 24, "hidden": 96}),
                     optim=OptimConfig(optimizer="adam", lr=0.01, beta1=0.7, beta2=0.9, weight_decay=0.0,
                                       scheduler="onecycle_cos", warmup_epochs=0.5, epochs=2, batch_size=256))


def _wide() -> RunConfig:
    """For a GPU, >= 0.995 in under a second: the `wide` batch-norm network at width 32 (convolutions
    32-32-64-64-128-128), Adam lr 0.004 betas 0.9/0.99 with the one-cycle cosine schedule (a quarter
    of the steps rising), batch 512, 3 epochs, label smoothing 0.1, no augmentation (it slowed
    learning in runs this short). Chosen on the validation split by benchmarks/gpu.py's `0.995-1s`
    search on an H100; measured there: 0.9959 mean test accuracy over 5 seeds, 0.82 s per run with
    the data on the GPU (BENCHMARKS.md). Meant for a GPU; not timed on a CPU."""
    return RunConfig(model=ModelConfig(name="wide", kwargs={"width": 32}),
                     optim=OptimConfig(optimizer="adam", lr=0.004, beta1=0.9, beta2=0.99, weight_decay=0.0,
                                       scheduler="onecycle_cos", warmup_epochs=0.75, epochs=3, batch_size=512,
                                       label_smoothing=0.1))


RECIPES = {"seed": _seed, "short": _short, "best": _best, "fast": _fast, "wide": _wide}


def list_recipes() -> list[str]:
    return sorted(RECIPES)


def recipe(name: str) -> RunConfig:
    if name not in RECIPES:
        raise DigitsError(f"unknown recipe {name!r}; choose one of: {', '.join(list_recipes())}")
    return RECIPES[name]()


def fewshot_recipe(quick: bool = False) -> FewShotConfig:
    """`digits fewshot`; with ``quick``, fewer k, subsets, steps and episodes (about a minute on
    2 CPU cores), for tests and CI."""
    if not quick:
        return FewShotConfig()
    return FewShotConfig(shots="1,10,100", subsets=2, min_steps=60, max_steps=60, train_episodes=100,
                         eval_shots="1,5", episodes=100)
