import pickle

import pytest
import torch

from digits.checkpoint import describe, load_checkpoint, read_checkpoint, save_checkpoint
from digits.errors import CheckpointError
from digits.models import create_model


def test_checkpoint_describes_itself(tmp_path):
    model = create_model("seed")
    path = save_checkpoint(tmp_path / "c.pt", model, describe("seed", {}, {"seed": 3}), iter_num=7)
    ckpt = read_checkpoint(path)
    meta = ckpt["meta"]
    assert ckpt["iter_num"] == 7
    assert meta["normalization"] == {"mean": 0.1307, "std": 0.3081}
    assert meta["classes"] == [str(d) for d in range(10)] and meta["config"] == {"seed": 3}
    assert meta["torch_version"] == torch.__version__
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


class _Evil:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def test_loading_never_runs_code_from_the_file(tmp_path):
    evil = _Evil()
    evil.target = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"format": "digits-checkpoint", "meta": {}, "payload": evil}, path)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content", [b"", b"hello", pickle.dumps({"a": 1}), b"PK\x03\x04broken"])
def test_garbage_is_not_a_checkpoint(tmp_path, content):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="x.pt"):
        load_checkpoint(path)


def test_other_files_and_mismatched_weights(tmp_path):
    torch.save({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a digits checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    path = save_checkpoint(tmp_path / "c.pt", create_model("seed"), describe("seed", {}))
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["fc.0.weight"] = torch.zeros(3, 3)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="weights do not fit model 'seed'"):
        load_checkpoint(path)
