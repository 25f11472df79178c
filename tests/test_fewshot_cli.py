"""`digits fewshot` (a further-reduced --quick on the tiny synthetic MNIST) and
`digits fewshot-predict` on folders of synthetic images, plus its one-line errors."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from digits.checkpoint import describe, save_checkpoint
from digits.cli import main
from digits.errors import DigitsError
from digits.fewshot import report
from digits.fewshot.predict import Support, load_image, load_support, predict
from digits.models import create_model

TINY = ["--quick", "--val-size", "50", "--shots", "1,full", "--min-steps", "3", "--max-steps", "3",
        "--train-episodes", "3", "--train-shots", "1", "--batch-size", "8", "--eval-shots", "1,2", "--episodes", "5", "--queries", "2",
        "--no-progress"]


def _square(row: int, col: int, light_paper: bool) -> Image.Image:
    """A 6x6 blob at (row, col) on a 28x28 page: white-on-black, or ink on paper."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[row:row + 6, col:col + 6] = 255
    return Image.fromarray(255 - pixels if light_paper else pixels)


@pytest.fixture(scope="module")
def fewshot_run(tmp_path_factory):
    from conftest import write_mnist

    root = tmp_path_factory.mktemp("fewshot")
    data = write_mnist(root / "mnist")
    assert main(["fewshot", "--data-dir", str(data), "--out", str(root / "out"), *TINY]) == 0
    return root / "out"


def test_fewshot_writes_results_tables_plots_and_embedding(fewshot_run):
    results = json.loads((fewshot_run / "fewshot.json").read_text())
    rows = results["learning_curve"]["rows"]
    assert [r["k"] for r in rows] == [1, "full"] and [r["subsets"] for r in rows] == [2, 2]
    assert rows[0]["train_images"] == 10 and rows[1]["train_images"] == results["split_sizes"]["train"]
    for method in ("network", "nearest_neighbour", "nearest_class_mean"):
        assert all(0 <= v <= 1 for v in rows[0][method]["values"])
    unseen = results["unseen_classes"]
    assert unseen["train_classes"] == [0, 1, 2, 3, 4] and unseen["test_classes"] == [5, 6, 7, 8, 9]
    assert [r["shots"] for r in unseen["rows"]] == [1, 2] and unseen["rows"][0]["embedding"]["n"] == 5
    assert results["config"]["episodes"] == 5 and results["config"]["subsets"] == 2  # flags override --quick
    md = (fewshot_run / "fewshot.md").read_text()
    assert "| 1 | 10 | 2 | 3 |" in md and "learning_curve.png" in md and "95% confidence" in md
    for name in ("learning_curve.png", "unseen_classes.png", "embedding.pt"):
        assert (fewshot_run / name).stat().st_size > 0


