"""The training loop: fit(config, data) -> TrainResult, with checkpoints, resume and TensorBoard.

The whole training split is normalised once and kept on the device; each epoch draws a
permutation from (seed, epoch), so a resumed run sees exactly the batches it would have seen.

    result = fit(RunConfig(), load_mnist(), out_dir="runs/x")
    result.history.val_acc
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from . import convpool, distributed
from .augment import augment_batch, check_augment, is_enabled
from .checkpoint import describe, read_checkpoint, save_checkpoint
from .config import OptimConfig, RunConfig, flag_of
from .data import MNIST, normalize, seed_value
from .device import resolve_device, set_threads
from .errors import DigitsError
from .evaluate import evaluate
from .models import check_classifier, create_model
from .optim import check_optim, clip_gradients, make_ema, make_optimizer, make_scheduler


@dataclass
class History:
    loss: list[float] = field(default_factory=list)  # per training step ("Loss/train")
    train_acc_10: list[list[float]] = field(default_factory=list)  # [step, accuracy of last 10 batches]
    val_acc: list[float] = field(default_factory=list)  # per epoch
    epoch_seconds: list[float] = field(default_factory=list)


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: History
    iter_num: int  # training steps taken in all
    train_seconds: float  # time in training steps and per-epoch validation, this process only
    images_per_second: float  # over the training steps alone (validation not counted)
    checkpoint: Path | None


def scaled_for_world(cfg: OptimConfig, world_size: int) -> OptimConfig:
    """With ``cfg.scale_lr``, the learning rate times the number of processes (linear scaling rule)."""
    return replace(cfg, lr=cfg.lr * world_size) if cfg.scale_lr else cfg


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch ``epoch``: a function of (seed, epoch) only, identical on every rank."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed_value(seed * 100_003 + epoch)))


@dataclass
class _State:
    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed within the current epoch
    iter_num: int = 0
    history: History = field(default_factory=History)
    window: list[int] = field(default_factory=lambda: [0, 0])  # [hits, images] of this 10-batch window's
    # batches so far, over all processes: a mid-epoch checkpoint's first window began before it


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
    _check_same_optim(path, ckpt, config.optim)
    return ckpt


def _check_same_optim(path, ckpt: dict, cfg: OptimConfig) -> None:
    """The saved optimizer state and schedule belong to the run's own settings: another --optimizer
    failed at the first step (KeyError 'exp_avg'), and others (--weight-decay, --momentum...) were
    silently replaced by the saved ones while config.json recorded them. --lr and --epochs may change."""
    recorded = ckpt["meta"].get("config")
    recorded = recorded.get("optim") if isinstance(recorded, dict) else None
    if not isinstance(recorded, dict):
        return  # a checkpoint of another writer: nothing to compare with
    for f in fields(cfg):
        if f.name in ("lr", "epochs") or f.name not in recorded:  # (a setting newer than the checkpoint)
            continue
        then, now = recorded[f.name], getattr(cfg, f.name)
        if then != now:
            raise DigitsError(f"--resume {path}: the run was trained with {flag_of(f)} {_shown(then)}, not "
                              f"{_shown(now)}; resume with its settings (only --lr and --epochs may change)")


def _shown(value) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else repr(value)[:40]


def _cannot_continue(path, error: Exception) -> DigitsError:
    # load_state_dict's first line only names the class ("Error(s) in loading ..."); the last says what differs
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    return DigitsError(f"--resume {path}: cannot continue from it ({lines[-1][:200]})")


def _restore(path, model, optimizer, scheduler, config: RunConfig, steps_per_epoch: int, ema=None) -> _State:
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
        raise _cannot_continue(path, e) from None
    progress = ckpt["progress"]
    saved, now = progress.get("world_size", 1), distributed.world_size()
    if progress["step"] and saved != now:  # the epoch's shards, and so its steps, depend on the count
        raise DigitsError(f"--resume {path}: stopped mid-epoch with {saved} process(es), resumed with {now}; "
                          f"resume with {saved}, or from a checkpoint written at the end of an epoch")
    _place_schedule(optimizer, scheduler, lr, progress["epoch"] * steps_per_epoch + progress["step"])
    return _State(progress["epoch"], progress["step"], ckpt["iter_num"], History(**progress["history"]),
                  list(progress.get("window", [0, 0])))  # (older checkpoints: an incomplete first window)


def _rng_state(device: torch.device) -> dict:
    """torch's global random state, which dropout draws its masks from: without it, a resumed run
    drew them from torch.manual_seed(seed) again (less what building the model took), not where the
    run had got to. Every process of a run draws the same sequence, so rank 0's serves them all."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:  # (a CPU run's checkpoint has none)
        torch.cuda.set_rng_state(state["cuda"], device)


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


