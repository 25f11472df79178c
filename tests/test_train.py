import pytest
import torch

from digits.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, RunConfig
from digits.data import load_mnist
from digits.errors import DigitsError
from digits.train import epoch_permutation, fit


def _config(**optim) -> RunConfig:
    return RunConfig(optim=OptimConfig(**{"epochs": 2, "batch_size": 32, "lr": 0.02, **optim}),
                     data=DataConfig(val_size=50), progress=False, tensorboard=False)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_training_learns_the_synthetic_task_and_is_repeatable(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=50)
    a = fit(_config(epochs=3), data)
    b = fit(_config(epochs=3), data)
    assert torch.equal(_weights(a.model), _weights(b.model))
    assert a.history.loss[-1] < a.history.loss[0] and a.history.val_acc[-1] >= 0.9
    assert len(a.history.loss) == a.iter_num == 3 * 8  # 250 images in batches of 32
    assert len(a.history.val_acc) == 3 and a.images_per_second > 0


def test_resume_continues_exactly(tiny_mnist, tmp_path):
    data = load_mnist(tiny_mnist, val_size=50)
    straight = fit(_config(), data, tmp_path / "a")
    fit(_config(epochs=1), data, tmp_path / "b")
    resumed = fit(_config(), data, tmp_path / "b", resume=tmp_path / "b" / "checkpoint.pt")
    assert torch.allclose(_weights(straight.model), _weights(resumed.model), atol=1e-6)
    assert resumed.history.loss == pytest.approx(straight.history.loss, abs=1e-5)
    assert resumed.iter_num == straight.iter_num


def test_resume_is_exact_for_a_model_with_dropout(tiny_mnist, tmp_path):
    """Dropout draws its masks from torch's global generator, which a resumed run reseeded with
    torch.manual_seed(seed): the masks of epoch 2 differed from an uninterrupted run's."""
    from digits.checkpoint import load_checkpoint

    data = load_mnist(tiny_mnist, val_size=50)
    config, first = _config(), _config(epochs=1)
    config.model.name = first.model.name = "seed-bn"
    straight = fit(config, data, tmp_path / "a")
    fit(first, data, tmp_path / "b")
    resumed = fit(config, data, tmp_path / "b", resume=tmp_path / "b" / "checkpoint.pt")
    assert torch.equal(_weights(straight.model), _weights(resumed.model))
    assert resumed.history.loss == straight.history.loss
    model, _ = load_checkpoint(tmp_path / "b" / "checkpoint.pt")  # still a checkpoint predict and serve load
    assert torch.equal(_weights(model), _weights(resumed.model))


