"""What the writing commands refuse before any work: an output that is one of their inputs, a
folder, or a name under a file; and `predict --show` without torch. Each refusal is one line."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_mnist
from digits.cli import main
from digits.errors import DigitsError
from digits.outpath import check_output, make_folder

MODEL = Path(__file__).parent / "data" / "seed.pt"
ROOT = Path(__file__).resolve().parents[1]


def _error(args, capsys) -> str:
    """The one line a refused command prints; nothing on stdout (refused before predicting)."""
    assert main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("digits: error: ") and err.count("\n") == 1, (out, err)
    return err.strip()


def _photo(path: Path) -> Path:
    page = np.full((60, 60), 255, np.uint8)
    page[10:50, 27:33] = 0  # a "1"
    Image.fromarray(page).save(path)
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    ckpt = tmp_path / "run" / "checkpoint.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(MODEL.read_bytes())
    (ckpt.parent / "metrics.json").write_text('{"test_accuracy": 0.99}')
    (tmp_path / "link.pt").symlink_to(ckpt)
    return ckpt


@pytest.mark.parametrize("out,named", [
    ("run/checkpoint.pt", "is one of the inputs"),
    ("run/../run/checkpoint.pt", "is the same file as the input run/checkpoint.pt"),
    ("link.pt", "is the same file as the input run/checkpoint.pt"),  # a link to it
    ("run/metrics.json", "is one of the inputs"),  # read for the description
])
def test_export_refuses_to_write_over_its_checkpoint(out, named, checkpoint, tmp_path, capsys, monkeypatch):
    """`--out run/checkpoint.pt` replaced the training checkpoint with TorchScript, exit 0."""
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in checkpoint.parent.iterdir()}
    err = _error(["export", "run/checkpoint.pt", "--format", "torchscript", "--out", out], capsys)
    assert f"--out {out} {named}; writing it would replace it" in err
    assert {p: p.read_bytes() for p in checkpoint.parent.iterdir()} == before
    assert (tmp_path / "link.pt").is_symlink()
    # the checkpoint given as a link to the file --out names
    assert "is the same file as the input link.pt" in _error(
        ["export", "link.pt", "--format", "torchscript", "--out", "run/checkpoint.pt"], capsys)


@pytest.mark.parametrize("given,show,named", [
    (["photo.png"], "photo.png", "is one of the inputs"),
    (["./photo.png"], "photo.png", "is the same file as the input ./photo.png"),
    (["."], "photo.png", "is one of the inputs"),  # an image found in a folder given
    (["link.png"], "photo.png", "is the same file as the input link.png"),
    (["photo.png"], "model", "is one of the inputs"),  # the model, named without a suffix
])
def test_show_refuses_to_draw_over_an_input(given, show, named, tmp_path, capsys, monkeypatch):
    """`predict model.onnx photo.jpg --show photo.jpg` overwrote the photo with the figure."""
    monkeypatch.chdir(tmp_path)
    photo = _photo(tmp_path / "photo.png")
    if "link.png" in given:
        (tmp_path / "link.png").symlink_to(photo)
    (tmp_path / "model").write_bytes(MODEL.read_bytes())
    before = photo.read_bytes()
    err = _error(["predict", "model", *given, "--show", show], capsys)
    assert f"--show {show} {named}; writing it would replace it" in err
    assert photo.read_bytes() == before and (tmp_path / "model").read_bytes() == MODEL.read_bytes()


def test_show_refuses_to_draw_over_an_mnist_file_it_reads(tmp_path, capsys):
    """`digits show --out` takes a name without a suffix as PNG: the raw IDX files have none."""
    data = write_mnist(tmp_path / "mnist", compress=False)
    target = data / "train-images-idx3-ubyte"
    before = target.read_bytes()
    err = _error(["show", "--data-dir", str(data), "--out", str(target)], capsys)
    assert f"--out {target} is one of the inputs" in err and target.read_bytes() == before
    upper = data / "TRAIN-LABELS-IDX1-UBYTE"  # any letter case is read too, so it is an input too
    (data / "train-labels-idx1-ubyte").rename(upper)
    before = upper.read_bytes()
    err = _error(["show", "--data-dir", str(data), "--out", str(upper)], capsys)
    assert f"--out {upper} is " in err and "input" in err and upper.read_bytes() == before


def test_a_file_where_a_folder_must_be_is_named(checkpoint, tmp_path, capsys, monkeypatch):
    """mkdir's "File exists" about notes.txt read as if notes.txt/x.onnx were there already."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    photo = _photo(tmp_path / "photo.png")
    for args, flag, out in (
            (["export", str(checkpoint)], "--out", "notes.txt/x.onnx"),
            (["export", str(checkpoint)], "--out", "notes.txt/deeper/x.onnx"),
            (["predict", str(MODEL), str(photo)], "--show", "notes.txt/x.png"),
            (["show", "--data-dir", str(write_mnist(tmp_path / "mnist"))], "--out", "notes.txt/x.png")):
        err = _error([*args, flag, out], capsys)
        assert err == f"digits: error: {flag} {out}: notes.txt is a file, not a folder"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_show_to_a_folder_is_refused_before_predicting(tmp_path, capsys):
    """It printed the predictions, then failed with `cannot write somefolder: Is a directory`."""
    (tmp_path / "somefolder").mkdir()
    photo = _photo(tmp_path / "photo.png")
    err = _error(["predict", str(MODEL), str(photo), "--show", str(tmp_path / "somefolder")], capsys)
    assert f"--show {tmp_path / 'somefolder'} is a folder" in err
    assert list((tmp_path / "somefolder").iterdir()) == []


def test_a_run_folder_under_a_file_names_the_file(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DigitsError, match=r"^cannot create output folder x: .*notes.txt is a file, not a folder$"):
        make_folder(tmp_path / "notes.txt" / "run" / "figures", "output folder x")
    with pytest.raises(DigitsError, match=r"notes.txt is a file, not a folder$"):
        make_folder(tmp_path / "notes.txt")
    assert make_folder(tmp_path / "a" / "b").is_dir()
    assert check_output(tmp_path / "new" / "x.png", [tmp_path / "notes.txt"]) == tmp_path / "new" / "x.png"


def test_show_without_torch_is_one_line_before_predicting(tmp_path):
    """An ONNX model predicts without torch; --show drew with it and printed an 11-line traceback."""
    onnx_model = tmp_path / "seed.onnx"
    assert main(["export", str(MODEL), "--out", str(onnx_model)]) == 0
    photo = _photo(tmp_path / "photo.png")
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "from digits.cli import main\n"
            f"sys.exit(main(['predict', {str(onnx_model)!r}, {str(photo)!r}, '--show', {str(tmp_path / 's.png')!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "digits: error: --show needs torch: pip install torch\n"
    assert not (tmp_path / "s.png").exists()


def test_show_itself_says_what_it_needs_when_an_import_fails(tmp_path, monkeypatch):
    from digits.predict import Prediction, show

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # any import of it now fails
    monkeypatch.delitem(sys.modules, "digits.plots", raising=False)  # imported afresh, so it fails too
    with pytest.raises(DigitsError, match=r"^--show needs matplotlib: pip install matplotlib$"):
        show([Prediction("a.png", 1, [0.1] * 10, np.zeros((1, 28, 28), np.uint8))], tmp_path / "s.png")