def _check_saveable(model, state: _State) -> None:
    """Never overwrite the last good checkpoint with a diverged model: the loop reads losses back
    only every 10 steps, and a step can turn the weights to inf/NaN while its loss was finite."""
    for v in state.history.loss[-10:]:
        _check_finite(v, state)
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise DigitsError(f"training diverged: the weights are not finite at step {state.iter_num}; "
                          "lower --lr (a diverged model is never written to the checkpoint)")


def _save(out_dir, model, optimizer, scheduler, config: RunConfig, state: _State, ema=None) -> Path:
    _check_saveable(model, state)  # also here: nothing writes a diverged model
    meta = describe(config.model.name, config.model.kwargs, config.to_dict())
    progress = {"epoch": state.epoch, "step": state.step, "history": asdict(state.history),
                "world_size": distributed.world_size(), "window": list(state.window)}
    # with EMA on, "model" (what evaluate and predict load) is the average; training resumes from train_model
    extra = {} if ema is None else {"train_model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                    "ema_updates": ema.updates}
    extra["rng"] = _rng_state(next(model.parameters()).device)
    return save_checkpoint(Path(out_dir) / "checkpoint.pt", model if ema is None else ema.module, meta,
                           optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                           iter_num=state.iter_num, progress=progress, **extra)


def _log_epoch(writer, history: History, first_iter: int, losses: list[float], epoch: int) -> None:
    if writer is None:
        return
    for i, loss in enumerate(losses):
        writer.add_scalar("Loss/train", loss, first_iter + i + 1)
    for step, acc in history.train_acc_10:
        if step > first_iter:
            writer.add_scalar("train accuracy per 10 batches", 100.0 * acc, step)
    if history.val_acc:
        writer.add_scalar("val accuracy per epoch", 100.0 * history.val_acc[-1], epoch + 1)
    writer.flush()


def _check_finite(loss: float, state: _State) -> None:
    if not math.isfinite(loss):
        raise DigitsError(f"training diverged: loss is {loss} by step {state.iter_num}; lower --lr "
                          "(a diverged model is never written to the checkpoint)")


def _step_generator(config: RunConfig, state: _State, device) -> torch.Generator:
    """The augmentation's random numbers for one step: a function of (seed, step, rank), so resume is
    exact and each process distorts its shard differently."""
    key = (config.seed * 1_000_003 + state.iter_num) * 1_009 + distributed.rank()
    return torch.Generator(device=device).manual_seed(seed_value(key))


def _run_epoch(model, optimizer, scheduler, ema, x, y, config: RunConfig, state: _State, save) -> list[float]:
    """One epoch from ``state.step`` on; returns the per-step losses of the steps it ran."""
    from tqdm import tqdm

    order = distributed.shard(epoch_permutation(len(y), config.seed, state.epoch))
    batches = order.to(x.device).split(config.optim.batch_size)
    losses = []
    # the accuracy window's counts; after a mid-epoch resume rank 0 holds the saved ones (ratio sums all ranks')
    hits, seen = state.window if distributed.is_main() else (0, 0)
    hits = torch.tensor(hits, device=x.device)
    bar = tqdm(total=len(batches), initial=state.step, desc=f"epoch {state.epoch + 1}/{config.optim.epochs}",
               disable=not (config.progress and distributed.is_main()), file=sys.stderr, leave=False,
               mininterval=0.5)
    model.train()
    with bar:  # closed also when a step raises (divergence): the error then starts on its own line
        for idx in batches[state.step:]:
            images, labels = x[idx], y[idx]
            if is_enabled(config.augment):
                images = augment_batch(images, config.augment, _step_generator(config, state, x.device))
            logits = model(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=config.optim.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_gradients(model, config.optim.clip_grad_norm)
            optimizer.step()
            scheduler.step()  # every schedule is per training step (optim.make_scheduler)
            if ema is not None:
                ema.update(model)
            losses.append(loss.detach())
            hits, seen = hits + (logits.argmax(1) == labels).sum(), seen + len(labels)
            state.step += 1
            state.iter_num += 1
            if state.step % 10 == 0:  # read values back every 10 steps, not every step (host sync)
                recent = distributed.mean(torch.stack(losses[-10:])).tolist()
                _check_finite(max(recent, key=lambda v: v if math.isfinite(v) else math.inf), state)
                acc = distributed.ratio(hits, seen)
                hits, seen = torch.zeros_like(hits), 0
                state.history.train_acc_10.append([state.iter_num, acc])
                bar.set_postfix(loss=f"{recent[-1]:.3f}", acc=f"{acc:.3f}", refresh=False)
            bar.update()
            if config.checkpoint_every and state.iter_num % config.checkpoint_every == 0:
                state.window = [int(v) for v in distributed.all_sum(torch.tensor([float(hits), float(seen)]))]
                save(state, distributed.mean(torch.stack(losses)).tolist())
    values = distributed.mean(torch.stack(losses)).tolist() if losses else []
    for v in values:  # all of them: after a mid-epoch resume the every-10 checks are offset
        _check_finite(v, state)
    return values


def _val_accuracy(model, images, labels, config: RunConfig) -> float:
    """Each process scores its share of the validation images; their counts are summed."""
    idx = distributed.shard(torch.arange(len(labels)), pad=False)
    result = evaluate(model, images[idx], labels[idx], config.test_batch_size, config.channels_last)
    return distributed.ratio((result.predictions == labels[idx].cpu()).sum(), len(idx))


def check_startable(config: RunConfig, model: bool = True, resume: str | Path | None = None) -> None:
    """The settings ``fit`` refuses before it trains, checked without data (with ``model``, by
    building the network once; with ``resume``, by reading that checkpoint and, with ``model``,
    loading its weights into the network): a DigitsError naming the first one at fault."""
    if config.checkpoint_every < 0:
        raise DigitsError(f"--checkpoint-every must not be negative, got {config.checkpoint_every}")
    check_optim(config.optim)
    check_augment(config.augment)
    network = None
    if model:
        network = check_classifier(create_model(config.model.name, **config.model.kwargs), config.model.name)
    if resume:
        ckpt = read_resumable(resume, config)
        if network is not None:  # e.g. other --model-arg values than the run had: the weights do not fit
            try:
                network.load_state_dict(ckpt.get("train_model", ckpt["model"]))
            except RuntimeError as e:
                raise _cannot_continue(resume, e) from None


def fit(config: RunConfig, data: MNIST, out_dir: str | Path | None = None,
        resume: str | Path | None = None, writer=None) -> TrainResult:
    """Train the configured model; checkpoint to ``out_dir/checkpoint.pt`` after every epoch.

    ``writer``: an optional TensorBoard SummaryWriter that receives the tutorial's curves."""
    check_startable(config, model=False)
    set_threads(config.threads)
    device = distributed.init(resolve_device(config.device))
    torch.manual_seed(seed_value(config.seed))
    model = check_classifier(create_model(config.model.name, **config.model.kwargs), config.model.name).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, scaled_for_world(config.optim, distributed.world_size()))
    steps_per_epoch = math.ceil(distributed.shard_size(len(data.train)) / config.optim.batch_size)
    scheduler = make_scheduler(optimizer, config.optim, steps_per_epoch)
    ema = make_ema(model, config.optim)
    state = _restore(resume, model, optimizer, scheduler, config, steps_per_epoch, ema) if resume else _State()
    ddp = distributed.wrap(model, device)  # steps through DDP; model stays the bare module that is saved
    x = normalize(data.train.images.to(device)).contiguous(memory_format=memory_format)
    y = data.train.labels.to(device)
    checkpoint = None
    out_dir = out_dir if distributed.is_main() else None  # one process writes the run folder
    if out_dir:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DigitsError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None

    def save(at: _State, epoch_losses: list[float]) -> Path | None:
        # mid-epoch, the epoch's losses are not yet in the history: store them with it
        h = at.history
        snapshot = _State(at.epoch, at.step, at.iter_num, History(
            h.loss + epoch_losses, h.train_acc_10, h.val_acc, h.epoch_seconds), at.window)
        _check_saveable(model, snapshot)  # on every rank: all stop where rank 0 refuses to save
        path, failure = None, None
        if out_dir:
            try:
                path = _save(out_dir, model, optimizer, scheduler, config, snapshot, ema)
            except DigitsError as e:  # e.g. a full disk: the other processes stop too, rather
                failure = e           # than wait for rank 0 at the next collective (without torchrun's
                                      # agent to kill them, until the process group times out)
        if distributed.any_rank(failure is not None):
            raise failure or DigitsError("training stopped: process 0 could not write the checkpoint")
        return path

    if device.type == "cpu":
        convpool.prepare()  # compiled once per machine: not in the first epoch's time
    seconds, step_seconds, images_seen = 0.0, 0.0, 0
    evaluated = model if ema is None else ema.module  # with EMA on, the average is what is validated
    while state.epoch < config.optim.epochs:
        start, first_iter, first_step = time.perf_counter(), state.iter_num, state.step
        losses = _run_epoch(ddp, optimizer, scheduler, ema, x, y, config, state, save)
        step_seconds += time.perf_counter() - start
        state.history.loss += losses
        if len(data.val):
            state.history.val_acc.append(_val_accuracy(evaluated, data.val.images, data.val.labels, config))
        elapsed = time.perf_counter() - start
        state.history.epoch_seconds.append(elapsed)
        seconds += elapsed
        bs, m = config.optim.batch_size, distributed.shard_size(len(y))
        images_seen += distributed.world_size() * (min(m, state.step * bs) - min(m, first_step * bs))
        _log_epoch(writer, state.history, first_iter, losses, state.epoch)
        state.epoch, state.step, state.window = state.epoch + 1, 0, [0, 0]  # a window never spans epochs
        checkpoint = save(state, []) or checkpoint
    return TrainResult(evaluated.eval(), state.history, state.iter_num, seconds,
                       images_seen / step_seconds if step_seconds else 0.0, checkpoint)
