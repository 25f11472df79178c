"""Write tests/data/seed.pt: the seed model as `digits run` trains it by default (seed 0), weights
and description only (no optimizer state), so that tests of predict, serve and export need no
training. Rerun after a change to the seed network or the checkpoint format:

    PYTHONPATH=src python tests/data/make_seed_model.py [--run runs/seed-0]
"""
import argparse
import shutil
from pathlib import Path

from digits.checkpoint import load_checkpoint, save_checkpoint
from digits.cli import main as digits

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/seed-0", help="run folder; trained with `digits run --seed 0` "
                   "if it has no checkpoint (default runs/seed-0)")
    run = Path(p.parse_args().run)
    if not (run / "checkpoint.pt").exists():
        digits(["run", "--seed", "0", "--out", str(run), "--no-progress"])
    model, ckpt = load_checkpoint(run / "checkpoint.pt")
    save_checkpoint(HERE / "seed.pt", model, ckpt["meta"], iter_num=ckpt["iter_num"])
    shutil.copy(run / "metrics.json", HERE / "metrics.json")
    print(f"wrote {HERE / 'seed.pt'} and metrics.json from {run}")
