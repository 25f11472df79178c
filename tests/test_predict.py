"""`digits predict` and `digits export` with the committed seed model (tests/data/seed.pt)."""
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from digits.cli import main
from digits.checkpoint import load_checkpoint
from digits.data import TEST_IMAGES, TEST_LABELS, read_idx
from digits.errors import DigitsError
from digits.evaluate import predict_logits

MODEL = Path(__file__).parent / "data" / "seed.pt"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def test_digits():
    from conftest import REAL_DATA

    if not (REAL_DATA / f"{TEST_IMAGES}.gz").exists():
        (pytest.fail if os.environ.get("CI") else pytest.skip)(f"real MNIST not found at {REAL_DATA}")
    return read_idx(REAL_DATA / f"{TEST_IMAGES}.gz").numpy()[:256], \
        read_idx(REAL_DATA / f"{TEST_LABELS}.gz").numpy()[:256]


@pytest.fixture
def photos(tmp_path, test_digits):
    """Four test digits as dark ink on light paper, enlarged and off-centre: PNG and JPEG."""
    images, labels = test_digits
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        page = np.full((200, 260), 240, np.uint8)
        big = Image.fromarray(images[i]).resize((140, 140), Image.Resampling.BICUBIC)
        page[20:160, 100:240] -= (np.asarray(big) * 0.85).astype(np.uint8)
        Image.fromarray(page).convert("RGB").save(folder / f"{i}_{labels[i]}.{'png' if i % 2 else 'jpg'}")
    (folder / "notes.txt").write_text("not an image; skipped in folders")
    return folder, [int(v) for v in labels[:4]]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "seed.onnx"
    assert main(["export", str(MODEL), "--format", "onnx", "--out", str(out)]) == 0
    return out


