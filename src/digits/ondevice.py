"""Training with everything on one device and no host synchronisation until the end: the data,
each epoch's shuffle, the learning-rate schedule and the losses live in device tensors, and the
training step runs eagerly, compiled (torch.compile), or captured once in a CUDA graph and replayed.
It exists for the GPU timings (benchmarks/gpu.py); on a CPU the same code runs, without graphs.

    result = train_on_device(recipe("fast"), load_mnist().to("cuda"), mode="graph", bf16=True)
    result.test_accuracy, result.seconds

    trainer = DeviceTrainer(recipe("fast"), data, mode="graph", bf16=True)   # one capture for all seeds
    results = [trainer.run(seed) for seed in range(5)]

Unlike `digits.train.fit` it keeps no history, writes no checkpoint and drops each epoch's last
partial batch (a graph replays one batch shape). It follows the recipe's model, optimiser,
schedule, label smoothing, augmentation and memory format (config.channels_last); weight EMA and
gradient clipping it does not do, and refuses (ValueError).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .augment import augment_batch, is_enabled
from .config import RunConfig
from .data import MNIST, normalize, seed_value
from .models import create_model
from .optim import lr_factor, make_optimizer

MODES = ("eager", "compile", "graph", "compile+graph")
WARMUP_STEPS = 3  # eager steps on a side stream before a graph is captured, as CUDA graphs need


@dataclass
class DeviceResult:
    test_accuracy: float
    seconds: float  # (re)creating the network, training and the test pass, the device synchronised
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


class DeviceTrainer:
    """One setting's network, optimiser and training step, built once and trained again for each
    seed. With mode="graph" on CUDA the first run captures the step in a CUDA graph and every later
    run replays that graph from its first step: only the first run pays for the eager warm-up
    steps and the capture, as a compiled step pays for its compilation once.

    Each run starts from the seed's fresh network (its initial weights and batch-norm statistics
    copied into the captured tensors) and a zeroed optimiser state, which is what a new optimiser
    starts from: a run trains as ``train_on_device`` does with the same seed (tests/test_ondevice.py).
    The ``model`` of every result is the trainer's own, so the next run changes it."""

    def __init__(self, config: RunConfig, data: MNIST, mode: str = "eager", bf16: bool = False,
                 backend: str = "inductor", fused: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if config.optim.ema_decay or config.optim.clip_grad_norm:
            raise ValueError("train_on_device does no weight EMA or gradient clipping; use digits.train.fit")
        # a copy: every run must build the network and batches the graph was captured with
        self.config, self.data, self.mode, self.bf16 = copy.deepcopy(config), data, mode, bf16
        self.device = device = data.train.images.device
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        torch.manual_seed(seed_value(config.seed))
        self.model = create_model(config.model.name, **config.model.kwargs).to(device, memory_format=self.memory_format)
        self._fresh_seed = config.seed  # the model holds this seed's initial weights until trained
        self.lr = torch.tensor(config.optim.lr, device=device)  # a device tensor: no host value read per step
        if fused:
            self.optimizer = _fused_adam(self.model, config, self.lr)
        else:
            self.optimizer = make_optimizer(self.model, config.optim)
            self.optimizer.param_groups[0]["lr"] = self.lr
        bs = config.optim.batch_size
        self.xb = torch.empty((bs, *data.train.images.shape[1:]), device=device, memory_format=self.memory_format)
        self.yb = torch.empty(bs, dtype=data.train.labels.dtype, device=device)
        forward = torch.compile(self.model, backend=backend) if "compile" in mode else self.model
        self.step = _step_fn(forward, self.optimizer, self.xb, self.yb, bf16, config.optim.label_smoothing)
        self.graph, self.graph_loss = None, None

    def _start_from(self, seed: int) -> None:
        """The seed's fresh network in the model's tensors, and the optimiser's state zeroed."""
        torch.manual_seed(seed_value(seed))
        fresh = create_model(self.config.model.name, **self.config.model.kwargs)
        self.model.load_state_dict(fresh.state_dict())  # copied into the same tensors, matched by name
        for state in self.optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value):
                    value.zero_()  # Adam's moments and step; SGD's momentum (then 0 * m + g = g)
                else:
                    state[key] = type(value)(0)

    def run(self, seed: int) -> DeviceResult:
        """Train from ``seed``'s initial network, then test; timed from here to the test's end (a
        first run with the config's own seed uses the network __init__ made, untimed here:
        ``train_on_device`` times both)."""
        _sync(self.device)
        start = time.perf_counter()
        if seed != self._fresh_seed:  # (else: the network is as __init__ made it, the RNG as it left it)
            self._start_from(seed)
        self._fresh_seed = None
        losses = self._train(seed)
        accuracy = _test_accuracy(self.model, self.data, self.config.test_batch_size, self.bf16, self.memory_format)
        _sync(self.device)
        return DeviceResult(accuracy, time.perf_counter() - start, len(losses), float(losses[-1]),
                            self.graph is not None, self.model)

    def _train(self, seed: int) -> torch.Tensor:
        """Every step's loss, left on the device; each epoch's shuffle and distortions drawn from ``seed``."""
        config, device, bs = self.config, self.device, self.config.optim.batch_size
        x = normalize(self.data.train.images).contiguous(memory_format=self.memory_format)
        y = self.data.train.labels
        per_epoch = len(y) // bs
        lrs = schedule(config, per_epoch * config.optim.epochs, per_epoch, device)
        gen = torch.Generator(device).manual_seed(seed_value(seed))
        augment = config.augment if is_enabled(config.augment) else None
        # the first steps run eagerly, on a side stream when a graph is to be captured (CUDA's rule)
        graphs = "graph" in self.mode and device.type == "cuda"
        side = torch.cuda.Stream(device) if graphs and self.graph is None else None
        losses = torch.zeros(len(lrs), device=device)
        self.model.train()
        for k in range(len(lrs)):
            if k % per_epoch == 0:
                perm = torch.randperm(len(y), device=device, generator=gen)
            self._load_batch(x, y, perm[(k % per_epoch) * bs:(k % per_epoch + 1) * bs], augment, gen)
            self.lr.copy_(lrs[k])
            if side is not None and k == WARMUP_STEPS:
                torch.cuda.current_stream(device).wait_stream(side)
                self.graph, self.graph_loss = _capture(self.step, self.optimizer)
                side = None
            losses[k] = self._step_once(side)
        return losses

    def _load_batch(self, x, y, idx, augment, gen) -> None:
        """The images and labels ``idx`` picks, into the batch tensors a graph reads, the images
        distorted on the device when ``augment`` (the config's AugmentConfig, or None) says so."""
        torch.index_select(x, 0, idx, out=self.xb)
        torch.index_select(y, 0, idx, out=self.yb)
        if augment is not None:
            self.xb.copy_(augment_batch(self.xb, augment, gen))

    def _step_once(self, side) -> torch.Tensor:
        """One training step on the current batch, its loss on the device: the captured graph
        replayed, else a warm-up step on the ``side`` stream, else an eager step."""
        if self.graph is not None:
            self.graph.replay()
            return self.graph_loss
        if side is not None:  # each warm-up step waits for its batch, and the next for it
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self.optimizer.zero_grad(set_to_none=True)
                loss = self.step()
            torch.cuda.current_stream(self.device).wait_stream(side)
            return loss
        self.optimizer.zero_grad(set_to_none=True)
        return self.step()


def train_on_device(config: RunConfig, data: MNIST, mode: str = "eager", bf16: bool = False,
                    backend: str = "inductor", fused: bool = False) -> DeviceResult:
    """Train ``config``'s model on ``data`` (already on its device), then test it; timed end to end,
    the network's creation and (mode="graph") the graph's capture included.

    ``backend``: torch.compile's, for the compile modes. ``fused``: torch's fused Adam (the
    recipe must use Adam without weight decay) instead of digits.optimizers' foreach one."""
    device = data.train.images.device
    _sync(device)
    start = time.perf_counter()
    result = DeviceTrainer(config, data, mode, bf16, backend, fused).run(config.seed)
    result.seconds = time.perf_counter() - start
    return result
