"""The flags <-> configs plumbing of the `digits` command: one flag per config field, and the
configs built back from the parsed flags. Only the cli package imports it.

    add_config_args(parser, sections=("data",)); data_config(parser.parse_args())
"""
from __future__ import annotations

import argparse
import json
import math

from ..errors import DigitsError

_SECTIONS = (("data", "data"), ("model", "model"), ("optim", "optimisation"), ("augment", "augmentation"),
             ("", "run"), ("fewshot", "few-shot"))
_TYPES = {"int": int, "float": float, "str": str, "str | None": str}


def _config_classes():
    from ..config import AugmentConfig, DataConfig, FewShotConfig, ModelConfig, OptimConfig, RunConfig

    return {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "augment": AugmentConfig,
            "": RunConfig, "fewshot": FewShotConfig}


def _key_value(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_config_args(p: argparse.ArgumentParser, sections=("data", "model", "optim", "augment", ""),
                    defaults_from: str = "seed recipe", helps: dict[str, str] | None = None,
                    skip: tuple[str, ...] = ()) -> None:
    """One flag per config field, help text from the field; every default is None so that only
    the flags given override the recipe. ``helps``: a command's own help text for some flags, by
    dest (argparse.SUPPRESS: accepted, so that the command can refuse it with a reason, but not
    shown); ``skip``: dests of fields the command does not offer."""
    from dataclasses import MISSING, fields

    from ..config import flag_of

    helps, classes = helps or {}, _config_classes()
    for section, title in _SECTIONS:
        if section not in sections:
            continue
        group = p.add_argument_group(title)
        for f in fields(classes[section]):
            dest = f"{section}.{f.name}" if section else f.name
            if "help" not in f.metadata or dest in skip:
                continue
            text = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
            flag = flag_of(f)
            default = f.default if f.default is not MISSING else None
            if f.type == "bool":
                kw = {"action": argparse.BooleanOptionalAction,
                      "help": f"{text} ({defaults_from}: {'on' if default else 'off'})"}
            elif f.type.startswith("dict"):
                kw = {"type": _key_value, "action": "append", "metavar": "KEY=VALUE", "help": text}
            else:
                metavar = f.metadata.get("metavar", {"int": "N", "float": "X"}.get(f.type, "NAME"))
                shown = "" if default is None else f" ({defaults_from}: {default})"
                kw = {"type": _TYPES[f.type], "metavar": metavar, "help": f"{text}{shown}"}
            group.add_argument(flag, dest=dest, default=None, **{**kw, "help": helps.get(dest, kw["help"])})


def add_data_args(p: argparse.ArgumentParser, **kw) -> None:
    add_config_args(p, sections=("data",), defaults_from="default", **kw)


def config_from_args(args: argparse.Namespace):
    """The recipe's configuration with every flag that was given applied on top."""
    from ..recipes import recipe

    config = recipe(args.recipe)
    for dest, value in vars(args).items():
        if value is None or dest in ("recipe", "out", "resume", "handler", "command"):
            continue
        section, _, name = dest.rpartition(".")
        target = getattr(config, section) if section else config
        if not hasattr(target, name):
            continue
        if dest == "model.name" and value != config.model.name:
            config.model.kwargs = {}  # a recipe's model arguments fit only its own model
        if dest == "model.kwargs":  # --model-arg overrides one argument, keeping the recipe's others
            value = config.model.kwargs | dict(value)
        setattr(target, name, dict(value) if isinstance(value, list) else value)
    return config


def data_config(args: argparse.Namespace):
    from ..config import DataConfig

    given = {k.split(".", 1)[1]: v for k, v in vars(args).items() if k.startswith("data.") and v is not None}
    return DataConfig(**given)


def check_positive(config, *names: str) -> None:
    for name in names:
        section, _, attr = name.rpartition(".")
        value = getattr(getattr(config, section) if section else config, attr)
        if not value > 0 or value == math.inf:  # not "value <= 0": NaN is not positive either
            raise DigitsError(f"--{attr.replace('_', '-')} must be positive and finite, got {value}")
