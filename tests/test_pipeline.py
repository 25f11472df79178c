"""The run folder as pipeline.run writes it, rerun into the same --out."""
import json

import pytest

from digits import pipeline
from digits.config import DataConfig, OptimConfig, RunConfig
from digits.errors import DigitsError


def test_a_rerun_removes_the_previous_results_before_it_trains(tiny_mnist, tmp_path, monkeypatch):
    # a rerun that failed left the previous run's metrics.json and report.md beside its new config.json
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"seed": 5}')
    (out / "metrics.json").write_text('{"test_accuracy": 0.5}')
    (out / "report.md").write_text("# the previous run")
    seen = []

    def diverge(config, data, folder, resume, writer):
        seen.append(sorted(p.name for p in folder.iterdir()))
        raise DigitsError("training diverged")

    monkeypatch.setattr(pipeline, "fit", diverge)
    config = RunConfig(data=DataConfig(data_dir=str(tiny_mnist), val_size=50, download=False),
                       optim=OptimConfig(epochs=1), seed=3, tensorboard=False)
    with pytest.raises(DigitsError, match="diverged"):
        pipeline.run(config, out)
    assert seen == [["config.json", "figures"]]  # what the run started from
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "figures"]
    assert json.loads((out / "config.json").read_text())["seed"] == 3
