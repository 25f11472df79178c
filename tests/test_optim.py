"""Optimisers, per-step schedules, clipping and EMA against hand-computed values."""
import math

import pytest
import torch

from digits.config import OptimConfig
from digits.errors import DigitsError
from digits.optim import EMA, check_optim, clip_gradients, lr_factor, make_ema, make_optimizer, make_scheduler
from digits.optimizers import SGD, Adam


def _lrs(cfg: OptimConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate used at each training step when the scheduler steps after every step."""
    model = torch.nn.Linear(2, 2)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch)
    out = []
    for _ in range(cfg.epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_per_step_equals_the_seeds_steplr_per_epoch():
    cfg = OptimConfig(lr=0.1, step_size=2, gamma=0.5, epochs=5)
    lrs = _lrs(cfg, steps_per_epoch=3)
    # StepLR(step_size=2, gamma=0.5) stepped once per epoch: epochs 0-1 0.1, 2-3 0.05, 4 0.025
    assert lrs == pytest.approx([0.1] * 6 + [0.05] * 6 + [0.025] * 3)


def test_warmup_is_linear_then_the_schedule_takes_over():
    cfg = OptimConfig(lr=1.0, scheduler="none", warmup_epochs=1, epochs=2)
    assert _lrs(cfg, steps_per_epoch=4) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1])


def test_cosine_with_warmup_values():
    cfg = OptimConfig(lr=1.0, scheduler="cosine", warmup_epochs=1, epochs=3)
    lrs = _lrs(cfg, steps_per_epoch=2)
    # 2 warm-up steps, then cos over the 4 remaining: t = 0, 1/4, 2/4, 3/4
    assert lrs == pytest.approx([0.5, 1.0, 1.0, 0.5 * (1 + 2 ** -0.5), 0.5, 0.5 * (1 - 2 ** -0.5)])


def test_onecycle_rises_to_the_peak_and_falls_to_zero():
    cfg = OptimConfig(lr=0.2, scheduler="onecycle", epochs=2)
    lrs = _lrs(cfg, steps_per_epoch=4)  # 8 steps, a quarter (2) rising
    assert lrs == pytest.approx([0.1, 0.2, 0.2, 0.2 * 5 / 6, 0.2 * 4 / 6, 0.2 * 3 / 6, 0.2 * 2 / 6, 0.2 / 6])
    assert max(lrs) == pytest.approx(0.2)
    explicit = OptimConfig(lr=1.0, scheduler="onecycle", epochs=2, warmup_epochs=1)
    assert [lr_factor(s, explicit, 4) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize("name, weight_decay, kind", [
    ("sgd", 5e-4, SGD), ("adam", 0.0, Adam), ("adam", 5e-4, torch.optim.Adam), ("adamw", 5e-4, torch.optim.AdamW)])
def test_optimizers(name, weight_decay, kind):
    # digits.optimizers where it has the update (no torch._dynamo import), torch.optim elsewhere
    opt = make_optimizer(torch.nn.Linear(2, 2), OptimConfig(optimizer=name, nesterov=True, weight_decay=weight_decay))
    assert type(opt) is kind
    if name == "sgd":
        assert opt.param_groups[0]["nesterov"] is True
        # without momentum, Nesterov's has nothing to act on: plain SGD, as before
        plain = make_optimizer(torch.nn.Linear(2, 2), OptimConfig(optimizer=name, nesterov=True, momentum=0.0))
        assert plain.param_groups[0]["nesterov"] is False


def test_unknown_names_are_clear_errors():
    with pytest.raises(DigitsError, match="unknown optimizer 'rmsprop'; choose one of: sgd, adam, adamw"):
        make_optimizer(torch.nn.Linear(2, 2), OptimConfig(optimizer="rmsprop"))
    with pytest.raises(DigitsError, match="unknown scheduler 'exp'"):
        make_scheduler(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1), OptimConfig(scheduler="exp"), 3)
    with pytest.raises(DigitsError, match="--ema-decay"):
        EMA(torch.nn.Linear(2, 2), 1.5)


@pytest.mark.parametrize("cfg, message", [
    (OptimConfig(optimizer="adma"), "unknown optimizer 'adma'; choose one of: sgd, adam, adamw"),
    (OptimConfig(scheduler="nope"), "unknown scheduler 'nope'; choose one of: step, cosine"),
    (OptimConfig(step_size=0), "--step-size must be positive, got 0"),
    (OptimConfig(step_size=-2), "--step-size must be positive, got -2")])
def test_check_optim_refuses_what_building_the_optimizer_or_schedule_would(cfg, message):
    """check_optim runs before a run folder is written: it must catch these, not the first step."""
    with pytest.raises(DigitsError, match=message):
        check_optim(cfg)
    with pytest.raises(DigitsError, match=message):  # and building them still refuses (no ZeroDivisionError)
        opt = make_optimizer(torch.nn.Linear(2, 2), cfg)
        make_scheduler(opt, cfg, 3)


@pytest.mark.parametrize("field, value", [("lr", math.nan), ("warmup_epochs", math.inf), ("warmup_epochs", math.nan),
                                          ("clip_grad_norm", math.nan), ("momentum", math.nan),
                                          ("weight_decay", math.inf), ("gamma", -math.inf)])
def test_check_optim_refuses_values_that_are_not_finite(field, value):
    """NaN slipped through every range check: --warmup-epochs nan raised ValueError (inf OverflowError)
    at the first step, --clip-grad-norm nan turned clipping off, --lr nan ran until "diverged"."""
    flag = "--" + field.replace("_", "-")
    with pytest.raises(DigitsError, match=f"^{flag} must be a finite number, got {value}$"):
        check_optim(OptimConfig(**{field: value}))


def test_check_optim_ignores_the_step_size_of_other_schedules():
    check_optim(OptimConfig(scheduler="cosine", step_size=0))


def test_ema_matches_the_formula_and_copies_buffers():
    model = torch.nn.BatchNorm1d(1)
    ema = make_ema(model, OptimConfig(ema_decay=0.5))
    with torch.no_grad():
        model.weight.fill_(3.0)  # the average starts at 1.0
        model.running_mean.fill_(7.0)
    ema.update(model)  # decay min(0.5, 2/11) = 2/11
    assert ema.module.weight.item() == pytest.approx(2 / 11 * 1 + 9 / 11 * 3)
    ema.update(model)  # decay min(0.5, 3/12) = 0.25
    expected = 0.25 * (2 / 11 + 27 / 11) + 0.75 * 3
    assert ema.module.weight.item() == pytest.approx(expected)
    assert ema.module.running_mean.item() == 7.0
    assert make_ema(model, OptimConfig()) is None


def test_clip_gradients_bounds_the_global_norm():
    model = torch.nn.Linear(3, 1)
    model(torch.full((1, 3), 100.0)).sum().backward()
    clip_gradients(model, 0.0)  # off
    assert torch.cat([p.grad.flatten() for p in model.parameters()]).norm() > 100
    clip_gradients(model, 1.0)
    assert torch.cat([p.grad.flatten() for p in model.parameters()]).norm() == pytest.approx(1.0, rel=1e-5)
