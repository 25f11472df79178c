"""A run's training state as its checkpoint carries it, and ``--resume``: progress within the
epochs, the history of losses and accuracies, optimiser, schedule, EMA and torch's random state,
written after every epoch (and every ``checkpoint_every`` steps) and read back to continue exactly.

    state = restore(path, model, optimizer, scheduler, config, steps_per_epoch)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from . import distributed
from .checkpoint import describe, read_checkpoint, save_checkpoint
from .config import OptimConfig, RunConfig, flag_of
from .errors import DigitsError


@dataclass
class History:
    loss: list[float] = field(default_factory=list)  # per training step ("Loss/train")
    train_acc_10: list[list[float]] = field(default_factory=list)  # [step, accuracy of last 10 batches]
    val_acc: list[float] = field(default_factory=list)  # per epoch
    epoch_seconds: list[float] = field(default_factory=list)


@dataclass
class TrainState:
    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed within the current epoch
    iter_num: int = 0
    history: History = field(default_factory=History)
    window: list[int] = field(default_factory=lambda: [0, 0])  # [hits, images] of this 10-batch window's
    # batches so far, over all processes: a mid-epoch checkpoint's first window began before it
    # The run's training so far, every session of a resumed run together (what a killed session did
    # after its last checkpoint, and redid after --resume, is counted once): seconds in training steps
    # and per-epoch validation, of them in training steps, and images trained on over all processes.
    # A resumed run reported this session's seconds beside the whole run's steps (7.6 s for 645 steps).
    seconds: float = 0.0
    step_seconds: float = 0.0
    images: int = 0


def read_resumable(path, config: RunConfig) -> dict:
    """The checkpoint ``--resume`` names, if it holds ``config``'s model and a training state."""
    ckpt = read_checkpoint(path)
    name = ckpt["meta"]["model_name"]
    if name != config.model.name:
        raise DigitsError(f"--resume {path}: the checkpoint is a {name!r} model, not {config.model.name!r}")
    missing = [k for k in ("optimizer", "scheduler", "iter_num", "progress") if k not in ckpt]
    if missing:  # e.g. a checkpoint made for serving: weights only
        raise DigitsError(f"--resume {path}: it has no training state ({', '.join(missing)}); resume "
                          "from the checkpoint.pt in a training run's folder")
    _check_same_training(path, ckpt, config)
    _check_epochs_left(path, ckpt, config)
    return ckpt


def _check_epochs_left(path, ckpt: dict, config: RunConfig) -> None:
    """--epochs is the run's whole length, not the epochs to add: below the epochs the checkpoint has
    completed it trained nothing, exited 0 and rewrote config.json with that count beside the
    metrics of the longer run. The same count as a checkpoint written at an epoch's end is allowed:
    it trains nothing more and finishes a run stopped after its last checkpoint (its test, figures
    and report). A checkpoint written mid-epoch (--checkpoint-every) has that epoch still to finish,
    which --epochs one above the completed ones does."""
    progress = ckpt["progress"]
    done, step = int(progress.get("epoch", 0)), int(progress.get("step", 0))
    epochs = config.optim.epochs
    if epochs > done or (epochs == done and not step):
        return
    what = f"{done} epoch{'s' if done != 1 else ''}"
    if step:
        what += f" and {step} step{'s' if step != 1 else ''} of epoch {done + 1}"
        finish = f"give --epochs {done + 1} or more to finish epoch {done + 1}"
    else:
        finish = f"give --epochs {done} to finish that run (its test and report), or more to extend it"
    raise DigitsError(f"--resume {path}: the checkpoint has completed {what}, more than --epochs {epochs}; "
                      f"--epochs counts the whole run: {finish}")


# The settings that decide what a run trains on, in what order, and how: a resumed run continues
# only with the checkpoint's own. None: the whole section. What is not named may change on resume:
# --lr (say, lower after a divergence: _place_schedule) and --epochs (to extend a run); how it runs
# (--device, --threads, --progress, --tensorboard, --checkpoint-every, --test-batch-size,
# --channels-last: the same results); where the data is read from (--data-dir, --download). The model
# is compared apart: its name in read_resumable, its arguments in _model_arg_differences.
_SAME_ON_RESUME = {"data": ("val_size", "split_seed"), "": ("seed",),
                   "optim": tuple(f.name for f in fields(OptimConfig) if f.name not in ("lr", "epochs")),
                   "augment": None}


