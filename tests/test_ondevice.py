"""The on-device trainer and benchmarks/gpu.py, run on the CPU: the code a GPU session will run."""
import json
import sys

import pytest
import torch

from conftest import benchmark_script
from digits.data import load_mnist
from digits.ondevice import DeviceTrainer, train_on_device
from digits.recipes import recipe


def _gpu_script():
    return benchmark_script("gpu")


def _assert_same_weights(a, b, atol):
    """Two trained models' weights and buffers equal within ``atol``, named where they differ."""
    for name, value in a.state_dict().items():
        assert torch.allclose(value.float(), b.state_dict()[name].float(), atol=atol), name


def test_onecycle_cos_is_torchs_one_cycle():
    from digits.config import OptimConfig
    from digits.optim import lr_factor

    for total in (7, 50, 430):
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=total, pct_start=0.25,
                                                        cycle_momentum=False)
        expected = []
        for _ in range(total):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        cfg = OptimConfig(lr=0.01, scheduler="onecycle_cos", epochs=1)
        ours = [0.01 * lr_factor(k, cfg, total) for k in range(total)]
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_on_device_training_learns_and_repeats(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=0)
    config = recipe("fast")
    config.optim.batch_size, config.test_batch_size = 50, 64
    a = train_on_device(config, data, "eager")
    b = train_on_device(config, data, "graph")  # no CUDA here: the same eager steps
    assert a.steps == 2 * 6 and not b.graphed
    assert a.test_accuracy >= 0.9 and a.test_accuracy == b.test_accuracy and a.final_loss == b.final_loss


def test_on_device_training_follows_the_memory_format(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=0)
    config = recipe("fast")
    config.optim.batch_size, config.test_batch_size = 50, 64
    nhwc = train_on_device(config, data, "eager")
    config.channels_last = False
    nchw = train_on_device(config, data, "eager")
    assert nchw.model.conv2.weight.is_contiguous() and not nhwc.model.conv2.weight.is_contiguous()
    # the same training in another layout: float rounding apart (Adam lifts it to ~1e-4 in fc1,
    # whose gradients are tiny here); a mixed-up layout would train other weights altogether
    _assert_same_weights(nhwc.model, nchw.model, 1e-3)


def test_on_device_training_with_torchs_fused_adam_trains_as_the_foreach_one(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=0)
    config = recipe("fast")
    config.optim.batch_size, config.test_batch_size = 50, 64
    foreach, fused = train_on_device(config, data, "eager"), train_on_device(config, data, "eager", fused=True)
    assert abs(foreach.final_loss - fused.final_loss) < 1e-4 and foreach.test_accuracy == fused.test_accuracy
    _assert_same_weights(foreach.model, fused.model, 1e-4)
    config = recipe("seed")  # SGD
    with pytest.raises(ValueError, match="fused=True is for Adam"):
        train_on_device(config, data, "eager", fused=True)


@pytest.mark.parametrize("recipe_name,fused", [("fast", False), ("fast", True), ("seed", False), ("best", False)])
def test_a_reused_trainer_trains_each_seed_as_a_fresh_one_does(tiny_mnist, recipe_name, fused):
    # Adam (digits' and torch's fused), digits' SGD with momentum and with Nesterov's (best), dropout,
    # batch norm and augmentation: every run of one trainer must start from scratch
    data = load_mnist(tiny_mnist, val_size=0)
    config = recipe(recipe_name)
    config.optim.batch_size, config.optim.epochs, config.test_batch_size = 50, 2, 64
    if recipe_name == "best":
        config.model.kwargs["width"] = 4
    trainer = DeviceTrainer(config, data, "graph", fused=fused)
    runs = [trainer.run(seed) for seed in (0, 1, 0)]
    weights = [{k: v.clone() for k, v in trainer.run(seed).model.state_dict().items()} for seed in (1, 0)]
    for seed, run, trained in ((1, runs[1], weights[0]), (0, runs[2], weights[1])):
        config.seed = seed
        fresh = train_on_device(config, data, "graph", fused=fused)
        assert (run.final_loss, run.test_accuracy, run.steps) == (fresh.final_loss, fresh.test_accuracy, fresh.steps)
        for name, value in fresh.model.state_dict().items():
            assert torch.equal(trained[name], value), (seed, name)
    assert runs[0].final_loss == runs[2].final_loss and runs[0].final_loss != runs[1].final_loss


