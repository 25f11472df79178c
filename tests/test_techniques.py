"""Training techniques inside fit(): label smoothing, per-step schedules, augmentation, EMA."""
import importlib

import pytest
import torch

from digits.checkpoint import load_checkpoint
from digits.config import AugmentConfig, DataConfig, OptimConfig, RunConfig
from digits.data import load_mnist
from digits.errors import DigitsError
from digits.train import fit

train_module = importlib.import_module("digits.train")
resume_module = importlib.import_module("digits.resume")


def _config(epochs=2, augment=None, **optim) -> RunConfig:
    return RunConfig(optim=OptimConfig(**{"epochs": epochs, "batch_size": 32, "lr": 0.02, **optim}),
                     augment=augment or AugmentConfig(), data=DataConfig(val_size=50), progress=False,
                     tensorboard=False)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_label_smoothing_reaches_the_loss(tiny_mnist, monkeypatch):
    seen = []
    real = train_module.F.cross_entropy

    def spy(logits, labels, **kw):
        seen.append(kw.get("label_smoothing", 0.0))
        return real(logits, labels, **kw)

    monkeypatch.setattr(train_module.F, "cross_entropy", spy)
    fit(_config(epochs=1, label_smoothing=0.1), load_mnist(tiny_mnist, val_size=50))
    assert seen and set(seen) == {0.1}


def test_scheduler_is_stepped_once_per_training_step(tiny_mnist, tmp_path):
    result = fit(_config(epochs=1, scheduler="onecycle"), load_mnist(tiny_mnist, val_size=50), tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["scheduler"]["last_epoch"] == result.iter_num == 8
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0)  # one-cycle ends at 0


def test_resume_is_exact_with_augmentation_onecycle_adam_and_ema(tiny_mnist, tmp_path, monkeypatch):
    import shutil

    data = load_mnist(tiny_mnist, val_size=50)
    config = _config(epochs=1, augment=AugmentConfig(rotate=10, shift=2, elastic=1), optimizer="adam", lr=3e-3,
                     scheduler="onecycle", ema_decay=0.9, clip_grad_norm=1.0)
    real_save = resume_module.save_checkpoint

    def save_and_keep_step_3(path, *args, **kwargs):
        written = real_save(path, *args, **kwargs)
        if kwargs["iter_num"] == 3:  # as if the process were killed mid-epoch here
            shutil.copy(written, tmp_path / "step3.pt")
        return written

    monkeypatch.setattr(resume_module, "save_checkpoint", save_and_keep_step_3)
    config.checkpoint_every = 3
    straight = fit(config, data, tmp_path / "a")
    resumed = fit(config, data, tmp_path / "b", resume=tmp_path / "step3.pt")
    assert resumed.iter_num == straight.iter_num == 8
    assert torch.allclose(_weights(straight.model), _weights(resumed.model), atol=1e-6)  # the EMAs
    assert resumed.history.loss == pytest.approx(straight.history.loss, abs=1e-5)


def test_ema_weights_are_evaluated_and_checkpointed(tiny_mnist, tmp_path):
    data = load_mnist(tiny_mnist, val_size=50)
    result = fit(_config(epochs=1, ema_decay=0.9), data, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    raw = torch.cat([v.flatten() for k, v in ckpt["train_model"].items() if "weight" in k or "bias" in k])
    loaded, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    assert torch.equal(_weights(loaded), _weights(result.model))  # "model" is the average
    assert not torch.equal(_weights(loaded), raw)
    assert ckpt["ema_updates"] == result.iter_num


def test_bad_technique_settings_fail_before_training(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=50)
    with pytest.raises(DigitsError, match="--label-smoothing"):
        fit(_config(label_smoothing=1.0), data)
    with pytest.raises(DigitsError, match="--zoom"):
        fit(_config(augment=AugmentConfig(zoom=2.0)), data)
