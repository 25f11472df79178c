"""Registered models. Importing a family's module registers it."""
from . import seed  # noqa: F401  (registers "seed")
from .registry import count_parameters, create_model, list_models, register_model

__all__ = ["count_parameters", "create_model", "list_models", "register_model"]
