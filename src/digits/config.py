"""Run settings: one dataclass per concern, with the tutorial's values as defaults.

    config = RunConfig(optim=OptimConfig(epochs=1), seed=3)
    config.to_dict()       # JSON-able; RunConfig.from_dict() reads it back
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class DataConfig:
    data_dir: str | None = None  # None: $DIGITS_DATA_DIR, then the user cache, then download
    val_size: int = 5000  # images held out of the 60,000 for validation; 0 trains on all
    split_seed: int = 0  # seeds the train/validation split, independently of the training seed
    download: bool = True  # download MNIST into the cache when it is not found


@dataclass
class ModelConfig:
    name: str = "seed"  # a name from digits.models.list_models()
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the model's constructor


@dataclass
class OptimConfig:
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "step"  # StepLR stepped once per epoch, as the tutorial
    step_size: int = 6  # epochs between learning-rate decays
    gamma: float = 0.99  # multiplier applied every step_size epochs
    epochs: int = 2
    batch_size: int = 256  # images per training step


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0  # seeds model initialisation and the per-epoch shuffles
    device: str = "auto"  # auto: cuda if available, else mps, else cpu
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default (one per core)
    test_batch_size: int = 1024  # images per evaluation batch (the tutorial's; results do not depend on it)
    channels_last: bool = True  # memory format for convolutions: measured faster on CPU, same results
    checkpoint_every: int = 0  # also checkpoint every N training steps; 0: only at the end of each epoch
    tensorboard: bool = True
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        nested = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig}
        known = {f.name for f in fields(cls)}
        kwargs = {k: (nested[k](**v) if k in nested else v) for k, v in values.items() if k in known}
        return cls(**kwargs)