def test_fewshot_predict_names_classes_by_folder(fewshot_run, tmp_path, capsys):
    # preprocessing centres each image, so the classes differ by shape: a bar and a square blob;
    # every bar preprocesses to the same image, so a bar query sits on the bars' prototype
    support = tmp_path / "support"
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 13:15] = 255
    for name in ("bar", "blob"):
        (support / name).mkdir(parents=True)
        for i, col in enumerate((3, 11, 19)):
            if name == "bar":
                Image.fromarray(np.roll(bar, col - 13, axis=1)).save(support / name / f"{i}.png")
            else:
                _square(10, col, light_paper=(i == 0)).save(support / name / f"{i}.png")
    query = tmp_path / "q.png"
    Image.fromarray(255 - np.roll(bar, 5, axis=1)).save(query)  # dark on light, elsewhere
    assert main(["fewshot-predict", str(fewshot_run / "embedding.pt"), "--support", str(support),
                 "--query", str(query), str(query), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["classes"] == ["bar", "blob"] and len(out["predictions"]) == 2
    assert out["predictions"][0]["class"] == "bar" and 0.5 < out["predictions"][0]["probability"] <= 1


def test_prototype_prediction_with_a_toy_embedding():
    class TopMinusBottom(torch.nn.Module):  # 1-d embedding: ink in the top half minus the bottom half
        def forward(self, images):
            return (images[:, 0, :14].mean((1, 2)) - images[:, 0, 14:].mean((1, 2))).unsqueeze(1)

    toy = TopMinusBottom()
    toy.register_parameter("unused", torch.nn.Parameter(torch.zeros(1)))  # predict_logits reads a device
    top = [torch.from_numpy(np.array(_square(2, c, False))).view(1, 28, 28) for c in (3, 11)]
    bottom = [torch.from_numpy(np.array(_square(20, c, False))).view(1, 28, 28) for c in (3, 11)]
    support = Support(torch.stack(top + bottom), torch.tensor([0, 0, 1, 1]), ["top", "bottom"])
    queries = torch.stack([bottom[0], top[1], torch.from_numpy(np.array(_square(18, 20, False))).view(1, 28, 28)])
    result = predict(toy, support, queries)
    assert result.classes == [1, 0, 1]
    assert torch.allclose(result.probs.sum(1), torch.ones(3))


def test_loader_makes_centred_white_ink_on_black(tmp_path):
    Image.new("RGB", (56, 40), "white").save(tmp_path / "paper.png")
    _square(10, 10, light_paper=True).convert("RGB").save(tmp_path / "ink.png")
    with pytest.raises(DigitsError, match="paper.png.*no digit found"):
        load_image(tmp_path / "paper.png")  # blank paper: nothing to classify
    image = load_image(tmp_path / "ink.png")
    assert image.shape == (1, 28, 28) and image.dtype == torch.uint8
    assert image[0, 14, 14] > 200 and image[0, 0, 0] == 0  # ink centred, background black


def _error(args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("digits: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_fewshot_predict_errors_are_one_line(fewshot_run, tmp_path, capsys):
    emb = str(fewshot_run / "embedding.pt")
    image = tmp_path / "q.png"
    _square(2, 2, False).save(image)
    err = _error(["fewshot-predict", emb, "--support", str(tmp_path / "nope"), "--query", str(image)], capsys)
    assert "no such folder" in err
    (tmp_path / "s" / "a").mkdir(parents=True)
    (tmp_path / "s" / "b").mkdir()
    _square(2, 2, False).save(tmp_path / "s" / "a" / "1.png")
    err = _error(["fewshot-predict", emb, "--support", str(tmp_path / "s"), "--query", str(image)], capsys)
    assert "no images in this class folder" in err and str(tmp_path / "s" / "b") in err
    seed = save_checkpoint(tmp_path / "seed.pt", create_model("seed"), describe("seed", {}))
    err = _error(["fewshot-predict", str(seed), "--support", str(tmp_path / "s"), "--query", str(image)],
                 capsys)
    assert "'seed' classifier, not a few-shot embedding" in err
    (tmp_path / "s" / "b" / "2.png").write_text("not an image")
    err = _error(["fewshot-predict", emb, "--support", str(tmp_path / "s"), "--query", str(image)], capsys)
    assert "2.png: cannot read it as an image" in err


def test_fewshot_bad_counts_are_one_line(tmp_path, capsys):
    err = _error(["fewshot", "--out", str(tmp_path / "o"), "--shots", "1,x", "--no-download"],
                 capsys)
    assert "bad count 'x'" in err


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The synthetic MNIST; with --val-size 50 its fewest training images of a digit are 22
    (digits 0 and 5), and every test digit has 10."""
    from conftest import write_mnist

    return write_mnist(tmp_path_factory.mktemp("fewshot-data") / "mnist")


REFUSED = {  # flags -> what the one line says
    "--threads -1": "--threads must not be negative, got -1",
    "--curve-model protonet": "--curve-model: model 'protonet' is an embedding",
    "--curve-model nope": "--curve-model: unknown model 'nope'",
    "--min-steps 5 --max-steps 4": "--min-steps 5 is above --max-steps 4",
    "--shots 1,23,full": "--shots 23: training digit 0 has only 22 images",
    "--train-shots 20 --queries 3": "--train-shots 20 + --queries 3 = 23 images of each of digits 0-4, "
                                    "but training digit 0 has only 22",
    "--eval-shots 1,9": "--eval-shots 9 + --queries 2 = 11 images of each of digits 5-9, "
                        "but test digit 5 has only 10",
    "--queries 9": "--eval-shots 2 + --queries 9 = 11 images",
    "--no-download --data-dir /nonexistent/mnist": "/nonexistent/mnist",
}


@pytest.mark.parametrize("flags", REFUSED)
def test_fewshot_refuses_impossible_settings_before_any_work(tiny_data, tmp_path, capsys, monkeypatch, flags):
    """Each used to fail only after the output folder was made: --threads -1 and --curve-model
    protonet with a traceback (the latter after training), counts larger than a class after
    the training runs before them, missing data with OUT left behind."""
    import digits.fewshot.curve as curve
    import digits.fewshot.protonet as protonet

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(curve, "train_classifier", no_training)
    monkeypatch.setattr(protonet, "optimise", no_training)
    out = tmp_path / "out"
    err = _error(["fewshot", "--data-dir", str(tiny_data), "--out", str(out), *TINY, *flags.split()], capsys)
    assert REFUSED[flags] in err, err
    assert not out.exists()


def test_a_rerun_removes_the_previous_results_before_it_trains(tiny_data, tmp_path, capsys, monkeypatch):
    """A rerun into the same OUT that stopped part-way (Ctrl-C, a crash) left the old fewshot.json and
    fewshot.md, which describe another experiment, beside whatever it had written."""
    import digits.fewshot.curve as curve

    out = tmp_path / "out"
    out.mkdir()
    old = ("fewshot.json", "fewshot.md", "learning_curve.png", "unseen_classes.png", "embedding.pt")
    for name in (*old, "notes.txt"):
        (out / name).write_text("the previous experiment's")

    def interrupted(*args, **kwargs):  # the results are removed before the first training; the
        # previous embedding stays until a new one replaces it (a failed rerun must not cost it)
        assert sorted(p.name for p in out.iterdir()) == ["embedding.pt", "notes.txt"]
        raise KeyboardInterrupt

    monkeypatch.setattr(curve, "train_classifier", interrupted)
    assert main(["fewshot", "--data-dir", str(tiny_data), "--out", str(out), *TINY]) == 130
    assert capsys.readouterr().err.strip() == "digits: interrupted"
    assert sorted(p.name for p in out.iterdir()) == ["embedding.pt", "notes.txt"]  # what is not fewshot's stays
    assert (out / "embedding.pt").read_text() == "the previous experiment's"


def test_fewshot_counts_that_just_fit_are_accepted(tiny_data, tmp_path):
    """Each count at the edge of its check (22 training images of digit 0, 10 test images of
    digit 5): the run goes through."""
    flags = ["--shots", "22", "--train-shots", "19", "--queries", "3", "--eval-shots", "7",
             "--min-steps", "1", "--max-steps", "1", "--train-episodes", "1", "--episodes", "2"]
    assert main(["fewshot", "--data-dir", str(tiny_data), "--out", str(tmp_path / "o"), *TINY, *flags]) == 0
    results = json.loads((tmp_path / "o" / "fewshot.json").read_text())
    assert [r["train_images"] for r in results["learning_curve"]["rows"]] == [220]
    assert [r["shots"] for r in results["unseen_classes"]["rows"]] == [7]


def test_one_episode_and_one_subset_report_no_interval(tiny_data, tmp_path, capsys):
    """--episodes 1 used to report a 95% interval of ± 0.00; with one value there is none."""
    flags = ["--subsets", "1", "--episodes", "1", "--eval-shots", "1"]
    assert main(["fewshot", "--data-dir", str(tiny_data), "--out", str(tmp_path / "o"), *TINY, *flags]) == 0
    out = capsys.readouterr().out
    assert "+- n/a" in out and "+- 0.00" not in out
    md = (tmp_path / "o" / "fewshot.md").read_text()
    assert "± 0.00" not in md and "n/a: one episode gives no interval" in md
    curve_row, unseen_row = [line for line in md.splitlines() if line.startswith("| 1 |")]  # k = 1, 1-shot
    assert curve_row.count("± n/a") == 3 and unseen_row.count("± n/a") == 2
    # fewshot.json: no spread is null, which strict JSON readers (JSON.parse, jq) take; NaN they refuse
    text = (tmp_path / "o" / "fewshot.json").read_text()
    results = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in fewshot.json"))
    curve, unseen = results["learning_curve"]["rows"][0], results["unseen_classes"]["rows"][0]
    assert [curve[m]["std"] for m in ("network", "nearest_neighbour", "nearest_class_mean")] == [None] * 3
    assert [unseen[m][s] for m in ("embedding", "pixels") for s in ("std", "ci95")] == [None] * 4
    assert report.render(results) == md  # fewshot.md is what fewshot.json holds, read back
    assert (tmp_path / "o" / "unseen_classes.png").stat().st_size > 0


def test_support_skips_hidden_folders_and_files(tmp_path):
    """Jupyter's .ipynb_checkpoints was taken for a class and macOS's ._a.png (AppleDouble
    metadata, not an image) failed the command; `digits predict` skips dot-names too."""
    for name in ("a", "b", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
        _square(2, 2, False).save(tmp_path / name / "1.png")
    (tmp_path / "a" / "._1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble, not an image")
    (tmp_path / "b" / ".hidden.png").write_bytes(b"")
    support = load_support(tmp_path)
    assert support.classes == ["a", "b"] and support.labels.tolist() == [0, 1]


@pytest.mark.parametrize("ks", [(10, 20, 50), (1, 2, 5, 10, 20, 50, 100, 500, "full")])
def test_learning_curve_x_axis_labels_only_the_measured_k(ks, monkeypatch):
    """With ks 10, 20, 50 the log axis also labelled minor ticks (3x10^1, 4x10^1) beside them."""
    from digits.fewshot import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    rows = [{"k": k, **{m: {"mean": 0.9, "std": 0.01} for m in plots._LABELS}} for k in ks]
    plots.plot_learning_curve(rows, 5500, "unused.png")
    ax = drawn[0].axes[0]
    drawn[0].canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(k) for k in ks]
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    plots.plt.close(drawn[0])
    assert minor == []


def test_fewshot_takes_any_integer_seed_as_digits_train_does(tiny_data, tmp_path, capsys):
    """Its subset and episode seeds are seed * 1000 + i: --seed 10**17 raised torch's "Overflow when
    unpacking long long" as a traceback; now every seed is taken modulo 2**64, as digits train does."""
    flags = ["--subsets", "1", "--episodes", "1", "--eval-shots", "1"]
    for seed, out in ((10**17, "big"), (10**17 + 2**64, "wrapped")):
        assert main(["fewshot", "--data-dir", str(tiny_data), "--out", str(tmp_path / out), *TINY, *flags,
                     "--seed", str(seed)]) == 0
    results = [json.loads((tmp_path / out / "fewshot.json").read_text()) for out in ("big", "wrapped")]
    for part in ("learning_curve", "unseen_classes"):  # (their cells also hold training times)
        assert results[0][part]["rows"] == results[1][part]["rows"]


def _two_classes(root):
    """A support folder: class "a" (a bar), class "b" (a square blob)."""
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 13:15] = 255
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
    Image.fromarray(bar).save(root / "a" / "1.png")
    _square(10, 10, False).save(root / "b" / "1.png")
    return root


def test_a_support_file_is_called_a_file_not_a_missing_folder(fewshot_run, tmp_path, capsys):
    """--support qc.png, an existing image, was refused as "no such folder"."""
    image = tmp_path / "qc.png"
    _square(2, 2, False).save(image)
    err = _error(["fewshot-predict", str(fewshot_run / "embedding.pt"), "--support", str(image),
                  "--query", str(image)], capsys)
    assert f"--support {image}: a file, not a folder" in err and "no such folder" not in err
    assert "one sub-folder of example images per class" in err


def test_a_folder_named_like_an_image_in_a_class_is_read_as_predict_reads_folders(tmp_path):
    """support/b/x.png/ (a folder) was taken for an image and stopped the run ("is a folder, not an
    image"); like `digits predict` with a folder, the images under a class folder are read
    recursively, so its images are examples of b, and an empty one is nothing."""
    support = _two_classes(tmp_path / "support")
    (support / "b" / "x.png").mkdir()
    (support / "a" / "empty.png").mkdir()
    _square(3, 3, False).save(support / "b" / "x.png" / "2.png")
    result = load_support(support)
    assert result.classes == ["a", "b"] and result.labels.tolist() == [0, 1, 1]


def test_an_unreadable_query_is_reported_and_the_others_predicted(fewshot_run, tmp_path, capsys):
    """One bad query (missing.png) printed nothing for the others and exited 2; as `digits predict`
    does, each bad file gets its own line on stderr, the rest are predicted, and the exit code is 1."""
    support = _two_classes(tmp_path / "support")
    good = tmp_path / "qc.png"
    _square(2, 2, False).save(good)
    other = tmp_path / "qx.jpg"
    _square(5, 5, False).convert("RGB").save(other)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    args = ["fewshot-predict", str(fewshot_run / "embedding.pt"), "--support", str(support),
            "--query", str(good), str(tmp_path / "missing.png"), str(broken), str(other)]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == [str(good), str(other)]
    missing, unreadable = err.splitlines()
    assert missing == f"digits: error: {tmp_path / 'missing.png'}: no such file or folder"
    assert unreadable.startswith(f"digits: error: {broken}: cannot read it as an image (")
    assert main([*args, "--json"]) == 1
    out, err = capsys.readouterr()
    assert [row["file"] for row in json.loads(out)["predictions"]] == [str(good), str(other)]
    assert len(err.splitlines()) == 2
    assert main(args[:-4] + [str(broken), "--json"]) == 1  # nothing readable: no predictions, still JSON
    out, err = capsys.readouterr()
    assert json.loads(out) == {"classes": ["a", "b"], "predictions": []} and err.count("\n") == 1


def test_a_query_folder_is_read_for_its_images_as_predict_reads_it(fewshot_run, tmp_path, capsys):
    """A folder as --query was refused ("is a folder, not an image"); `digits predict` reads the
    image files in it, recursively, skipping names starting with ".", and so does fewshot-predict."""
    from digits.predict import expand_paths

    support = _two_classes(tmp_path / "support")
    queries = tmp_path / "queries"
    (queries / "sub").mkdir(parents=True)
    (queries / ".hidden").mkdir()
    for path in (queries / "1.png", queries / "sub" / "2.png", queries / ".hidden" / "3.png"):
        _square(2, 2, False).save(path)
    (queries / "notes.txt").write_text("not an image")
    (tmp_path / "nothing").mkdir()
    args = ["fewshot-predict", str(fewshot_run / "embedding.pt"), "--support", str(support), "--query"]
    assert main([*args, str(queries), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["predictions"]
    assert [row["file"] for row in rows] == [str(p) for p in expand_paths([queries])[0]] == [
        str(queries / "1.png"), str(queries / "sub" / "2.png")]
    assert main([*args, str(tmp_path / "nothing"), str(queries / "1.png")]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"{queries / '1.png'}: ")
    assert err == f"digits: error: {tmp_path / 'nothing'}: no image files in this folder\n"
