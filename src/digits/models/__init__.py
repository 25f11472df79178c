"""Registered models. Importing a family's module registers it."""
from . import cnn, fast, inception, lenet, resnet, seed, seed_bn  # noqa: F401  (each registers its models)
from . import fewshot  # noqa: F401  (registers "protonet", "fewshot_cnn")
from .registry import check_classifier, count_parameters, create_model, list_models, register_model

__all__ = ["check_classifier", "count_parameters", "create_model", "list_models", "register_model"]
