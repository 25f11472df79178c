"""The speed paths change no results: our seed-network forward against the tutorial's order,
channels_last against the default layout, compiled against eager; and what stays unimported."""
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import ROOT, random_images as _images
from digits import convpool
from digits.models import create_model, list_models

CL = torch.channels_last


def tutorial_forward(model, images):
    """The seed network exactly as the tutorial runs it: each Sequential is conv, ReLU, max-pool."""
    return model.fc(model.conv2(model.conv1(images)).flatten(1))


def _grads(model, logits):
    model.zero_grad()
    logits.logsumexp(1).sum().backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CL])
def test_seed_forward_is_the_tutorials_exactly(memory_format, monkeypatch):
    # torch's operators in both: the first block as one kernel is tests/test_convpool.py's
    monkeypatch.setattr(convpool, "_enabled", False)
    torch.manual_seed(0)
    model = create_model("seed").to(memory_format=memory_format)
    images = _images().contiguous(memory_format=memory_format)
    ours, theirs = model(images), tutorial_forward(model, images)
    assert torch.equal(ours, theirs)  # max-pool and ReLU commute: not close, identical
    assert all(torch.equal(a, b) for a, b in zip(_grads(model, model(images)),
                                                 _grads(model, tutorial_forward(model, images))))


@pytest.mark.parametrize("name", list_models())
def test_channels_last_gives_the_same_logits_and_gradients(name):
    torch.manual_seed(0)
    plain = create_model(name)
    fast = create_model(name)
    fast.load_state_dict(plain.state_dict())
    fast = fast.to(memory_format=CL)
    # no blank background: where max-pool inputs tie, rounding lets either layout pick another
    # winner, and the gradient goes elsewhere (the seed network's test above covers ties)
    images = _images(blank=False)

    def run(model, x):
        torch.manual_seed(1)  # the same dropout masks, for the models that have dropout
        return model(x)

    a, b = run(plain, images), run(fast, images.contiguous(memory_format=CL))
    # float sums in another order: 1e-4 is what the 6-layer `wide` network drifts (logits ~3)
    assert torch.allclose(a, b, atol=2e-4, rtol=1e-4)
    # gradients by relative norm (summation order again). A bias just before batch norm has a gradient
    # of zero in exact arithmetic: what either layout gives there is rounding (1e-7 to 1e-6, with the
    # thread count earlier tests left), so the absolute part scales with the model's largest gradient
    ga, gb = _grads(plain, run(plain, images)), _grads(fast, run(fast, images.contiguous(memory_format=CL)))
    scale = max(g.norm() for g in ga)
    for a_grad, b_grad in zip(ga, gb):
        assert (a_grad - b_grad).norm() <= 1e-2 * a_grad.norm() + 1e-5 * scale


@pytest.mark.slow
def test_compiled_model_gives_the_same_logits():
    # aot_eager: dynamo's capture and AOT autograd without a C++ compiler run (5 s here, inductor
    # 17 s); benchmarks/gpu.py checks inductor's logits on the GPU and records the difference
    torch.manual_seed(0)
    model = create_model("fast").eval()
    images = _images(8)
    compiled = torch.compile(model, backend="aot_eager")
    with torch.no_grad():
        assert torch.allclose(compiled(images), model(images), atol=1e-5)


@pytest.mark.slow
def test_training_imports_neither_dynamo_nor_plotting(tiny_mnist, tmp_path):
    """torch._dynamo costs 1.35 s of CPU to import here, matplotlib 0.5 s, tensorboard 0.2 s: a
    run that draws no figures and logs nothing must not import them."""
    code = ("import sys, json; from digits.cli import main; "
            f"main(['train', '--data-dir', {str(tiny_mnist)!r}, '--out', {str(tmp_path / 'r')!r}, '--epochs', '1', "
            "'--no-progress', '--no-tensorboard', '--recipe', 'fast']); "
            "print(json.dumps([m for m in ('torch._dynamo', 'matplotlib', 'tensorboard') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": ""}, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_fast_recipe_trains_with_adam_and_a_per_step_one_cycle(tiny_mnist, tmp_path):
    from digits.data import load_mnist
    from digits.recipes import recipe
    from digits.train import fit

    config = recipe("fast")
    assert (config.model.name, config.optim.optimizer, config.optim.scheduler) == ("fast", "adam", "onecycle_cos")
    config.optim.batch_size, config.optim.epochs, config.progress, config.tensorboard = 25, 1, False, False
    result = fit(config, load_mnist(tiny_mnist, val_size=50), tmp_path)
    assert result.iter_num == 10 and result.history.val_acc[-1] >= 0.8
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["scheduler"]["last_epoch"] == 10  # stepped after every step, not every epoch
    assert ckpt["optimizer"]["param_groups"][0]["lr"] < 1e-3  # annealed far below the peak, 0.01


def test_lean_optimizers_match_torch_and_share_its_state_layout():
    from digits.optimizers import SGD, Adam

    def train(make, schedule=None):
        torch.manual_seed(0)
        model = create_model("seed")
        optimizer = make(model.parameters())
        scheduler = schedule(optimizer) if schedule else None
        g = torch.Generator().manual_seed(1)
        for _ in range(6):
            images, labels = torch.randn(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()]), optimizer

    for sgd in (dict(lr=0.01, momentum=0.9, weight_decay=5e-4), dict(lr=0.2, momentum=0.9, nesterov=True),
                dict(lr=0.2, momentum=0.9, weight_decay=5e-4, nesterov=True)):
        a, theirs = train(lambda p: torch.optim.SGD(p, **sgd))
        b, ours = train(lambda p: SGD(p, **sgd))
        assert torch.equal(a, b), sgd
        for i, state in theirs.state_dict()["state"].items():  # the same momentum, the same layout
            assert torch.equal(state["momentum_buffer"], ours.state_dict()["state"][i]["momentum_buffer"])
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(torch.nn.Linear(2, 2).parameters(), nesterov=True)
    one_cycle = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.01, total_steps=6)  # noqa: E731
    a, theirs = train(lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.7, 0.9)), one_cycle)
    b, ours = train(lambda p: Adam(p, lr=0.01, betas=(0.7, 0.9)), one_cycle)
    assert torch.allclose(a, b, atol=1e-5)  # rounding: 1 of 42,940 weights differed by 1.3e-6
    theirs.load_state_dict(ours.state_dict())  # the same layout both ways
    ours.load_state_dict(theirs.state_dict())
    assert set(ours.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


@pytest.mark.parametrize("name, settings", [("Adam", dict(betas=(0.7, 0.9))),
                                            ("SGD", dict(momentum=0.9, weight_decay=5e-4, nesterov=True))])
def test_a_tensor_learning_rate_trains_as_a_float_one(name, settings):
    from digits import optimizers

    def train(lr):
        torch.manual_seed(0)
        model = create_model("fast")
        optimizer = getattr(optimizers, name)(model.parameters(), lr=lr, **settings)
        for i in range(4):
            optimizer.zero_grad()
            model(_images(8, i)).logsumexp(1).sum().backward()
            optimizer.step()
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.allclose(train(0.01), train(torch.tensor(0.01)), atol=1e-6)