def test_resume_with_another_lr_continues_the_schedule_at_that_rate(tiny_mnist, tmp_path):
    from digits.checkpoint import read_checkpoint

    data = load_mnist(tiny_mnist, val_size=50)
    fit(_config(epochs=1, scheduler="step"), data, tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoint.pt"
    same = fit(_config(scheduler="step"), data, tmp_path / "same", resume=ckpt)
    lower = fit(_config(scheduler="step", lr=0.005), data, tmp_path / "lower", resume=ckpt)
    groups = [read_checkpoint(tmp_path / d / "checkpoint.pt")["optimizer"]["param_groups"][0]
              for d in ("same", "lower")]
    assert groups[0]["initial_lr"] == 0.02 and groups[1]["initial_lr"] == 0.005
    assert groups[0]["lr"] > 0.01 and groups[1]["lr"] == pytest.approx(groups[0]["lr"] / 4)
    assert not torch.allclose(_weights(same.model), _weights(lower.model))


def _keep_checkpoint_at(monkeypatch, step: int, copy) -> None:
    """Copy the checkpoint written at iteration ``step`` to ``copy``: as if the process were killed
    right after writing it."""
    import importlib
    import shutil

    resume_module = importlib.import_module("digits.resume")
    real_save = resume_module.save_checkpoint

    def save_and_keep(path, *args, **kwargs):
        written = real_save(path, *args, **kwargs)
        if kwargs["iter_num"] == step:
            shutil.copy(written, copy)
        return written

    monkeypatch.setattr(resume_module, "save_checkpoint", save_and_keep)


def test_resume_from_mid_epoch_checkpoint(tiny_mnist, tmp_path, monkeypatch):
    data = load_mnist(tiny_mnist, val_size=50)
    straight = fit(_config(), data, tmp_path / "a")
    _keep_checkpoint_at(monkeypatch, 10, tmp_path / "step10.pt")
    config = _config()
    config.checkpoint_every = 5
    fit(config, data, tmp_path / "b")
    ckpt = torch.load(tmp_path / "step10.pt", weights_only=True)
    assert (ckpt["progress"]["epoch"], ckpt["progress"]["step"]) == (1, 2)
    assert len(ckpt["progress"]["history"]["loss"]) == 10
    resumed = fit(_config(), data, tmp_path / "c", resume=tmp_path / "step10.pt")
    assert torch.allclose(_weights(straight.model), _weights(resumed.model), atol=1e-6)
    assert resumed.history.loss == pytest.approx(straight.history.loss, abs=1e-5)


def test_a_resumed_run_reports_the_whole_run_s_time_steps_and_images(tiny_mnist, tmp_path, monkeypatch):
    """Interrupted at step 10 and resumed, a run reported this session's seconds (the second epoch's last
    6 steps) for all 16 steps, and images/s over this session's images only; its epoch_seconds, which
    the checkpoint carried, added up to more than its train_seconds. Now the run's time, images and
    steps are the whole run's: the checkpoint carries them, and the epoch it resumed in counts the
    time before the interruption too."""
    from digits.checkpoint import read_checkpoint

    data = load_mnist(tiny_mnist, val_size=50)  # 250 training images: 8 steps of 32 per epoch
    _keep_checkpoint_at(monkeypatch, 10, tmp_path / "step10.pt")
    config = _config()
    config.checkpoint_every = 5
    straight = fit(config, data, tmp_path / "a")
    assert straight.resumed_at is None and straight.session_seconds == straight.train_seconds > 0
    assert straight.train_seconds == pytest.approx(sum(straight.history.epoch_seconds))
    saved = read_checkpoint(tmp_path / "step10.pt")["progress"]
    assert saved["images"] == 250 + 2 * 32 and 0 < saved["step_seconds"] <= saved["seconds"]
    assert saved["seconds"] > sum(saved["history"]["epoch_seconds"])  # the 2 steps of epoch 2 too
    resumed = fit(_config(), data, tmp_path / "b", resume=tmp_path / "step10.pt")
    assert resumed.iter_num == 16 and resumed.resumed_at == 10
    assert resumed.train_seconds == pytest.approx(sum(resumed.history.epoch_seconds))
    assert resumed.train_seconds == pytest.approx(saved["seconds"] + resumed.session_seconds)
    assert resumed.history.epoch_seconds[1] > resumed.session_seconds  # epoch 2 began before the resume
    end = read_checkpoint(tmp_path / "b" / "checkpoint.pt")["progress"]
    assert end["images"] == 2 * 250 and end["seconds"] == pytest.approx(resumed.train_seconds)
    assert resumed.images_per_second == pytest.approx(500 / end["step_seconds"])


def test_mid_epoch_resume_records_the_accuracy_windows_of_an_uninterrupted_run(tiny_mnist, tmp_path, monkeypatch):
    """Training accuracy is recorded per 10 batches of an epoch: resumed at step 15, the window that ends
    at step 20 held only batches 16-20 (its first five were in the killed process)."""
    data = load_mnist(tiny_mnist, val_size=50)
    straight = fit(_config(epochs=1, batch_size=8), data, tmp_path / "a")  # 32 steps: windows end at 10, 20, 30
    _keep_checkpoint_at(monkeypatch, 15, tmp_path / "step15.pt")
    config = _config(epochs=1, batch_size=8)
    config.checkpoint_every = 15
    fit(config, data, tmp_path / "b")
    resumed = fit(_config(epochs=1, batch_size=8), data, tmp_path / "c", resume=tmp_path / "step15.pt")
    assert [step for step, _ in straight.history.train_acc_10] == [10, 20, 30]
    assert resumed.history.train_acc_10 == straight.history.train_acc_10


def test_resume_refuses_epochs_below_the_checkpoints_and_finishes_one_at_its_end(tiny_mnist, tmp_path, monkeypatch):
    """--epochs counts the whole run: resuming a 2-epoch checkpoint with --epochs 1 (or 2) trained
    nothing, exited 0 and rewrote config.json with epochs 1 beside the 2-epoch run's metrics. A
    checkpoint written mid-epoch has that epoch left: --epochs one above the completed ones finishes it."""
    from digits.checkpoint import read_checkpoint
    from digits.train import check_startable

    data = load_mnist(tiny_mnist, val_size=50)
    _keep_checkpoint_at(monkeypatch, 10, tmp_path / "step10.pt")
    config = _config()
    config.checkpoint_every = 5
    fit(config, data, tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoint.pt"
    expected = (f"^--resume {ckpt}: the checkpoint has completed 2 epochs, more than --epochs 1; --epochs counts "
                r"the whole run: give --epochs 2 to finish that run \(its test and report\), or more to extend it$")
    with pytest.raises(DigitsError, match=expected) as refused:
        check_startable(_config(epochs=1), model=False, resume=ckpt)
    assert "\n" not in str(refused.value)
    with pytest.raises(DigitsError, match=expected):
        fit(_config(epochs=1), data, tmp_path / "b", resume=ckpt)
    assert not (tmp_path / "b").exists()
    # the same count finishes a run stopped after its last checkpoint (before its test and report); a
    # folder other than the checkpoint's gets it too (it had none: its results belonged to no checkpoint)
    assert fit(_config(epochs=2), data, tmp_path / "c", resume=ckpt).iter_num == 16
    again = read_checkpoint(tmp_path / "c" / "checkpoint.pt")
    original = read_checkpoint(ckpt)["model"]
    assert again["iter_num"] == 16 and all(torch.equal(again["model"][k], v) for k, v in original.items())
    mid = tmp_path / "step10.pt"
    with pytest.raises(DigitsError, match=r"has completed 1 epoch and 2 steps of epoch 2, more than --epochs 1; "
                                          r".* give --epochs 2 or more to finish epoch 2$"):
        check_startable(_config(epochs=1), model=False, resume=mid)
    check_startable(_config(epochs=2), model=False, resume=mid)  # finishes the epoch the checkpoint is in
    assert fit(_config(epochs=3), data, resume=ckpt).iter_num == 24


def test_resume_rejects_another_model(tiny_mnist, tmp_path):
    from digits.checkpoint import describe, save_checkpoint
    from digits.models import create_model

    path = save_checkpoint(tmp_path / "x.pt", create_model("seed"), describe("other", {}))
    with pytest.raises(DigitsError, match="is a 'other' model"):
        fit(_config(), load_mnist(tiny_mnist, val_size=50), resume=path)


def test_check_startable_reads_the_resume_checkpoint_without_data(tiny_mnist, tmp_path):
    """What fit would refuse only after loading the data and making the run folder, refused first."""
    from digits.train import check_startable

    config = _config(epochs=1)
    config.model.name, config.model.kwargs = "fast", {"c1": 4, "c2": 8, "hidden": 16}
    fit(config, load_mnist(tiny_mnist, val_size=50), tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoint.pt"
    config.optim.epochs = 2  # the run's own settings, one epoch longer: resumable
    check_startable(config, resume=ckpt)
    wider = config.copy()
    wider.model.kwargs["c1"] = 6
    for model in (True, False):  # named from the recorded arguments, with or without the network
        with pytest.raises(DigitsError, match=r"--resume .*checkpoint.pt: the run was trained with --model-arg c1=4, not 6"):
            check_startable(wider, model=model, resume=ckpt)
    older = _without_model_arguments(ckpt, tmp_path / "older.pt")  # e.g. another writer's checkpoint
    with pytest.raises(DigitsError, match=r"--resume .*older.pt: cannot continue from it \(size mismatch"):
        check_startable(wider, resume=older)
    check_startable(wider, model=False, resume=older)  # without building the network, weights go unchecked
    other = _config()
    with pytest.raises(DigitsError, match="the checkpoint is a 'fast' model, not 'seed'"):
        check_startable(other, resume=ckpt)
    with pytest.raises(DigitsError, match="no such checkpoint file"):
        check_startable(config, resume=tmp_path / "none.pt")


def _without_model_arguments(path, out):
    """A copy of checkpoint ``path`` that records no model arguments in its configuration."""
    from digits.checkpoint import digest, read_checkpoint

    ckpt = read_checkpoint(path)
    del ckpt["meta"]["config"]["model"], ckpt["sha256"]
    ckpt["sha256"] = digest(ckpt)
    torch.save(ckpt, out)
    return out


def test_resume_refuses_other_optimizer_settings_but_lets_lr_and_epochs_change(tiny_mnist, tmp_path):
    """Resuming an sgd run with --optimizer adam --weight-decay 0 failed at the first step with
    KeyError 'exp_avg'; another --weight-decay or --momentum was silently replaced by the saved one."""
    from digits.train import check_startable

    data = load_mnist(tiny_mnist, val_size=50)
    fit(_config(epochs=1), data, tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoint.pt"
    for optim, message in (({"optimizer": "adam", "weight_decay": 0.0},
                            "--optimizer 'sgd', not 'adam', and --weight-decay 0.0005, not 0.0"),
                           ({"weight_decay": 0.1}, "--weight-decay 0.0005, not 0.1"),
                           ({"momentum": 0.5}, "--momentum 0.9, not 0.5"),
                           ({"nesterov": True}, "--nesterov off, not on"),
                           ({"batch_size": 16}, "--batch-size 32, not 16")):
        expected = f"^--resume {ckpt}: the run was trained with {message}; resume with its settings"
        with pytest.raises(DigitsError, match=expected):
            check_startable(_config(**optim), model=False, resume=ckpt)  # before any folder is made
        with pytest.raises(DigitsError, match=expected):
            fit(_config(**optim), data, resume=ckpt)
    assert fit(_config(lr=0.01, epochs=3), data, resume=ckpt).iter_num == 24


def _trained(tiny_mnist, tmp_path, config: RunConfig):
    """One epoch of ``config`` in tmp_path/a: (its checkpoint, the data it trained on)."""
    data = load_mnist(tiny_mnist, val_size=config.data.val_size, split_seed=config.data.split_seed)
    fit(config, data, tmp_path / "a")
    return tmp_path / "a" / "checkpoint.pt", data


def _refused(config: RunConfig, data, ckpt, message: str, out) -> None:
    """Refused in one line, by check_startable (before the CLI makes a folder) and by fit, which
    makes no folder either."""
    from digits.train import check_startable

    expected = f"^--resume {ckpt}: the run was trained with {message}; resume with its settings"
    with pytest.raises(DigitsError, match=expected) as refused:
        check_startable(config, model=False, resume=ckpt)
    assert "\n" not in str(refused.value)
    with pytest.raises(DigitsError, match=expected):
        fit(config, data, out, resume=ckpt)
    assert not out.exists()


def test_resume_refuses_another_validation_split(tiny_mnist, tmp_path):
    """Resumed with another --val-size or --split-seed, the run went on training on images now in its
    validation split (and `evaluate --split val` then scored images the model had trained on), while
    config.json recorded the new split as the run's."""
    ckpt, data = _trained(tiny_mnist, tmp_path, _config(epochs=1))
    for data_config, message in (({"val_size": 60}, "--val-size 50, not 60"),
                                 ({"split_seed": 5}, "--split-seed 0, not 5"),
                                 ({"val_size": 60, "split_seed": 5},
                                  "--val-size 50, not 60, and --split-seed 0, not 5")):
        config = _config(epochs=2)
        config.data = DataConfig(**{"val_size": 50, **data_config})
        other = load_mnist(tiny_mnist, val_size=config.data.val_size, split_seed=config.data.split_seed)
        _refused(config, other, ckpt, message, tmp_path / "b")


def test_resume_refuses_another_seed(tiny_mnist, tmp_path):
    """The seed orders every epoch's shuffle and draws the augmentation: another --seed was recorded in
    config.json while the resumed run mixed two seeds' batches (and restored the first seed's random state)."""
    ckpt, data = _trained(tiny_mnist, tmp_path, _config(epochs=1))
    config = _config(epochs=2)
    config.seed = 7
    _refused(config, data, ckpt, "--seed 0, not 7", tmp_path / "b")


def test_resume_refuses_other_augmentation(tiny_mnist, tmp_path):
    """Another --rotate (or any augmentation setting), turning it on or off, was accepted and recorded
    in config.json as though the whole run had trained with it."""
    config = _config(epochs=1)
    config.augment.rotate = 5.0
    ckpt, data = _trained(tiny_mnist, tmp_path, config)
    for augment, message in (({"rotate": 0.0}, "--rotate 5.0, not 0.0"),
                             ({"rotate": 10.0}, "--rotate 5.0, not 10.0"),
                             ({"zoom": 0.1}, "--zoom 0.0, not 0.1"),
                             ({"elastic": 2.0, "elastic_sigma": 3.0},
                              "--elastic 0.0, not 2.0, and --elastic-sigma 4.0, not 3.0")):
        other = _config(epochs=2)
        other.augment = AugmentConfig(**{"rotate": 5.0, **augment})
        _refused(other, data, ckpt, message, tmp_path / "b")
    seeded = _config(epochs=2)  # every difference is named, whatever its family
    seeded.seed, seeded.augment.rotate = 7, 10.0
    _refused(seeded, data, ckpt, "--seed 0, not 7, and --rotate 5.0, not 10.0", tmp_path / "b")


def test_resume_lets_the_epochs_lr_and_how_it_runs_change(tiny_mnist, tmp_path):
    """What does not change what is trained on, or in what order, may differ: --epochs (to extend a
    run), --lr, and the run's machinery (device, threads, progress, TensorBoard, checkpoints, the data
    folder, evaluation batches, memory format). With the same --lr, it ends as the uninterrupted run."""
    data = load_mnist(tiny_mnist, val_size=50)
    straight = fit(_config(), data)
    first = _config(epochs=1)
    first.data.data_dir = str(tiny_mnist)
    fit(first, data, tmp_path / "a")
    resumed = _config()
    resumed.data.data_dir, resumed.data.download = str(tmp_path / "elsewhere"), False
    resumed.device, resumed.threads, resumed.progress, resumed.tensorboard = "cpu", 1, True, True
    resumed.checkpoint_every, resumed.test_batch_size, resumed.channels_last = 3, 7, False
    threads = torch.get_num_threads()
    try:
        result = fit(resumed, data, tmp_path / "b", resume=tmp_path / "a" / "checkpoint.pt")
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide: leave the other tests theirs
    assert result.iter_num == straight.iter_num == 16
    assert torch.allclose(_weights(straight.model), _weights(result.model), atol=1e-5)
    assert result.history.val_acc == straight.history.val_acc


def test_divergence_stops_with_a_clear_message(tiny_mnist):
    with pytest.raises(DigitsError, match="training diverged"):
        fit(_config(lr=1e6), load_mnist(tiny_mnist, val_size=50))


def test_epoch_permutation_depends_on_seed_and_epoch_only():
    assert torch.equal(epoch_permutation(100, 1, 2), epoch_permutation(100, 1, 2))
    assert not torch.equal(epoch_permutation(100, 1, 2), epoch_permutation(100, 1, 3))
    assert not torch.equal(epoch_permutation(100, 1, 2), epoch_permutation(100, 2, 2))


def test_any_integer_seed_trains_and_ordinary_seeds_keep_their_streams(tiny_mnist):
    """A 13-digit --seed (a timestamp) raised "Overflow when unpacking long long" at the first
    augmented step: the derived keys left torch's 64-bit range. Seeds torch took keep their stream."""
    def perm(key):
        return torch.randperm(100, generator=torch.Generator().manual_seed(key))

    assert torch.equal(epoch_permutation(100, 3, 1), perm(3 * 100_003 + 1))
    assert torch.equal(epoch_permutation(100, -2, 0), perm(-2 * 100_003))  # torch wraps negatives itself
    assert torch.equal(epoch_permutation(100, 2**64 + 3, 1), perm(3 * 100_003 + 1))
    data = load_mnist(tiny_mnist, val_size=50)
    for seed in (1_732_700_000_000, -(2**70)):
        config = _config(epochs=1)
        config.seed, config.augment.rotate, config.augment.elastic = seed, 10.0, 2.0
        assert fit(config, data).iter_num == 8


def test_an_embedding_model_is_refused_with_a_clear_message(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=50)
    config = _config()
    config.model.name = "protonet"
    with pytest.raises(DigitsError, match="'protonet' is an embedding for `digits fewshot`, not a classifier"):
        fit(config, data)


def test_an_embedding_checkpoint_is_refused_by_evaluate_and_predict(tmp_path, capsys):
    from digits.checkpoint import describe, save_checkpoint
    from digits.cli import main
    from digits.models import create_model

    path = save_checkpoint(tmp_path / "embedding.pt", create_model("protonet"), describe("protonet", {}))
    for command in (["evaluate", str(path)], ["predict", str(path), str(tmp_path)],
                    ["export", str(path), "--out", str(tmp_path / "embedding.onnx")]):
        assert main(command) == 2
        assert "'protonet' is an embedding" in capsys.readouterr().err
    assert not (tmp_path / "embedding.onnx").exists()


def test_an_onnx_model_without_ten_class_scores_is_refused(tmp_path, capsys):
    from digits.cli import main
    from digits.export import Normalized, _export_onnx
    from digits.models import create_model

    onnx = _export_onnx(Normalized(create_model("protonet")).eval(), torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
                        {"model_name": "protonet"})
    (tmp_path / "embedding.onnx").write_bytes(onnx)
    assert main(["predict", str(tmp_path / "embedding.onnx"), str(tmp_path)]) == 2
    assert "expected 10 class scores per image" in capsys.readouterr().err



def test_the_seed_and_fast_recipes_hold_their_documented_settings():
    from digits.cli import build_parser, config_from_args
    from digits.recipes import recipe

    def seed_settings(config):
        o = config.optim
        return (config.model.name, o.optimizer, o.lr, o.momentum, o.nesterov, o.weight_decay, o.scheduler,
                o.step_size, o.gamma, o.batch_size, o.epochs, o.label_smoothing, config.test_batch_size)

    tutorial = ("seed", "sgd", 0.01, 0.9, False, 5e-4, "step", 6, 0.99, 256, 2, 0.0, 1024)
    assert seed_settings(RunConfig()) == seed_settings(recipe("seed")) == tutorial
    assert seed_settings(config_from_args(build_parser().parse_args(["run"]))) == tutorial
    fast = recipe("fast")
    o = fast.optim
    assert (fast.model.name, fast.model.kwargs) == ("fast", {"c1": 8, "c2": 24, "hidden": 96})
    assert (o.optimizer, o.lr, o.beta1, o.beta2, o.weight_decay, o.scheduler, o.warmup_epochs, o.epochs,
            o.batch_size) == ("adam", 0.01, 0.7, 0.9, 0.0, "onecycle_cos", 0.5, 2, 256)


def test_a_cuda_index_beyond_the_machine_s_gpus_is_refused(monkeypatch):
    from digits.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DigitsError, match=r"^--device cuda:7: this machine has 2 GPU\(s\), cuda:0 to cuda:1$"):
        resolve_device("cuda:7")
    assert resolve_device("cuda:1") == torch.device("cuda", 1) and resolve_device("cuda") == torch.device("cuda")


def test_the_kernels_are_built_before_training_is_timed(tiny_mnist, monkeypatch):
    """On a machine's first run, convpool.c was compiled inside the first training step, and its
    compilation counted in epoch_seconds, train_seconds and images per second."""
    import importlib
    from types import SimpleNamespace

    from digits import convpool

    train_module, clock, built = importlib.import_module("digits.train"), [0.0], []
    library = convpool.library()

    def slow_build():  # a compilation that takes 100 s of a clock that stands still otherwise
        clock[0] += 100.0
        built.append(True)
        return library

    monkeypatch.setattr(train_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(convpool, "_build", slow_build)
    monkeypatch.setattr(convpool, "_tried", False)
    data = load_mnist(tiny_mnist, val_size=50)
    result = fit(_config(epochs=1), data)
    assert built and result.train_seconds == 0.0 and result.history.epoch_seconds == [0.0]
    monkeypatch.setattr(convpool, "_tried", False)
    previous = convpool.set_enabled(False)  # kernels off: nothing is built
    try:
        fit(_config(epochs=1), data)
    finally:
        convpool.set_enabled(previous)
    assert len(built) == 1



def test_resume_refuses_other_model_arguments_even_where_the_weights_fit(tiny_mnist, tmp_path):
    """--model-arg dropout=0.5 on a dropout-0.2 run loaded the same weights and was recorded in
    config.json as the whole run's; a missing or added argument is named too."""
    config = _config(epochs=1)
    config.model = ModelConfig("seed-bn", {"dropout": 0.2})
    ckpt, data = _trained(tiny_mnist, tmp_path, config)
    for kwargs, message in (({"dropout": 0.5}, "--model-arg dropout=0.2, not 0.5"),
                            ({}, r"--model-arg dropout=0\.2, not \(not given\)")):
        other = _config(epochs=2)
        other.model = ModelConfig("seed-bn", kwargs)
        _refused(other, data, ckpt, message, tmp_path / "b")
    same = _config(epochs=2)
    same.model = ModelConfig("seed-bn", {"dropout": 0.2})
    assert fit(same, data, tmp_path / "c", resume=ckpt).iter_num > 0
