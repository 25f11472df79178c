"""Run settings: one dataclass per concern, the tutorial's values as defaults, help text with units.

Each field's help text is also its command-line help: the CLI builds a flag per field
(``optim.batch_size`` -> ``--batch-size``), so a new setting is one line here.

    config = RunConfig(optim=OptimConfig(epochs=1), seed=3)
    config.to_dict()       # JSON-able; RunConfig.from_dict() reads it back
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def setting(default, help: str, **kw):  # noqa: A002 (argparse's word)
    """A dataclass field whose ``help`` documents it (units, sentinel values) for users."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def flag_of(f) -> str:
    """The command-line flag of a config field (``optim.batch_size`` -> ``--batch-size``)."""
    return "--" + f.metadata.get("flag", f.name.replace("_", "-"))


def non_finite(section) -> tuple[str, float] | None:
    """The flag and value of the first float setting of ``section`` that is NaN or infinite: every
    range check (``value < 0``, ``min(...)``) lets NaN through, and inf breaks the arithmetic later."""
    for f in fields(section):
        value = getattr(section, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            return flag_of(f), value
    return None


@dataclass
class DataConfig:
    data_dir: str | None = setting(None, "folder holding the four MNIST IDX files (.gz or not), looked in "
                                   "first; then $DIGITS_DATA_DIR, then the cache ($XDG_CACHE_HOME/"
                                   "digits/mnist, by default ~/.cache/digits/mnist)", metavar="DIR")
    val_size: int = setting(5000, "training images held out for validation; 0 trains on all 60,000")
    split_seed: int = setting(0, "seed of the train/validation split, independent of --seed")
    download: bool = setting(True, "download MNIST when no folder looked in holds it, into the first one "
                             "named: --data-dir, else $DIGITS_DATA_DIR, else the cache")


@dataclass
class ModelConfig:
    name: str = setting("seed", "model name, see `digits models`", flag="model")
    kwargs: dict[str, Any] = setting({}, "constructor arguments as KEY=VALUE", flag="model-arg")


@dataclass
class OptimConfig:
    optimizer: str = setting("sgd", "optimizer: sgd, adam or adamw")
    lr: float = setting(0.01, "learning rate (the peak of one-cycle and of warm-up)")
    momentum: float = setting(0.9, "SGD momentum")
    beta1: float = setting(0.9, "Adam/AdamW: decay of the running mean of gradients")
    beta2: float = setting(0.999, "Adam/AdamW: decay of the running mean of squared gradients")
    nesterov: bool = setting(False, "SGD: Nesterov momentum")
    weight_decay: float = setting(5e-4, "L2 weight decay (adamw: decoupled weight decay)")
    scheduler: str = setting("step", "learning-rate schedule, evaluated at every training step: step "
                             "(the lr times gamma every --step-size epochs), cosine, onecycle (linear up "
                             "to --lr, then linear down to 0), onecycle_cos (torch's OneCycleLR: cosine from lr/25 "
                             "up to --lr, then down to lr/25e4) or none")
    warmup_epochs: float = setting(0.0, "linear learning-rate warm-up, in epochs (fractions allowed); "
                                   "onecycle: its rising part (0: a quarter of the run)")
    step_size: int = setting(6, "StepLR: epochs between learning-rate decays")
    gamma: float = setting(0.99, "StepLR: factor applied every --step-size epochs")
    epochs: int = setting(2, "passes over the training split")
    batch_size: int = setting(256, "images per training step in each process: under torchrun, a step "
                              "takes (processes x this) images in all (see --scale-lr)")
    scale_lr: bool = setting(False, "multiply --lr by the number of processes, which multiplies the images "
                             "per step (the linear scaling rule); no effect in one process")
    label_smoothing: float = setting(0.0, "cross-entropy label smoothing, 0 (off) to <1")
    clip_grad_norm: float = setting(0.0, "clip the gradients' global L2 norm to this; 0: off")
    ema_decay: float = setting(0.0, "keep an exponential moving average of the weights with this decay "
                               "per step (e.g. 0.999) and evaluate and checkpoint it; 0: off")


@dataclass
class AugmentConfig:
    """Random distortions of each training batch (digits are never flipped); all 0 = off."""

    rotate: float = setting(0.0, "random rotation, up to +-this many degrees")
    zoom: float = setting(0.0, "random zoom, up to +-this fraction (0.1: 90%..110%)")
    shift: float = setting(0.0, "random translation, up to +-this many pixels in x and in y")
    shear: float = setting(0.0, "random shear, up to +-this many degrees")
    elastic: float = setting(0.0, "elastic distortion: displacement strength in pixels (e.g. 2); 0: off")
    elastic_sigma: float = setting(4.0, "elastic distortion: smoothness of the field, in pixels (at least 0.01, "
                                 "under 28/3: its kernel reaches 3 sigma either side)")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = setting(0, "seeds model initialisation and the shuffle of every epoch")
    device: str = setting("auto", "auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps")
    threads: int = setting(0, "CPU threads for torch; 0 keeps torch's default (one per core)")
    test_batch_size: int = setting(1024, "images per evaluation batch; results do not depend on it")
    channels_last: bool = setting(True, "channels_last memory format for convolutions (faster on CPU, "
                                  "same results)")
    checkpoint_every: int = setting(0, "also checkpoint every N training steps; 0: at the end of each "
                                    "epoch only")
    tensorboard: bool = setting(True, "write TensorBoard logs to OUT/tb")
    progress: bool = setting(True, "show a progress bar")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunConfig":
        nested = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig, "augment": AugmentConfig}
        known = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key in nested:
                allowed = {f.name for f in fields(nested[key])}
                kwargs[key] = nested[key](**{k: v for k, v in value.items() if k in allowed})
            elif key in known:
                kwargs[key] = value
        return cls(**kwargs)

    def copy(self) -> "RunConfig":
        return copy.deepcopy(self)


