"""SGD and Adam with torch.optim's update rules, as foreach tensor operations, minus its start-up cost.

torch.optim.Optimizer imports torch._dynamo the first time any of its methods runs: 1.35 s of
CPU on this project's 2-core machine (about a tenth of `digits run` with the seed recipe), for
nothing when nothing is compiled. These classes subclass Optimizer (so torch's learning-rate
schedulers accept them) but never call its methods. Their state_dict() has torch's layout, so a
checkpoint's optimizer state loads into torch.optim.SGD / Adam and back.

A learning rate held as a 0-dim tensor (``lr=torch.tensor(0.01, device=...)``) keeps every step
free of host synchronisation, so the step can be captured in a CUDA graph.

    optimizer = SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=False)
    optimizer = Adam(model.parameters(), lr=0.01, betas=(0.7, 0.9))
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable

import torch


class _Lean(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.Tensor], defaults: dict[str, Any]):
        # Optimizer.__init__ is skipped on purpose (it imports torch._dynamo); these are the
        # attributes torch's schedulers and checkpoints read.
        self.defaults = defaults
        self.state: defaultdict[torch.Tensor, dict] = defaultdict(dict)
        self.param_groups = [{**defaults, "params": list(params)}]

    def __repr__(self) -> str:
        hyper = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        return f"{type(self).__name__}({hyper})"

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        index, groups = 0, []
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(index, index + n))})
            index += n
        state = {i: dict(self.state[p]) for i, p in enumerate(self._params()) if self.state.get(p)}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        groups = state_dict["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimizer state has other parameter groups than this model")
        ids = [i for g in groups for i in g["params"]]
        for saved, group in zip(groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = defaultdict(dict)
        for i, p in zip(ids, self._params()):
            saved = state_dict["state"].get(i, state_dict["state"].get(str(i)))
            if saved:
                self.state[p] = {k: v.to(p.device) if torch.is_tensor(v) else v for k, v in saved.items()}


def _with_grads(group: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    params = [p for p in group["params"] if p.grad is not None]
    return params, [p.grad for p in params]


def _add_scaled(params: list[torch.Tensor], updates: list[torch.Tensor], scale) -> None:
    """params += scale * updates, for a float scale or a 0-dim tensor (no host sync)."""
    if torch.is_tensor(scale):
        torch._foreach_add_(params, torch._foreach_mul(updates, scale))
    else:
        torch._foreach_add_(params, updates, alpha=scale)


class SGD(_Lean):
    """torch.optim.SGD's update: momentum (no dampening), Nesterov's or not, and L2 weight decay.

    Unlike torch.optim.SGD (as of 2.13), a tensor learning rate costs no host synchronisation per
    step (torch's foreach update reads it with .item()), so the step can be captured in a graph."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs a momentum above 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": 0, "weight_decay": weight_decay,
                                  "nesterov": nesterov, "maximize": False})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params, grads = _with_grads(group)
            if not params:
                continue
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            if group["momentum"]:
                bufs = self._momentum(params, grads, group["momentum"])
                # Nesterov: the gradient plus momentum times the updated buffer, as torch computes it
                grads = torch._foreach_add(grads, bufs, alpha=group["momentum"]) if group["nesterov"] else bufs
            _add_scaled(params, grads, -group["lr"])

    def _momentum(self, params, grads, momentum: float) -> list[torch.Tensor]:
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        if any(b is None for b in bufs):  # first step: the buffer starts as the gradient
            for p, g, b in zip(params, grads, bufs):
                if b is None:
                    self.state[p]["momentum_buffer"] = g.detach().clone()
                else:
                    b.mul_(momentum).add_(g)
            return [self.state[p]["momentum_buffer"] for p in params]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, grads)
        return bufs


class Adam(_Lean):
    """torch.optim.Adam's update (bias-corrected, no weight decay, no AMSGrad)."""

    def __init__(self, params, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": 0.0,
                                  "amsgrad": False, "maximize": False})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params, grads = _with_grads(group)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            for p in params:
                if not self.state[p]:
                    self.state[p] = {"step": torch.zeros((), device=p.device),
                                     "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            states = [self.state[p] for p in params]
            exp_avg, exp_avg_sq = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
            steps = [s["step"] for s in states]  # one per parameter, as torch keeps them
            torch._foreach_add_(steps, 1)
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            # step size lr / (1 - beta1^t), denominator sqrt(v / (1 - beta2^t)) + eps: in Python
            # floats like torch when that costs no host sync, else as device tensors
            lr, step = group["lr"], steps[0]
            if not torch.is_tensor(lr) and step.device.type == "cpu":
                step = step.item()
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, (1 - beta2 ** step) ** 0.5)
            torch._foreach_add_(denom, group["eps"])
            updates = torch._foreach_div(exp_avg, denom)
            _add_scaled(params, updates, -lr / (1 - beta1 ** step))
