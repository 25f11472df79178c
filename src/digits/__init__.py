"""digits: train, evaluate, explain and use convolutional networks for handwritten digits (MNIST).

    import digits
    data = digits.load_mnist()
    model = digits.create_model("seed")
    result = digits.train(digits.RunConfig(), data)
    digits.evaluate(result.model, data.test.images, data.test.labels).accuracy
"""
from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

from .errors import DigitsError  # noqa: E402

# The public names below need torch, which takes seconds to import, so they load on first use:
# `digits --help`, `digits --version` and ONNX-only use (predict / serve with model.onnx) start
# without it. name -> (module, attribute)
_LAZY = {"load_checkpoint": ("checkpoint", "load_checkpoint"), "DataConfig": ("config", "DataConfig"),
         "ModelConfig": ("config", "ModelConfig"), "OptimConfig": ("config", "OptimConfig"),
         "RunConfig": ("config", "RunConfig"), "load_mnist": ("data", "load_mnist"),
         "evaluate": ("evaluate", "evaluate"), "create_model": ("models", "create_model"),
         "list_models": ("models", "list_models"), "train": ("train", "fit")}

__all__ = ["DataConfig", "DigitsError", "ModelConfig", "OptimConfig", "RunConfig", "create_model",
           "evaluate", "list_models", "load_checkpoint", "load_mnist", "train"]


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name not in _LAZY:
            raise AttributeError(f"module 'digits' has no attribute {name!r}")
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value) -> None:
        # Importing the submodule digits.train (or digits.evaluate) sets the package's attribute of
        # that name to the module; the public name is the function, so keep that instead.
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
