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
