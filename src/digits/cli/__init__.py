"""The `digits` command: argparse sub-commands that build configs, call the library and print.

No ML logic lives here. Errors a user can cause become one line on stderr and exit code 2. This
module parses and dispatches; each command, parser and handler together, lives in training.py (run,
train, evaluate, show, compare, models), fewshot.py (fewshot, fewshot-predict) or use.py (predict,
export, serve); options.py turns config fields into flags and flags back into configs.

    digits run --epochs 2 --seed 0
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from ..errors import DigitsError
from . import fewshot, training, use
from .options import config_from_args

__all__ = ["TRAINING_COMMANDS", "build_parser", "config_from_args", "entry", "main"]


# each adds one command, parser and handler, in the order that `digits --help` lists them
_COMMANDS = (training.add_run, training.add_train, training.add_evaluate, training.add_show,
             fewshot.add_fewshot, fewshot.add_fewshot_predict, training.add_compare, training.add_models,
             use.add_predict, use.add_export, use.add_serve)
TRAINING_COMMANDS = ("run", "train", "compare")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes are one line like every other error of digits: argparse
    printed its usage block (14 lines for `digits run`) above them. Sub-commands' parsers are of
    this class too (add_subparsers makes them of the parent's class); --help is unchanged."""

    commands: dict = {}  # the top parser's sub-command parsers, by name (build_parser sets them)

    def error(self, message: str):
        self.exit(2, f"digits: error: {message}; see `{self.prog} --help`\n")

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # a sub-command's unknown flags reach the top parser: name that command's help
            self.commands.get(getattr(parsed, "command", None), self).error(
                f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="digits", description="Train, evaluate and use CNNs that "
                                     "recognise handwritten digits (MNIST).")
    parser.add_argument("--version", action="version", version=f"digits {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices
    for add_command in _COMMANDS:
        add_command(sub)
    return parser


def main(argv: list[str] | None = None, pin: bool = False) -> int:
    """The command line; ``pin``: this process is the command itself (entry), so the training
    commands may pin torch's threads to cores before torch is imported (affinity.py), and once the
    command has ended it ignores Ctrl-C (_ignore_late_interrupts)."""
    args = build_parser().parse_args(argv)
    # Pillow warns from half its limit up; digits refuses images over --max-pixels itself, in one line
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", category=RuntimeWarning)
    if pin and args.command in TRAINING_COMMANDS:
        from ..affinity import pin_threads

        pin_threads(getattr(args, "threads", None) or 0, getattr(args, "device", None) or "auto")
    try:
        try:
            return args.handler(args)
        finally:
            if pin:
                _ignore_late_interrupts()
    except DigitsError as e:
        print(f"digits: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # a broken or partial install: one line naming what to install
        package = _PACKAGES.get((e.name or "").partition(".")[0])
        if package is None:
            raise
        print(f"digits: error: digits {args.command} needs {package}, which cannot be imported here "
              f"(pip install {package})", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout piped into a program that stopped reading (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:  # e.g. a disk that fills while a library (TensorBoard) writes: still one line
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"digits: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("digits: interrupted", file=sys.stderr)
        return 130


# the modules digits imports from its dependencies, and the package that installs each
_PACKAGES = {"torch": "torch", "numpy": "numpy", "PIL": "Pillow", "matplotlib": "matplotlib", "onnx": "onnx",
             "onnxruntime": "onnxruntime", "tensorboard": "tensorboard", "fastapi": "fastapi",
             "uvicorn": "uvicorn", "multipart": "python-multipart", "python_multipart": "python-multipart",
             "tqdm": "tqdm"}


def _ignore_late_interrupts() -> None:
    """Ctrl-C once the command has done its work (or failed) stops nothing: it is ignored, and the
    process exits with the command's code. It used to interrupt the interpreter's shutdown, after
    the success line: a KeyboardInterrupt traceback from threading or torch's teardown, or (once
    Python had restored the default handler) death by SIGINT, exit 130 without a word. One that
    arrives before this call still ends as `digits: interrupted`, exit 130."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (Python's shutdown leaves an ignored signal ignored)


def entry() -> int:
    """The `digits` command (and `python -m digits`): main() as a process of its own.

    When main() returns, every object (torch's included) is moved out of the garbage collector's
    sight: its final collection at exit took 0.4-0.9 s after importing torch alone and about 0.6 s
    of a whole `digits run` here (A/B, torch 2.13 and 2.14). atexit handlers still run."""
    import gc

    code = main(pin=True)
    gc.freeze()  # the process ends now: nothing is left for the collector to free
    return code

