"""Named recipes: documented starting configurations that command-line flags then override.

    config = recipe("seed")          # a fresh RunConfig; change it freely
"""
from __future__ import annotations

from .config import FewShotConfig, RunConfig
from .errors import DigitsError


def _seed() -> RunConfig:
    """The tutorial's recipe: its network, SGD lr 0.01 momentum 0.9 wd 5e-4, StepLR(6, 0.99),
    batch 256, 2 epochs."""
    return RunConfig()


RECIPES = {"seed": _seed}


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