def _check_same_training(path, ckpt: dict, config: RunConfig) -> None:
    """Refuse what a resumed run would silently do otherwise. The saved optimizer state and schedule
    belong to the run's own optimisation settings: another --optimizer failed at the first step
    (KeyError 'exp_avg'), and others (--weight-decay, --momentum...) were replaced by the saved ones
    while config.json recorded them. Another --val-size or --split-seed went on training on images
    then in the validation split (which `evaluate --split val` then scored); another --seed changed
    the shuffles and augmentation of the epochs left, and another augmentation setting applied to
    them only, while config.json recorded either as the whole run's; so was a --model-arg the
    weights fit either way (dropout). Every difference is named."""
    recorded = ckpt["meta"].get("config")
    if not isinstance(recorded, dict):
        return  # a checkpoint of another writer: nothing to compare with
    differences = _setting_differences(recorded, config) + _model_arg_differences(recorded, config)
    if differences:
        named = differences[0] if len(differences) == 1 else ", ".join(differences[:-1]) + ", and " + differences[-1]
        raise DigitsError(f"--resume {path}: the run was trained with {named}; resume with its settings "
                          "(only --lr and --epochs may change)")


def _setting_differences(recorded: dict, config: RunConfig) -> list[str]:
    differences = []
    for section, names in _SAME_ON_RESUME.items():
        then_values = recorded.get(section) if section else recorded
        now_section = getattr(config, section) if section else config
        if not isinstance(then_values, dict):
            continue  # (a section newer than the checkpoint)
        for f in fields(now_section):
            if (names is not None and f.name not in names) or f.name not in then_values:
                continue  # (allowed to change, or a setting newer than the checkpoint)
            then, now = then_values[f.name], getattr(now_section, f.name)
            if then != now:
                differences.append(f"{flag_of(f)} {_shown(then)}, not {_shown(now)}")
    return differences


def _model_arg_differences(recorded: dict, config: RunConfig) -> list[str]:
    """--model-arg values the weights fit either way (dropout=0.5 for 0.2) were accepted and recorded
    in config.json as the whole run's; those that change a shape were refused only by load_state_dict."""
    then = (recorded.get("model") or {}).get("kwargs")
    if not isinstance(then, dict):
        return []
    now = config.model.kwargs

    def given(kwargs: dict, key: str) -> str:
        return _shown(kwargs[key]) if key in kwargs else "(not given)"

    return [f"--model-arg {key}={given(then, key)}, not {given(now, key)}"
            for key in sorted({*then, *now}) if (key in then, then.get(key)) != (key in now, now.get(key))]


