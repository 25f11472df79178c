"""digits: train, evaluate, explain and use convolutional networks for handwritten digits (MNIST).

    import digits
    data = digits.load_mnist()
    model = digits.create_model("seed")
    result = digits.train(digits.RunConfig(), data)
    digits.evaluate(result.model, data.test.images, data.test.labels).accuracy
"""
__version__ = "0.1.0"

from .errors import DigitsError  # noqa: E402

try:  # a deployment may run ONNX models (digits predict / serve) without torch installed
    import torch  # noqa: F401
except ImportError:
    pass
else:
    from .checkpoint import load_checkpoint  # noqa: E402
    from .config import DataConfig, ModelConfig, OptimConfig, RunConfig  # noqa: E402
    from .data import load_mnist  # noqa: E402
    from .evaluate import evaluate  # noqa: E402
    from .models import create_model, list_models  # noqa: E402
    from .train import fit as train  # noqa: E402

__all__ = ["DataConfig", "DigitsError", "ModelConfig", "OptimConfig", "RunConfig", "create_model",
           "evaluate", "list_models", "load_checkpoint", "load_mnist", "train"]
