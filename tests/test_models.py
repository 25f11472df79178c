"""Every registered model: output shape, a backward pass, a parameter budget, a save/load round trip."""
import pytest
import torch

from digits.checkpoint import describe, load_checkpoint, save_checkpoint
from digits.errors import DigitsError
from digits.models import count_parameters, create_model, list_models

PARAMETER_BUDGET = 5_000_000  # every model must stay small enough to train on a laptop CPU


@pytest.mark.parametrize("name", list_models())
def test_shape_backward_and_budget(name):
    torch.manual_seed(0)
    model = create_model(name)
    images = torch.randn(3, 1, 28, 28)
    logits = model(images)
    width = getattr(model, "embedding_dim", 10)  # embeddings (few-shot) are vectors, not logits
    assert logits.shape == (3, width) and logits.dtype == torch.float32
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert 0 < count_parameters(model) <= PARAMETER_BUDGET


@pytest.mark.parametrize("name", list_models())
def test_checkpoint_round_trip_gives_identical_logits(name, tmp_path):
    torch.manual_seed(1)
    model = create_model(name).eval()
    images = torch.randn(5, 1, 28, 28)
    path = save_checkpoint(tmp_path / "c.pt", model, describe(name, {}))
    loaded, ckpt = load_checkpoint(path)
    assert ckpt["meta"]["model_name"] == name and not loaded.training
    with torch.no_grad():
        assert torch.equal(model(images), loaded(images))


def test_seed_model_is_the_tutorials_net():
    model = create_model("seed")
    assert count_parameters(model) == 42_940
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(10, 1, 5, 5), (10,), (20, 10, 5, 5), (20,), (100, 320), (100,), (50, 100), (50,),
                      (10, 50), (10,)]
    # no activation between the linear layers: the classifier is one affine map
    assert all(isinstance(m, torch.nn.Linear) for m in model.fc)


def test_unknown_model_and_bad_arguments_are_clear_errors():
    with pytest.raises(DigitsError, match="unknown model 'nope'; choose one of: .*seed"):
        create_model("nope")
    with pytest.raises(DigitsError, match="bad arguments for model 'seed'"):
        create_model("seed", width=3)


@pytest.mark.parametrize("name, kwargs, says", [
    ("fast", {"c1": 0}, "c1 must be a whole number of at least 1, got 0"),  # torch warned in 2 lines first
    ("fast", {"c1": "abc"}, "c1 must be a whole number of at least 1, got 'abc'"),  # "not all arguments converted"
    ("fast", {"hidden": 0}, "hidden must be a whole number of at least 1, got 0"),  # built, warned, then trained
    ("fast", {"c2": 2.5}, "c2 must be a whole number of at least 1, got 2.5"),
    ("fast", {"c1": True}, "c1 must be a whole number of at least 1, got true"),
    ("fast", {"c1": None}, "c1 must be a whole number of at least 1, got null"),
    ("fewshot_cnn", {"width": 0}, "width must be a whole number of at least 1, got 0"),
    ("resnet", {"depth": -1}, "depth must be a whole number of at least 1, got -1"),
    ("bn-cnn", {"dropout": "abc"}, "dropout must be a number, got 'abc'"),  # "'<' not supported between ..."
    ("seed-bn", {"dropout": True}, "dropout must be a number, got true"),
    ("fast", {"pool": 1}, "pool must be true or false, got 1"),
    ("fast", {"nope": 1}, "it takes no argument 'nope' (its arguments: c1, c2, hidden, k2, pool)"),
    ("seed", {"width": 3}, "it takes no argument 'width' (its arguments: none)")])
def test_a_bad_model_argument_is_named_with_its_value_and_torch_warns_nothing(name, kwargs, says):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DigitsError) as refused:
            create_model(name, **kwargs)
    assert str(refused.value) == f"bad arguments for model {name!r}: {says}"
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("name", list_models())
def test_docstring_states_the_real_parameter_count(name):
    import re

    from digits.models.registry import _REGISTRY

    stated = re.search(r"([\d,]+)\s+parameters", _REGISTRY[name].__doc__ or "")
    assert stated, f"{name}'s builder docstring must state its parameter count"
    assert int(stated.group(1).replace(",", "")) == count_parameters(create_model(name))


@pytest.mark.parametrize("name, kwargs, expected", [
    ("seed-bn", {}, 43_000),  # the seed's 42,940 + 2 x (10 + 20) BatchNorm scales and shifts
    ("lenet5", {}, 61_706),
    # stem 88; blocks 1,184 + 3,680 (with its 1x1 shortcut) + 14,528; head 330
    ("resnet", {"width": 8, "depth": 1}, 19_810),
    # convs with BN: 352 + 9,280 + 18,560 + 36,992 + 73,984 + 147,712; linear 1,290
    ("bn-cnn", {"width": 32}, 288_170),
])
def test_parameter_counts_by_hand(name, kwargs, expected):
    assert count_parameters(create_model(name, **kwargs)) == expected


def test_seed_bn_keeps_the_seeds_shapes_and_adds_bn_relu_dropout():
    model = create_model("seed-bn")
    seed_shapes = [tuple(p.shape) for p in create_model("seed").parameters()]
    convs_and_linears = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert [tuple(p.shape) for m in convs_and_linears for p in m.parameters()] == seed_shapes
    kinds = {type(m) for m in model.modules()}
    assert {torch.nn.BatchNorm2d, torch.nn.Dropout, torch.nn.ReLU} <= kinds
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.fc) == 2


def test_resnet_and_inception_structure():
    from digits.models.inception import Inception
    from digits.models.resnet import BasicBlock

    deep = create_model("resnet", width=8, depth=3)
    assert sum(isinstance(m, BasicBlock) for m in deep.modules()) == 9
    assert count_parameters(deep) > count_parameters(create_model("resnet", width=8, depth=1))
    modules = [m for m in create_model("inception").modules() if isinstance(m, Inception)]
    assert len(modules) == 4
    kernels = {m.kernel_size for block in modules for m in block.modules() if isinstance(m, torch.nn.Conv2d)}
    assert {(1, 1), (3, 3), (5, 5)} <= kernels
    with pytest.raises(DigitsError, match="bad arguments for model 'resnet'"):
        create_model("resnet", width=0)
    for width in (1, 2, 3):  # 2 and 3 passed the old "at least 2" check, then failed inside torch
        with pytest.raises(DigitsError, match=f"'inception': width must be at least 4, got {width}$"):
            create_model("inception", width=width)
    assert create_model("inception", width=4)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_fast_without_pooling_strides_its_convolutions_to_the_same_shapes():
    pooled, strided = create_model("fast", c1=16, c2=32, hidden=128), create_model("fast", c1=16, c2=32, hidden=128,
                                                                                  pool=False)
    assert [p.shape for p in pooled.parameters()] == [p.shape for p in strided.parameters()]
    assert strided.conv1.stride == strided.conv2.stride == (2, 2) and pooled.conv1.stride == (1, 1)
    x = torch.randn(4, 1, 28, 28)
    logits = [m(x) for m in (pooled, strided)]  # the same fc1 fits both: 32 x 5 x 5 features
    assert logits[0].shape == logits[1].shape == (4, 10)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in strided.modules())
    strided(x).sum().backward()
    assert strided.conv1.weight.grad is not None
    assert create_model("fast", k2=5, pool=False)(x).shape == (4, 10)
    with pytest.raises(DigitsError, match="pool must be true or false"):
        create_model("fast", pool="False")  # what `--model-arg pool=False` would pass