def test_predict_prints_each_file_with_top_k(photos, capsys):
    folder, labels = photos
    assert main(["predict", str(MODEL), str(folder), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    for line, label in zip(lines, labels):
        assert line.split(": ")[1].split()[0] == str(label), line
        assert line.count("%") == 2


def test_predict_json_csv_and_show(photos, tmp_path, capsys):
    folder, labels = photos
    assert main(["predict", str(MODEL), str(folder), "--json", "--show", str(tmp_path / "s.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["prediction"] for r in result] == labels
    for r in result:
        assert set(r) == {"file", "prediction", "probabilities"} and len(r["probabilities"]) == 10
        assert sum(r["probabilities"]) == pytest.approx(1, abs=1e-5)
    assert Image.open(tmp_path / "s.png").size[0] > 100
    assert main(["predict", str(MODEL), str(folder), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["prediction"]) for r in rows] == labels and len(rows[0]) == 12


def test_a_bad_file_fails_alone(photos, tmp_path, capsys):
    folder, labels = photos
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"PNG? no")
    assert main(["predict", str(MODEL), str(bad), str(folder / "0_7.jpg"), str(tmp_path / "gone.jpg")]) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("digits: error: ") for e in errors)
    assert any("bad.png: cannot read it as an image" in e for e in errors)
    assert any("gone.jpg: no such file" in e for e in errors)
    assert "Traceback" not in captured.err and captured.out.startswith(f"{folder / '0_7.jpg'}: 7")


def test_a_number_is_read_left_to_right(test_digits, tmp_path, capsys):
    images, labels = test_digits
    page = 255 - np.concatenate([np.pad(im, 6) for im in images[:4]], axis=1)
    Image.fromarray(page).save(tmp_path / "number.png")
    assert main(["predict", str(MODEL), str(tmp_path / "number.png"), "--number", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    # the number as a string (a leading 0 kept); each digit as one digit's prediction is written
    assert set(result) == {"file", "prediction", "digits"}
    assert result["prediction"] == "".join(map(str, labels[:4])) and len(result["digits"]) == 4
    for digit, label in zip(result["digits"], labels[:4]):
        assert set(digit) == {"prediction", "probabilities"} and digit["prediction"] == label
        assert len(digit["probabilities"]) == 10 and max(digit["probabilities"]) == digit["probabilities"][label]
    assert main(["predict", str(MODEL), str(tmp_path / "number.png"), "--json"]) == 0
    single = json.loads(capsys.readouterr().out)[0]  # without --number: one digit, as before
    assert set(single) == {"file", "prediction", "probabilities"} and isinstance(single["prediction"], int)
    assert len(single["probabilities"]) == 10


def test_csv_with_number_is_refused_before_any_work(tmp_path, capsys):
    """Its header promised p0..p9 and every row left them empty (`photo.jpg,274,,,,,,,,,,`)."""
    assert main(["predict", str(tmp_path / "missing.pt"), str(tmp_path / "none.png"), "--csv", "--number"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == (
        "digits: error: --number cannot be used with --csv (its p0..p9 columns hold one digit per file); "
        "use --json, which gives each digit's probabilities\n")


def test_not_a_model_is_one_line(photos, onnx_model, tmp_path, capsys):
    (tmp_path / "m.onnx").write_bytes(b"nope")
    assert main(["predict", str(tmp_path / "m.onnx"), str(photos[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("digits: error: ") and "not an ONNX model (it looks like a text file)" in err
    assert err.count("\n") == 1
    (tmp_path / "cut.onnx").write_bytes(onnx_model.read_bytes()[:200])  # an ONNX model's start, cut short
    assert main(["predict", str(tmp_path / "cut.onnx"), str(photos[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("digits: error: ") and "not a readable ONNX model" in err and err.count("\n") == 1


def test_onnx_export_matches_pytorch_on_real_test_images(onnx_model, test_digits):
    import onnxruntime as ort

    images = test_digits[0][:, None]
    model, _ = load_checkpoint(MODEL)
    expected = predict_logits(model, torch.from_numpy(images)).numpy()
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images})[0]
    assert got.shape == (256, 10)
    assert np.abs(got - expected).max() <= 1e-4
    meta = json.loads(session.get_modelmeta().custom_metadata_map["digits"])
    assert meta["model_name"] == "seed" and meta["parameters"] == 42940


def test_onnx_model_predicts_without_torch(onnx_model, photos):
    folder, labels = photos
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "from digits.cli import main\n"
            f"sys.exit(main(['predict', {str(onnx_model)!r}, {str(folder)!r}, '--json']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert [r["prediction"] for r in json.loads(done.stdout)] == labels


def test_a_checkpoint_without_torch_is_one_line_saying_what_to_do(tmp_path):
    """predict and serve read a checkpoint.pt with torch only: without it they ended in a traceback
    (exit 1). A photo given in its place is still named for what it is, torch or not."""
    photo = tmp_path / "photo.png"
    Image.new("L", (28, 28)).save(photo)
    commands = [["predict", str(MODEL), str(photo)], ["serve", str(MODEL), "--port", "0"],
                ["predict", str(photo), str(MODEL)]]
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "from digits.cli import main\n"
            f"print([main(args) for args in {commands!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"})
    assert done.stdout == "[2, 2, 2]\n", done.stderr
    needs = (f"digits: error: {MODEL}: reading a checkpoint needs torch (pip install torch); without torch, "
             f"use an ONNX export of it, made where torch works: digits export {MODEL} --out model.onnx\n")
    assert done.stderr == 2 * needs + f"digits: error: {photo}: not a checkpoint file (it looks like a PNG image)\n"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_gives_the_same_logits(tmp_path, test_digits):
    out = tmp_path / "seed.ts"
    assert main(["export", str(MODEL), "--format", "torchscript", "--out", str(out)]) == 0
    extra = {"digits.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    images = torch.from_numpy(test_digits[0][:64, None])
    model, _ = load_checkpoint(MODEL)
    assert torch.allclose(scripted(images), predict_logits(model, images), atol=1e-5)
    assert json.loads(extra["digits.json"])["model_name"] == "seed"


@pytest.mark.parametrize("args,message", [
    (["--out", "model.pt"], "--out model.pt: cannot tell the format from its suffix"),
    (["--format", "onnx", "--out", "model.pt"], "--out model.pt: .pt names a PyTorch model, not an ONNX "
                                                 "model; name it .onnx"),
    (["--format", "onnx", "--out", "m.TS"], "--out m.TS: .ts names a TorchScript model, not an ONNX model; "
                                            "name it .onnx"),
    (["--format", "torchscript", "--out", "ts.onnx"], "--out ts.onnx: .onnx names an ONNX model, not a "
                                                      "TorchScript model; name it .ts"),
    (["--format", "onnx", "--out", "m.pth"], "--out m.pth: .pth names a PyTorch model"),
])
def test_an_export_whose_name_says_another_kind_of_file_is_refused_first(args, message, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(MODEL), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"digits: error: {message}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
    assert main(["export", "missing.pt", *args]) == 2  # refused before the checkpoint is read
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name,zipped", [("seed.ts", True), ("seed.ONNX", False)])
def test_export_takes_its_format_from_the_suffix_when_none_is_given(name, zipped, tmp_path):
    import zipfile

    assert main(["export", str(MODEL), "--out", str(tmp_path / name)]) == 0
    assert zipfile.is_zipfile(tmp_path / name) == zipped  # TorchScript is a zip archive, ONNX is not


SERVE_LIMITS = ("--max-upload-mb, --max-pixels, --max-concurrent, --max-connections and --head-timeout "
                "must be positive")


@pytest.mark.parametrize("args,message", [
    (["serve", "missing.pt"], "missing.pt: no such checkpoint file"),
    (["export", "missing.pt", "--out", "x.onnx"], "missing.pt: no such checkpoint file"),
    (["predict", "missing.pt", "a.png"], "missing.pt: no such checkpoint file"),
    (["predict", "missing.pt", "a.png", "--top-k", "0"], "--top-k must be from 1 to 10"),
    (["serve", "missing.pt", "--max-upload-mb", "0"], SERVE_LIMITS),
    (["serve", "missing.pt", "--max-concurrent", "0"], SERVE_LIMITS),
    (["serve", "missing.pt", "--max-connections", "0"], SERVE_LIMITS),
    (["serve", "missing.pt", "--head-timeout", "inf"], SERVE_LIMITS),
    (["serve", "missing.pt", "--max-pixels", "200000000"], "--max-pixels can be at most 178,956,970"),
])
def test_user_errors_are_one_line_and_exit_2(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"digits: error: {message}") and err.count("\n") == 1


def test_the_api_serves_an_onnx_model_like_the_checkpoint(onnx_model, photos):
    from fastapi.testclient import TestClient

    from digits.predictor import load_predictor
    from digits.serve import create_app

    image = next(photos[0].glob("0_*")).read_bytes()
    answers = []
    for path in (onnx_model, MODEL):
        with TestClient(create_app(load_predictor(path))) as client:
            assert client.get("/model").json()["model_name"] == "seed"
            answers.append(client.post("/predict", files={"file": ("d.jpg", image, "image/jpeg")}).json())
    assert answers[0]["prediction"] == answers[1]["prediction"] == photos[1][0]
    assert answers[0]["pixels"] == answers[1]["pixels"]
    assert np.allclose(answers[0]["probabilities"], answers[1]["probabilities"], atol=1e-5)


def test_a_folder_is_searched_for_every_suffix_that_fewshot_predict_reads(tmp_path):
    from digits.predict import expand_paths

    for suffix in (".png", ".pgm", ".PBM", ".ppm", ".txt"):
        (tmp_path / f"a{suffix}").write_bytes(b"")
    files, errors = expand_paths([tmp_path])
    assert sorted(p.name for p in files) == ["a.PBM", "a.pgm", "a.png", "a.ppm"] and not errors


def _drawn_one(path: Path) -> Path:
    """A "1" drawn as a dark bar on white paper: enough for predict to have something to show."""
    page = np.full((60, 60), 255, np.uint8)
    page[10:50, 27:33] = 0
    Image.fromarray(page).save(path)
    return path


def test_show_to_a_format_matplotlib_cannot_write_is_one_line(tmp_path, capsys):
    image = _drawn_one(tmp_path / "one.png")
    assert main(["predict", str(MODEL), str(image), "--show", str(tmp_path / "seen.bmp")]) == 2
    out, err = capsys.readouterr()
    assert out == ""  # refused before predicting, not after printing the predictions
    assert err.startswith("digits: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "seen.bmp: a figure cannot be written as .bmp" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.png"]  # nothing half-written


def test_every_figure_format_digits_accepts_is_one_matplotlib_writes(tmp_path):
    from matplotlib.figure import Figure

    from digits.figformat import FIGURE_FORMATS
    from digits.plots import plot_inputs

    assert set(FIGURE_FORMATS) <= set(Figure().canvas.get_supported_filetypes())
    pixels = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    assert plot_inputs(pixels, ["a", "b"], tmp_path / "x.TIFF").stat().st_size > 0  # any case
    assert plot_inputs(pixels, ["a", "b"], tmp_path / "noext").read_bytes()[:4] == b"\x89PNG"


def _onnx_file(path: Path, input_shape: list, description: str | None = None) -> Path:
    """A uint8 model of the given input shape giving 10 scores per image (all zero), with
    ``description`` as its "digits" metadata: the shapes digits export never writes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    features = int(np.prod(input_shape[1:]))
    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["f"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("images", TensorProto.UINT8, input_shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [input_shape[0], 10])],
        [numpy_helper.from_array(np.zeros((features, 10), np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if description is not None:
        helper.set_model_props(model, {"digits": description})
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("shape,found", [(["N", 784], "uint8 (N, 784)"), (["N", 1, 32, 32], "uint8 (N, 1, 32, 32)"),
                                         ([1, 1, 28, 28], "uint8 (1, 1, 28, 28)")])
def test_an_onnx_model_for_other_images_is_refused_in_one_line(shape, found, tmp_path, capsys):
    model = _onnx_file(tmp_path / "other.onnx", shape)
    assert main(["predict", str(model), str(_drawn_one(tmp_path / "one.png"))]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"digits: error: {model}: expected one uint8 input (N, 1, 28, 28)")
    assert f"got {found};" in err and err.count("\n") == 1


@pytest.mark.parametrize("stored", ["{not json", "[1, 2]", "null", "7", "[" * 100_000])
def test_a_damaged_onnx_description_loses_only_the_description(stored, tmp_path):
    from digits.predictor import load_predictor

    model = _onnx_file(tmp_path / "m.onnx", ["batch", 1, 28, 28], stored)
    predictor = load_predictor(model)
    assert predictor.description == {"file": "m.onnx"}
    assert predictor.probs(np.zeros((3, 28, 28), np.uint8)) == pytest.approx(np.full((3, 10), 0.1))


def test_an_onnx_model_without_onnxruntime_names_the_package_to_install(tmp_path, monkeypatch):
    from digits.errors import CheckpointError
    from digits.predictor import load_predictor

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # any import of it now fails
    with pytest.raises(CheckpointError, match=r"needs onnxruntime: pip install onnxruntime$"):
        load_predictor(tmp_path / "m.onnx")


@pytest.mark.parametrize("saved", ["null", "5", "[1]", '"test_accuracy"', "[" * 100_000, "{broken"])
def test_a_metrics_file_that_is_not_an_object_loses_only_the_test_figures(saved, tmp_path):
    import shutil

    from digits.predictor import load_predictor

    shutil.copy(MODEL, tmp_path / "checkpoint.pt")
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.99, "other": 1}))
    assert load_predictor(tmp_path / "checkpoint.pt").description["metrics"]["test_accuracy"] == 0.99
    (tmp_path / "metrics.json").write_text(saved)
    metrics = load_predictor(tmp_path / "checkpoint.pt").description["metrics"]
    assert set(metrics) == {"iterations", "val_accuracy_per_epoch"}


def test_an_image_pillow_warns_about_is_refused_without_its_warning(tmp_path, capsys):
    """Pillow warns (two lines on stderr) from half its own limit up; digits' one line is enough."""
    import warnings

    from test_preprocess import png_header_only

    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(10_000, 10_000))  # 100 M pixels: over Pillow's warning, under its limit
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["predict", str(MODEL), str(path)]) == 1
    assert not [w for w in caught if "exceeds limit" in str(w.message)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "big.png: 10000x10000 is 100,000,000 pixels, over the limit" in err


@pytest.mark.parametrize("embedding", [ROOT / "docs" / "fewshot" / "embedding.pt", None])
def test_an_embedding_file_points_to_fewshot_predict_not_to_the_model_list(embedding, tmp_path, capsys):
    """For a model name, "choose another model (`digits models` lists them)" helps; for a file it did not."""
    from digits.checkpoint import describe, save_checkpoint
    from digits.models import create_model
    from digits.predictor import load_predictor

    if embedding is None:
        embedding = save_checkpoint(tmp_path / "e.pt", create_model("protonet"), describe("protonet", {}))
    Image.new("L", (28, 28), 255).save(tmp_path / "digit.png")
    says = (f"{embedding}: model 'protonet' is an embedding for few-shot classification, not a digit "
            f"classifier; use it with `digits fewshot-predict {embedding} --support DIR --query PATH...`")
    for command in (["evaluate", str(embedding)], ["predict", str(embedding), str(tmp_path / "digit.png")],
                    ["export", str(embedding), "--out", str(tmp_path / "e.onnx")]):
        assert main(command) == 2
        assert capsys.readouterr().err == f"digits: error: {says}\n", command
    with pytest.raises(DigitsError) as error:  # what `digits serve` loads
        load_predictor(embedding)
    assert str(error.value) == says
    assert not (tmp_path / "e.onnx").exists()


def test_an_onnx_model_under_another_name_is_read_as_onnx(onnx_model, photos, tmp_path, capsys):
    """`predict fake.pt` (an ONNX export renamed) said "evaluate and export need the checkpoint.pt",
    naming commands other than the one run; predict and serve read ONNX, so they read it."""
    folder, labels = photos
    renamed = tmp_path / "model.pt"
    renamed.write_bytes(onnx_model.read_bytes())
    assert main(["predict", str(renamed), str(folder), "--json"]) == 0
    assert [r["prediction"] for r in json.loads(capsys.readouterr().out)] == labels
    from digits.predictor import load_predictor

    assert load_predictor(renamed).backend == "onnxruntime"  # what `digits serve` loads



def test_an_onnx_export_may_have_any_name_that_does_not_say_another_kind(onnx_model, tmp_path):
    # it was refused unless named .onnx, "since predict and serve pick the reader by suffix": they
    # read by content, so only a name that says another kind of file (.ts, .pt) is refused
    out = tmp_path / "digit-model"
    assert main(["export", str(MODEL), "--format", "onnx", "--out", str(out)]) == 0
    from digits.predictor import load_predictor

    assert load_predictor(out).backend == "onnxruntime"


@pytest.mark.parametrize("content,what", [
    (b"\xff\xd8\xff\xe0" + bytes(60), "it looks like a JPEG image"), (b"", "it is empty"),
    (b"label,prediction\n7,7\n", "it looks like a text file"),
    (bytes(range(7, 80)), "neither an ONNX model nor a digits checkpoint")])
def test_a_file_named_onnx_that_holds_no_model_is_named_for_what_it_is(content, what, tmp_path, capsys):
    """It got onnxruntime's "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : ... Protobuf parsing failed"."""
    fake = tmp_path / "model.onnx"
    fake.write_bytes(content)
    assert main(["predict", str(fake), str(_drawn_one(tmp_path / "one.png"))]) == 2
    assert capsys.readouterr().err == (f"digits: error: {fake}: not an ONNX model ({what}); "
                                       "make one with `digits export`\n")


def test_a_checkpoint_under_an_onnx_name_is_read_as_the_checkpoint_it_is(tmp_path, capsys):
    from digits.predictor import load_predictor

    renamed = tmp_path / "model.onnx"
    renamed.write_bytes(MODEL.read_bytes())
    assert load_predictor(renamed).backend == "pytorch"
    image = str(_drawn_one(tmp_path / "one.png"))
    assert main(["predict", str(renamed), image, "--json"]) == 0
    by_name = json.loads(capsys.readouterr().out)[0]["probabilities"]
    assert main(["predict", str(MODEL), image, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["probabilities"] == by_name


def test_commands_that_need_a_checkpoint_refuse_an_onnx_model_without_naming_others(onnx_model, tmp_path, capsys):
    says = (f"digits: error: {onnx_model}: an ONNX model, not a digits checkpoint; this command needs a "
            "checkpoint.pt that digits wrote (predict and serve read ONNX models)\n")
    support = tmp_path / "support" / "a"
    support.mkdir(parents=True)
    for command in (["export", str(onnx_model), "--out", str(tmp_path / "again.onnx")],
                    ["fewshot-predict", str(onnx_model), "--support", str(support.parent), "--query", "x.png"]):
        assert main(command) == 2
        assert capsys.readouterr().err == says, command


def test_the_readme_shows_the_json_that_predict_prints(tmp_path, capsys):
    """Its --number --json example showed a bare object; every --json prints a list, one per file."""
    image = _drawn_one(tmp_path / "one.png")
    readme = (ROOT / "README.md").read_text().splitlines()
    for flags in (["--json"], ["--number", "--json"]):
        assert main(["predict", str(MODEL), str(image), *flags]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert isinstance(printed, list) and len(printed) == 1
        shown = [line.split("#", 1)[1].strip() for line in readme
                 if line.startswith("digits predict ") and line.split("#")[0].split()[-len(flags):] == flags]
        assert shown and all(s.startswith("[{") and s.endswith("}]") for s in shown), shown
