"""Training with everything on one device and no host synchronisation until the end: the data,
each epoch's shuffle, the learning-rate schedule and the losses live in device tensors, and the
training step runs eagerly, compiled (torch.compile), or captured once in a CUDA graph and replayed.
It exists for the GPU timings (benchmarks/gpu.py); on a CPU the same code runs, without graphs.

    result = train_on_device(recipe("fast"), load_mnist().to("cuda"), mode="graph", bf16=True)
    result.test_accuracy, result.seconds

Unlike `digits.train.fit` it keeps no history, writes no checkpoint and drops each epoch's last
partial batch (a graph replays one batch shape). It follows the recipe's model, optimiser,
schedule, label smoothing, augmentation and memory format (config.channels_last); weight EMA and
gradient clipping it does not do, and refuses (ValueError).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .augment import augment_batch, is_enabled
from .config import RunConfig
from .data import MNIST, normalize
from .models import create_model
from .optim import lr_factor, make_optimizer

MODES = ("eager", "compile", "graph", "compile+graph")
WARMUP_STEPS = 3  # eager steps on a side stream before a graph is captured, as CUDA graphs need


@dataclass
class DeviceResult:
    test_accuracy: float
    seconds: float  # model creation, training and the test pass, the device synchronised
    steps: int
    final_loss: float
    graphed: bool  # whether the step was replayed from a CUDA graph
    model: torch.nn.Module | None = field(default=None, repr=False)  # the trained model, for ensembles


def schedule(config: RunConfig, total: int, per_epoch: int, device) -> torch.Tensor:
    """Every step's learning rate, as `digits train` sets them (optim.lr_factor), on the device."""
    factors = [lr_factor(k, config.optim, per_epoch) for k in range(total)]
    return (config.optim.lr * torch.tensor(factors, dtype=torch.float64)).float().to(device)


@torch.inference_mode()
def _test_accuracy(model, data: MNIST, batch_size: int, bf16: bool, memory_format) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=data.test.labels.device)
    for start in range(0, len(data.test), batch_size):
        images = normalize(data.test.images[start:start + batch_size]).contiguous(memory_format=memory_format)
        with torch.autocast(images.device.type, torch.bfloat16, enabled=bf16):
            logits = model(images)
        correct += (logits.argmax(1) == data.test.labels[start:start + batch_size]).sum()
    return correct.item() / len(data.test)  # the one host synchronisation


def _step_fn(forward, optimizer, xb, yb, bf16: bool, label_smoothing: float = 0.0):
    def step() -> torch.Tensor:
        # no autocast weight cache: a graph replay must recast the weights it updated
        with torch.autocast(xb.device.type, torch.bfloat16, enabled=bf16, cache_enabled=False):
            loss = F.cross_entropy(forward(xb), yb, label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def _capture(step, optimizer) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Record one training step (it does not run); replay() runs it on the current buffers."""
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)  # gradients are then allocated inside the graph's pool
    with torch.cuda.graph(graph):
        loss = step()
    return graph, loss


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fused_adam(model: torch.nn.Module, config: RunConfig, lr: torch.Tensor) -> torch.optim.Optimizer:
    """torch.optim.Adam's fused kernel: the whole update in one kernel instead of about ten."""
    o = config.optim
    if o.optimizer != "adam" or o.weight_decay:
        raise ValueError("fused=True is for Adam without weight decay")
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(o.beta1, o.beta2), fused=True,
                            capturable=lr.device.type == "cuda")  # a graph may capture its step


def train_on_device(config: RunConfig, data: MNIST, mode: str = "eager", bf16: bool = False,
                    backend: str = "inductor", fused: bool = False) -> DeviceResult:
    """Train ``config``'s model on ``data`` (already on its device), then test it; timed end to end.

    ``backend``: torch.compile's, for the compile modes. ``fused``: torch's fused Adam (the
    recipe must use Adam without weight decay) instead of digits.optimizers' foreach one."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if config.optim.ema_decay or config.optim.clip_grad_norm:
        raise ValueError("train_on_device does no weight EMA or gradient clipping; use digits.train.fit")
    device = data.train.images.device
    _sync(device)
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = create_model(config.model.name, **config.model.kwargs).to(device, memory_format=memory_format)
    lr = torch.tensor(config.optim.lr, device=device)  # a device tensor: no host value read per step
    if fused:
        optimizer = _fused_adam(model, config, lr)
    else:
        optimizer = make_optimizer(model, config.optim)
        optimizer.param_groups[0]["lr"] = lr
    x = normalize(data.train.images).contiguous(memory_format=memory_format)
    y = data.train.labels
    bs = config.optim.batch_size
    per_epoch = len(y) // bs
    lrs = schedule(config, per_epoch * config.optim.epochs, per_epoch, device)
    xb, yb = torch.empty_like(x[:bs]), torch.empty_like(y[:bs])
    forward = torch.compile(model, backend=backend) if "compile" in mode else model
    step = _step_fn(forward, optimizer, xb, yb, bf16, config.optim.label_smoothing)
    gen = torch.Generator(device).manual_seed(config.seed)
    graphs, augment = "graph" in mode and device.type == "cuda", is_enabled(config.augment)
    # the first steps run eagerly, on a side stream when a graph is to be captured (CUDA's rule)
    side = torch.cuda.Stream(device) if graphs else None
    graph, losses = None, torch.zeros(len(lrs), device=device)
    model.train()
    for k in range(len(lrs)):
        if k % per_epoch == 0:
            perm = torch.randperm(len(y), device=device, generator=gen)
        idx = perm[(k % per_epoch) * bs:(k % per_epoch + 1) * bs]
        torch.index_select(x, 0, idx, out=xb)
        torch.index_select(y, 0, idx, out=yb)
        if augment:  # config.augment's distortions, drawn on the device
            xb.copy_(augment_batch(xb, config.augment, gen))
        lr.copy_(lrs[k])
        if graphs and k == WARMUP_STEPS:
            torch.cuda.current_stream(device).wait_stream(side)
            graph, loss = _capture(step, optimizer)
        if graph is not None:
            graph.replay()
        elif side is not None:  # each warm-up step waits for its batch, and the next for it
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                optimizer.zero_grad(set_to_none=True)
                loss = step()
            torch.cuda.current_stream(device).wait_stream(side)
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = step()
        losses[k] = loss
    accuracy = _test_accuracy(model, data, config.test_batch_size, bf16, memory_format)
    _sync(device)
    return DeviceResult(accuracy, time.perf_counter() - start, len(lrs), float(losses[-1]), graph is not None, model)
