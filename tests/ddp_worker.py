"""One process of the 2-process test in test_distributed.py, started by torchrun.

It trains one epoch through the command line, resumes to a second epoch through the library
(which returns this process's model), and saves its final weights to OUT/rank<R>.pt so the test
can compare the processes.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/ddp_worker.py DATA OUT
"""
import sys
from pathlib import Path

import torch

from digits import distributed
from digits.cli import config_from_args, build_parser, main
from digits.pipeline import run

data, out = sys.argv[1], Path(sys.argv[2])
args = ["train", "--data-dir", data, "--out", str(out), "--val-size", "50", "--batch-size", "16",
        "--lr", "0.02", "--threads", "1", "--no-progress", "--no-tensorboard"]
assert main([*args, "--epochs", "1"]) == 0
config = config_from_args(build_parser().parse_args([*args, "--epochs", "2"]))
result = run(config, out, resume=out / "checkpoint.pt", figures=False, test=False)
torch.save(torch.cat([p.detach().flatten() for p in result.train.model.parameters()]),
           out / f"rank{distributed.rank()}.pt")
