"""The training loop: fit(config, data) -> TrainResult, with checkpoints (resume.py) and TensorBoard.

The whole training split is normalised once and kept on the device; each epoch draws a
permutation from (seed, epoch), so a resumed run sees exactly the batches it would have seen.

    result = fit(RunConfig(), load_mnist(), out_dir="runs/x")
    result.history.val_acc
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from . import convpool, distributed
from .augment import augment_batch, check_augment, is_enabled
from .config import OptimConfig, RunConfig
from .data import MNIST, normalize, seed_value
from .device import resolve_device, set_threads
from .errors import DigitsError
from .evaluate import evaluate
from .models import check_classifier, create_model
from .outpath import make_folder
from .optim import check_optim, clip_gradients, make_ema, make_optimizer, make_scheduler
from .resume import (History, TrainState, cannot_continue, check_finite, check_saveable, read_resumable, restore,
                     save_state)


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: History
    iter_num: int  # training steps taken in all
    train_seconds: float  # time in training steps and per-epoch validation, of the whole run: a resumed
    # run's sessions together (as iter_num and history count them), measured by this process (rank 0's saved)
    images_per_second: float  # over the training steps alone (validation not counted), of the whole run
    checkpoint: Path | None
    resumed_at: int | None = None  # with --resume, the step this session began at
    session_seconds: float = 0.0  # this session's share of train_seconds


def scaled_for_world(cfg: OptimConfig, world_size: int) -> OptimConfig:
    """With ``cfg.scale_lr``, the learning rate times the number of processes (linear scaling rule)."""
    return replace(cfg, lr=cfg.lr * world_size) if cfg.scale_lr else cfg


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch ``epoch``: a function of (seed, epoch) only, identical on every rank."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed_value(seed * 100_003 + epoch)))


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


def _step_generator(config: RunConfig, state: TrainState, device) -> torch.Generator:
    """The augmentation's random numbers for one step: a function of (seed, step, rank), so resume is
    exact and each process distorts its shard differently."""
    key = (config.seed * 1_000_003 + state.iter_num) * 1_009 + distributed.rank()
    return torch.Generator(device=device).manual_seed(seed_value(key))


def _step(model, optimizer, scheduler, ema, images, labels, config: RunConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step; its loss and its number of correct predictions, both left on the device."""
    logits = model(images)
    loss = F.cross_entropy(logits, labels, label_smoothing=config.optim.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(model, config.optim.clip_grad_norm)
    optimizer.step()
    scheduler.step()  # every schedule is per training step (optim.make_scheduler)
    if ema is not None:
        ema.update(model)
    return loss.detach(), (logits.argmax(1) == labels).sum()


def _close_window(losses: list[torch.Tensor], hits, seen: int, state: TrainState, bar) -> None:
    """The end of a 10-step window: its losses checked, its training accuracy (over every process)
    recorded and shown."""
    recent = distributed.mean(torch.stack(losses)).tolist()
    check_finite(max(recent, key=lambda v: v if math.isfinite(v) else math.inf), state)
    acc = distributed.ratio(hits, seen)
    state.history.train_acc_10.append([state.iter_num, acc])
    bar.set_postfix(loss=f"{recent[-1]:.3f}", acc=f"{acc:.3f}", refresh=False)


def _run_epoch(model, optimizer, scheduler, ema, x, y, config: RunConfig, state: TrainState, save) -> list[float]:
    """One epoch from ``state.step`` on; returns the per-step losses of the steps it ran."""
    from tqdm import tqdm

    lap = time.perf_counter()  # the run's time, carried by state so that a mid-epoch checkpoint holds it
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
            loss, hit = _step(model, optimizer, scheduler, ema, images, labels, config)
            losses.append(loss)
            hits, seen = hits + hit, seen + len(labels)
            state.step += 1
            state.iter_num += 1
            state.images += len(labels) * distributed.world_size()  # (each process's shard is as long)
            if state.step % 10 == 0:  # read values back every 10 steps, not every step (host sync)
                _close_window(losses[-10:], hits, seen, state, bar)
                hits, seen = torch.zeros_like(hits), 0
            bar.update()
            if config.checkpoint_every and state.iter_num % config.checkpoint_every == 0:
                state.window = [int(v) for v in distributed.all_sum(torch.tensor([float(hits), float(seen)]))]
                so_far = distributed.mean(torch.stack(losses)).tolist()  # (waits for the device's steps)
                lap = _count_time(state, lap)
                save(state, so_far)
    values = distributed.mean(torch.stack(losses)).tolist() if losses else []
    _count_time(state, lap)
    for v in values:  # all of them: after a mid-epoch resume the every-10 checks are offset
        check_finite(v, state)
    return values


def _count_time(state: TrainState, since: float) -> float:
    """Add the training steps' time since ``since`` to the run's; returns now."""
    now = time.perf_counter()
    state.step_seconds += now - since
    state.seconds += now - since
    return now


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
                raise cannot_continue(resume, e) from None


@dataclass
class _Parts:
    model: torch.nn.Module  # the bare module: what is saved and evaluated (DDP wraps it for the steps)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: object | None
    state: TrainState


def _memory_format(config: RunConfig) -> torch.memory_format:
    return torch.channels_last if config.channels_last else torch.contiguous_format


def _build(config: RunConfig, n_train: int, device: torch.device, resume) -> _Parts:
    """The network, optimiser, schedule and EMA of a run, fresh or at the state ``resume`` holds."""
    torch.manual_seed(seed_value(config.seed))
    model = check_classifier(create_model(config.model.name, **config.model.kwargs), config.model.name)
    model = model.to(device).to(memory_format=_memory_format(config))
    optimizer = make_optimizer(model, scaled_for_world(config.optim, distributed.world_size()))
    steps_per_epoch = math.ceil(distributed.shard_size(n_train) / config.optim.batch_size)
    scheduler = make_scheduler(optimizer, config.optim, steps_per_epoch)
    ema = make_ema(model, config.optim)
    state = restore(resume, model, optimizer, scheduler, config, steps_per_epoch, ema) if resume else TrainState()
    return _Parts(model, optimizer, scheduler, ema, state)


def _run_folder(out_dir) -> Path | None:
    out_dir = out_dir if distributed.is_main() else None  # one process writes the run folder
    if out_dir:
        try:
            make_folder(out_dir, f"output folder {out_dir}")
        except OSError as e:
            raise DigitsError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None
    return Path(out_dir) if out_dir else None


def _saver(out_dir: Path | None, parts: _Parts, config: RunConfig):
    """save(state, epoch_losses) -> the checkpoint's path (None on the processes that write nothing)."""
    def save(at: TrainState, epoch_losses: list[float]) -> Path | None:
        # mid-epoch, the epoch's losses are not yet in the history: store them with it
        h = at.history
        snapshot = replace(at, history=History(h.loss + epoch_losses, h.train_acc_10, h.val_acc, h.epoch_seconds))
        check_saveable(parts.model, snapshot)  # on every rank: all stop where rank 0 refuses to save
        path, failure = None, None
        if out_dir:
            try:
                path = save_state(out_dir, parts.model, parts.optimizer, parts.scheduler, config, snapshot,
                                  parts.ema)
            except DigitsError as e:  # e.g. a full disk: the other processes stop too, rather
                failure = e           # than wait for rank 0 at the next collective (without torchrun's
                                      # agent to kill them, until the process group times out)
        if distributed.any_rank(failure is not None):
            raise failure or DigitsError("training stopped: process 0 could not write the checkpoint")
        return path
    return save


def fit(config: RunConfig, data: MNIST, out_dir: str | Path | None = None,
        resume: str | Path | None = None, writer=None) -> TrainResult:
    """Train the configured model; checkpoint to ``out_dir/checkpoint.pt`` after every epoch.

    ``writer``: an optional TensorBoard SummaryWriter that receives the tutorial's curves."""
    check_startable(config, model=False)
    set_threads(config.threads)
    device = distributed.init(resolve_device(config.device))
    parts = _build(config, len(data.train), device, resume)
    state, ema = parts.state, parts.ema
    ddp = distributed.wrap(parts.model, device)  # steps through DDP; parts.model stays the bare module
    x = normalize(data.train.images.to(device)).contiguous(memory_format=_memory_format(config))
    y = data.train.labels.to(device)
    save, checkpoint = _saver(_run_folder(out_dir), parts, config), None
    if device.type == "cpu":
        convpool.prepare()  # compiled once per machine: not in the first epoch's time
    resumed_at, carried = (state.iter_num if resume else None), state.seconds
    resumed_epoch = state.epoch
    evaluated = parts.model if ema is None else ema.module  # with EMA on, the average is what is validated
    while state.epoch < config.optim.epochs:
        first_iter = state.iter_num
        losses = _run_epoch(ddp, parts.optimizer, parts.scheduler, ema, x, y, config, state, save)
        state.history.loss += losses
        start = time.perf_counter()
        if len(data.val):
            state.history.val_acc.append(_val_accuracy(evaluated, data.val.images, data.val.labels, config))
        state.seconds += time.perf_counter() - start
        # the epoch's seconds, the part before a mid-epoch checkpoint's resume included: they add up to
        # the run's, which the epochs before hold the rest of
        state.history.epoch_seconds.append(max(0.0, state.seconds - math.fsum(state.history.epoch_seconds)))
        _log_epoch(writer, state.history, first_iter, losses, state.epoch)
        state.epoch, state.step, state.window = state.epoch + 1, 0, [0, 0]  # a window never spans epochs
        checkpoint = save(state, []) or checkpoint
    if resume is not None and state.epoch == resumed_epoch:  # nothing left to train (--epochs as the
        checkpoint = save(state, [])  # checkpoint's): the folder gets the checkpoint its results belong to
        # (decided on what every process knows alike: save is collective, and only rank 0 gets a path)
    return TrainResult(evaluated.eval(), state.history, state.iter_num, state.seconds,
                       state.images / state.step_seconds if state.step_seconds else 0.0, checkpoint,
                       resumed_at, state.seconds - carried)