def test_on_device_training_takes_any_integer_seed_as_digits_train_does(tiny_mnist):
    # digits.data.seed_value: a seed past torch's range (10**30) trains as its value modulo 2**64,
    # a negative one as torch has always wrapped it; torch.manual_seed(10**30) itself raises
    data = load_mnist(tiny_mnist, val_size=0)
    config = recipe("seed")  # with augmentation: the shuffle and the distortions both read the seed
    config.optim.batch_size, config.optim.epochs, config.test_batch_size = 50, 1, 64
    config.augment.rotate = 10.0
    huge, negative = 10**30, -3
    runs = {}
    for seed in (huge, huge % 2**64, negative, 2**64 + negative):
        config.seed = seed
        runs[seed] = train_on_device(config, data, "eager")
    trainer = DeviceTrainer(config, data, "eager")  # a reused trainer seeds each run again
    again = trainer.run(huge)
    assert again.final_loss == runs[huge].final_loss == runs[huge % 2**64].final_loss
    assert runs[negative].final_loss == runs[2**64 + negative].final_loss != runs[huge].final_loss
    _assert_same_weights(runs[huge].model, runs[huge % 2**64].model, 0)
    _assert_same_weights(runs[negative].model, runs[2**64 + negative].model, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graph_replay_on_a_gpu_trains_as_eager_steps_do(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=0).to("cuda")
    config = recipe("fast")
    config.optim.batch_size, config.test_batch_size = 50, 64
    eager, graphed = train_on_device(config, data, "eager"), train_on_device(config, data, "graph")
    assert graphed.graphed and not eager.graphed
    assert abs(eager.final_loss - graphed.final_loss) < 1e-3 and abs(eager.test_accuracy - graphed.test_accuracy) <= 0.02
    fused = train_on_device(config, data, "graph", fused=True)  # torch's fused Adam, captured
    assert fused.graphed
    for other in (graphed, fused):  # the same weights, replayed or not, fused or not
        _assert_same_weights(eager.model, other.model, 1e-3)
    for use_fused, fresh in ((True, fused), (False, graphed)):  # torch's fused Adam, then digits' Adam
        trainer = DeviceTrainer(config, data, "graph", fused=use_fused)  # captured in its first run,
        trainer.run(1)                                                   # replayed from the first step
        graph = trainer.graph                                            # in the next
        again = trainer.run(config.seed)
        assert graph is not None and trainer.graph is graph and abs(again.final_loss - fresh.final_loss) < 1e-3
        _assert_same_weights(fresh.model, again.model, 1e-3)


def test_on_device_training_follows_label_smoothing_and_refuses_ema(tiny_mnist):
    data = load_mnist(tiny_mnist, val_size=0)
    config = recipe("fast")
    config.optim.batch_size, config.test_batch_size = 50, 64
    plain = train_on_device(config, data, "eager")
    config.optim.label_smoothing = 0.1
    smoothed = train_on_device(config, data, "eager")
    assert smoothed.final_loss != plain.final_loss
    config.optim.ema_decay = 0.99
    with pytest.raises(ValueError, match="EMA"):
        train_on_device(config, data, "eager")


def test_the_wide_recipe_is_the_setting_the_gpu_search_chose_and_measured():
    # gpu.py's search candidates override the `wide` recipe as it was before the search; the one
    # chosen (measured on test: BENCHMARKS.md) must be what `--recipe wide` now trains
    from dataclasses import asdict
    gpu = _gpu_script()
    chosen = [c for c in gpu.SEARCHES["0.995-1s"][3] if c[1].get("label_smoothing") == 0.1]
    assert len(chosen) == 1 and chosen[0][2] is True  # bf16
    assert asdict(gpu.configure("wide", chosen[0][1])) == asdict(recipe("wide"))
    wide = recipe("wide")  # and what BENCHMARKS.md and README.md say it is
    o = wide.optim
    assert (wide.model.name, wide.model.kwargs, wide.channels_last) == ("wide", {"width": 32}, True)
    assert (o.optimizer, o.lr, o.beta1, o.beta2, o.weight_decay, o.scheduler, o.warmup_epochs, o.epochs,
            o.batch_size, o.label_smoothing, o.ema_decay, o.clip_grad_norm) == (
        "adam", 0.004, 0.9, 0.99, 0.0, "onecycle_cos", 0.75, 3, 512, 0.1, 0.0, 0.0)
    assert (wide.augment.rotate, wide.augment.zoom, wide.augment.shift, wide.augment.shear,
            wide.augment.elastic) == (0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="no setting 'colour'"):
        gpu.configure("wide", {"colour": 1})
    with pytest.raises(ValueError, match="no augment setting 'rotat'"):
        gpu.configure("wide", {"augment": {"rotat": 3}})


@pytest.mark.slow
def test_gpu_benchmark_scores_the_best_recipe_as_an_ensemble():
    gpu = _gpu_script()
    data = gpu.tiny_data(torch.device("cpu"))
    row = gpu.measure("best", "best", {}, "eager", True, 2, data, tiny=True)
    assert len(row["test_accuracy"]) == 2 and row["steps"] == 4 and 0 <= row["ensemble_tta_test_accuracy"] <= 1
    # an ensemble of one trained model scores what that model scored (fp32 both ways)
    row = gpu.measure("best", "best", {}, "eager", False, 1, data, tiny=True)
    assert row["ensemble_test_accuracy"] == row["test_accuracy"][0]


def test_every_gpu_benchmark_setting_builds_its_network():
    # a typo in a setting would cost a lent GPU session its run; here it costs a second
    from digits.models import create_model
    gpu = _gpu_script()
    settings = [(r, o) for r, o, *_ in gpu.GROUPS.values()]
    settings += [(r, o) for *_, candidates in gpu.SEARCHES.values() for r, o, _ in candidates]
    settings += [(r, o) for members in gpu.ENSEMBLE_GROUPS.values() for r, o, _ in members]
    assert len(settings) > 30 and set(gpu.ORDER) >= set(gpu.GROUPS) | set(gpu.SEARCHES) | set(gpu.ENSEMBLE_GROUPS)
    for recipe_name, overrides in settings:
        c = gpu.configure(recipe_name, overrides)
        create_model(c.model.name, **c.model.kwargs)
        if overrides.get("fused"):
            assert c.optim.optimizer == "adam" and not c.optim.weight_decay  # what fused=True accepts


@pytest.mark.slow
def test_gpu_benchmark_scores_an_ensemble_of_different_networks(monkeypatch):
    gpu = _gpu_script()
    members = gpu.ENSEMBLE_GROUPS["best-diverse"]
    assert {gpu.configure(r, o).model.name for r, o, _ in members} == {"bn-cnn", "resnet", "inception"}
    assert gpu.configure("best", members[3][1]).model.kwargs == {"width": 32, "depth": 2}
    assert gpu.configure("best", members[3][1]).optim == recipe("best").optim  # only the network differs
    data = gpu.tiny_data(torch.device("cpu"))
    scored = []  # which split each score read, and with how many models

    def spy(models, images, labels, **kw):
        scored.append(({id(data.val.images): "val", id(data.test.images): "test"}[id(images)], len(models),
                       kw.get("tta", False)))
        return real(models, images, labels, **kw)
    real = gpu.evaluate_ensemble
    monkeypatch.setattr(gpu, "evaluate_ensemble", spy)
    saves = []
    row = gpu.measure_ensemble("best-diverse", data, True, {"group": "best-diverse"}, lambda: saves.append(1))
    assert [m["seed"] for m in row["members"]] == [0, 1] and row["members"][0]["model"] == "bn-cnn"
    assert scored == [("test", 1, False), ("val", 1, False)] * 2 + [
        ("val", 2, False), ("val", 2, True), ("test", 2, False), ("test", 2, True)]
    assert len(saves) == 3 and row["ensemble_size"] == 2  # saved after each member and at the end
    for key in ("ensemble_validation_accuracy", "ensemble_tta_validation_accuracy", "ensemble_test_accuracy",
                "ensemble_tta_test_accuracy"):
        assert 0 <= row[key] <= 1
    # one member: the ensemble scores what the member scored, on each split (both fp32)
    monkeypatch.setitem(gpu.ENSEMBLE_GROUPS, "one", members[:1])
    row = gpu.measure_ensemble("one", data, True, {})
    assert row["ensemble_validation_accuracy"] == row["members"][0]["validation_accuracy"]
    assert row["ensemble_test_accuracy"] == row["members"][0]["test_accuracy"]
    # a failing member is recorded and the others go on; none starts once the budget is spent
    monkeypatch.setitem(gpu.ENSEMBLE_GROUPS, "bad", [("best", {"network": ["no-such-net", {}]}, 0)] + members[:1])
    row = gpu.measure_ensemble("bad", data, True, {})
    assert "no-such-net" in row["members"][0]["error"] and row["ensemble_size"] == 1
    budget = iter([1.0, 0.0])
    row = gpu.measure_ensemble("best-diverse", data, True, {}, budget_left=lambda: next(budget))
    assert len(row["members"]) == 1 and row["skipped_members"] == 1


def test_gpu_benchmark_reuses_one_trainer_for_all_seeds_when_asked(monkeypatch):
    gpu = _gpu_script()
    data = gpu.tiny_data(torch.device("cpu"))
    fresh = gpu.measure("fast16-fused", "fast", {"fused": True}, "graph", False, 2, data, tiny=True)
    built, runs = [], []

    class Counting(gpu.DeviceTrainer):
        def __init__(self, *args):
            built.append(1)
            super().__init__(*args)

        def run(self, seed):
            runs.append(seed)
            return super().run(seed)

    def refuse(*args):
        raise AssertionError("a fresh trainer per run")
    monkeypatch.setattr(gpu, "DeviceTrainer", Counting)
    monkeypatch.setattr(gpu, "train_on_device", refuse)
    reused = gpu.measure("fast16-fused-reuse", "fast", {"fused": True, "reuse": True}, "graph", False, 2, data, tiny=True)
    assert built == [1] and runs == [100, 0, 1]  # one trainer: its warm-up run, then each seed
    assert reused["test_accuracy"] == fresh["test_accuracy"] and reused["one_capture_for_all_seeds"] is True
    with pytest.raises(ValueError, match="no ensemble"):
        gpu.measure("best", "best", {"reuse": True}, "eager", False, 2, data, tiny=True)


def test_gpu_benchmark_records_a_failing_setting_and_goes_on():
    gpu = _gpu_script()
    data = gpu.tiny_data(torch.device("cpu"))
    row = gpu.measure_or_error("seed", "seed", {}, "no-such-mode", False, 1, data, tiny=True)
    assert row["group"] == "seed" and row["error"].startswith("ValueError: mode must be one of")
    assert "test_accuracy" in gpu.measure_or_error("seed", "seed", {}, "eager", False, 1, data, tiny=True)


def test_gpu_benchmark_search_chooses_on_validation_the_quickest_that_reaches_the_bar(monkeypatch):
    gpu = _gpu_script()
    data = gpu.tiny_data(torch.device("cpu"))
    seen = []

    def fake_measure(name, recipe_name, overrides, mode, bf16, seeds, data_, tiny):
        seen.append((overrides.get("lr"), len(data_.test)))
        accuracy, seconds = {0.1: (0.99, 2.0), 0.2: (0.99, 1.0), 0.3: (0.5, 0.1)}[overrides["lr"]]
        return {"group": name, "recipe": recipe_name, "overrides": overrides, "bf16": bf16, "mode": mode,
                "median_s": seconds, "mean_test_accuracy": accuracy}

    monkeypatch.setattr(gpu, "measure", fake_measure)
    monkeypatch.setitem(gpu.SEARCHES, "t", (0.9, 2, 5, [("fast", {"lr": lr}, False) for lr in (0.1, 0.2, 0.3)]))
    rows = list(gpu.search("t", data, True, lambda: 1.0))
    # three candidates scored on the validation split (64 images), then the quicker passing one on test (128)
    assert seen == [(0.1, 64), (0.2, 64), (0.3, 64), (0.2, 128)]
    assert [r.get("scored_on") for r in rows] == ["validation"] * 3 + ["test"] and rows[-1]["chosen"]
    seen.clear()
    rows = list(gpu.search("t", data, True, lambda: 1.0, bar=0.999))
    assert len(seen) == 3 and rows[-1]["chosen"] is None
    rows = list(gpu.search("t", data, True, lambda: 0.0))
    assert rows[0]["skipped"] == ["fast", {"lr": 0.1}, False] and rows[-1]["note"].endswith("(3 skipped)")
    budget = iter([1.0, 1.0, 0.0, 0.0])  # time runs out after two candidates: nothing is chosen
    rows = list(gpu.search("t", data, True, lambda: next(budget)))
    assert rows[-1] == {"group": "t", "chosen": None, "note": "no time left to measure the choice (1 skipped)"}


@pytest.mark.slow
def test_gpu_benchmark_script_runs_on_the_cpu(tmp_path, monkeypatch):
    gpu = _gpu_script()
    out = tmp_path / "gpu.json"
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--device", "cpu", "--tiny", "--groups", "seed,profile", "--json", str(out)])
    threads = torch.get_num_threads()
    try:
        gpu.main()  # --tiny sets one thread for the process
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["compiled_logits"]["inductor_vs_eager_max_logit_diff"] < 1e-4
    assert result["inference"]["single_image_calls"] == 50
    assert result["profile"]["eager"]["steps"] == result["profile"]["graph"]["steps"] == 4
    assert [r["mode"] for r in result["runs"]] == ["eager", "graph"] and result["runs"][0]["steps"] == 4
    row = gpu.measure("fast-compiled", "fast", {}, "compile+graph", False, 1, gpu.tiny_data(torch.device("cpu")), tiny=True)
    assert row["mode"] == "compile+graph" and 0 <= row["mean_test_accuracy"] <= 1 and row["warmup_s"] > 0