@dataclass
class FewShotConfig:
    """`digits fewshot`: a learning curve over images per class, and unseen-class episodes."""

    shots: str = setting("1,2,5,10,20,50,100,500,full", "learning curve: training images per class, "
                         "comma-separated; 'full' is the whole training split", metavar="LIST")
    subsets: int = setting(3, "learning curve: seeded class-balanced subsets per k (one training each)")
    model: str = setting("fewshot_cnn", "learning curve: the network trained from scratch",
                         flag="curve-model")
    min_steps: int = setting(300, "learning curve: fewest training steps per subset")
    max_steps: int = setting(600, "learning curve: most training steps per subset")
    epochs: int = setting(10, "learning curve: passes over a subset, within --min-steps..--max-steps")
    batch_size: int = setting(64, "images per training step (drawn with replacement from the subset)")
    lr: float = setting(3e-3, "Adam learning rate, decayed to 0 on a cosine over the steps")
    augment: bool = setting(True, "random shifts, rotations, zoom and shear of training images")
    train_episodes: int = setting(600, "unseen classes: episodes training the embedding on digits 0-4")
    train_shots: int = setting(5, "unseen classes: support images per class in training episodes")
    queries: int = setting(15, "unseen classes: query images per class in every episode")
    eval_shots: str = setting("1,5,10", "unseen classes: support images per class in test episodes, "
                              "comma-separated", metavar="LIST")
    episodes: int = setting(600, "unseen classes: 5-way test episodes on digits 5-9 per shot count")
    seed: int = setting(0, "base seed of subsets, initialisation, augmentation and episodes")
    device: str = setting("cpu", "cpu, cuda, cuda:N, mps or auto")
    threads: int = setting(0, "CPU threads for torch; 0 keeps torch's default (one per core)")
    progress: bool = setting(True, "show a progress bar")