def _shown(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else repr(value)[:40]


def cannot_continue(path, error: Exception) -> DigitsError:
    # load_state_dict's first line only names the class ("Error(s) in loading ..."); the last says what differs
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return DigitsError(f"--resume {path}: cannot continue from it ({lines[-1][:200]})")


def restore(path, model, optimizer, scheduler, config: RunConfig, steps_per_epoch: int, ema=None) -> TrainState:
    ckpt = read_resumable(path, config)
    try:
        model.load_state_dict(ckpt.get("train_model", ckpt["model"]))  # "model" holds the EMA if on
        if ema is not None:
            ema.module.load_state_dict(ckpt["model"])
            ema.updates = ckpt.get("ema_updates", ckpt["iter_num"])
        lr = optimizer.defaults["lr"]  # what this run's --lr asks for
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if "rng" in ckpt:  # (checkpoints written before it was saved go on with the seed's stream, as they did)
            _set_rng_state(ckpt["rng"], next(model.parameters()).device)
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise cannot_continue(path, e) from None
    progress = ckpt["progress"]
    saved, now = progress.get("world_size", 1), distributed.world_size()
    if progress["step"] and saved != now:  # the epoch's shards, and so its steps, depend on the count
        raise DigitsError(f"--resume {path}: stopped mid-epoch with {saved} process(es), resumed with {now}; "
                          f"resume with {saved}, or from a checkpoint written at the end of an epoch")
    _place_schedule(optimizer, scheduler, lr, progress["epoch"] * steps_per_epoch + progress["step"])
    history = History(**progress["history"])
    # checkpoints written before the run's time was saved: the epochs' seconds (validation included, so
    # images/s reads a little low; a mid-epoch checkpoint's part epoch is not in them), and full batches
    seconds = float(progress.get("seconds", math.fsum(history.epoch_seconds)))
    images = progress.get("images", ckpt["iter_num"] * config.optim.batch_size * saved)
    return TrainState(progress["epoch"], progress["step"], ckpt["iter_num"], history,
                      list(progress.get("window", [0, 0])),  # (older checkpoints: an incomplete first window)
                      seconds, float(progress.get("step_seconds", seconds)), int(images))


def _rng_state(device: torch.device) -> dict:
    """torch's global random state, which dropout draws its masks from: without it, a resumed run
    drew them from torch.manual_seed(seed) again (less what building the model took), not where the
    run had got to. Every process of a run draws the same sequence, so rank 0's serves them all."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":  # (one generator for the Apple GPU: no index)
        state["mps"] = torch.mps.get_rng_state()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:  # (a CPU run's checkpoint has none)
        torch.cuda.set_rng_state(state["cuda"], device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"])


def _place_schedule(optimizer, scheduler, lr, position: int) -> None:
    """Continue the schedule at step ``position`` (epochs done times this run's steps per epoch, plus
    the step within the epoch), at this run's --lr. The saved count of steps is the position only with
    the run's own number of processes: each takes 1/N of an epoch, so after 1 epoch of 1 process
    (8 steps), 2 processes went on at their epoch 3 (a one-cycle rate of 0). And the optimizer's state
    alone would restore the old rate: resuming with another --lr (say, lower after a divergence)
    continues the schedule from where it stopped, scaled to the new rate."""
    bases = [lr] * len(scheduler.base_lrs) if isinstance(lr, float) else list(scheduler.base_lrs)
    if bases == scheduler.base_lrs and position == scheduler.last_epoch:
        return
    scheduler.base_lrs, scheduler.last_epoch = bases, position
    for group, base, factor in zip(optimizer.param_groups, bases, scheduler.lr_lambdas):
        group["initial_lr"], group["lr"] = base, base * factor(position)


def check_saveable(model, state: TrainState) -> None:
    """Never overwrite the last good checkpoint with a diverged model: the loop reads losses back
    only every 10 steps, and a step can turn the weights to inf/NaN while its loss was finite."""
    for v in state.history.loss[-10:]:
        check_finite(v, state)
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise DigitsError(f"training diverged: the weights are not finite at step {state.iter_num}; "
                          "lower --lr (a diverged model is never written to the checkpoint)")


def save_state(out_dir, model, optimizer, scheduler, config: RunConfig, state: TrainState, ema=None) -> Path:
    check_saveable(model, state)  # also here: nothing writes a diverged model
    meta = describe(config.model.name, config.model.kwargs, config.to_dict())
    progress = {"epoch": state.epoch, "step": state.step, "history": asdict(state.history),
                "world_size": distributed.world_size(), "window": list(state.window),
                "seconds": state.seconds, "step_seconds": state.step_seconds, "images": state.images}
    # with EMA on, "model" (what evaluate and predict load) is the average; training resumes from train_model
    extra = {} if ema is None else {"train_model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                    "ema_updates": ema.updates}
    extra["rng"] = _rng_state(next(model.parameters()).device)
    return save_checkpoint(Path(out_dir) / "checkpoint.pt", model if ema is None else ema.module, meta,
                           optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                           iter_num=state.iter_num, progress=progress, **extra)


def check_finite(loss: float, state: TrainState) -> None:
    if not math.isfinite(loss):
        raise DigitsError(f"training diverged: loss is {loss} by step {state.iter_num}; lower --lr "
                          "(a diverged model is never written to the checkpoint)")
