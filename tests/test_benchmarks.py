"""The side-by-side benchmark's bookkeeping (benchmarks/cpu_vs_seed.py), without running programs."""
import pytest

from conftest import benchmark_script


def _bench():
    return benchmark_script("cpu_vs_seed")


def test_summary_of_a_subset_of_programs_gives_ratios_of_medians():
    bench = _bench()
    row = lambda wall, acc: {"wall_s": wall, "cpu_s": 2 * wall, "test_accuracy": acc}  # noqa: E731
    runs = {"seed program": [row(40, 0.97), row(44, 0.98), row(60, 0.98)],
            "digits run --recipe fast": [row(10, 0.99), row(11, 0.99), row(30, 0.98)]}
    summary = bench.summarise(runs)
    assert summary["digits run --recipe fast"]["speedup_vs_seed_program"] == 4.0  # 44 / 11
    assert summary["seed program"]["mean_test_accuracy"] == (0.97 + 0.98 + 0.98) / 3


def test_rounds_alternate_the_order_of_the_programs():
    bench = _bench()
    order = [bench.round_order(["a", "b", "c"], i) for i in range(3)]
    assert order == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"]]


def test_the_no_kernels_program_is_the_seed_recipe():
    bench = _bench()
    from pathlib import Path

    cmd = bench.command(bench.NO_KERNELS, "python", 1, 2, Path("data"), Path("out"))
    assert cmd == bench.command(bench.PROGRAMS[1], "python", 1, 2, Path("data"), Path("out"))
    assert "--recipe" in cmd and cmd[cmd.index("--recipe") + 1] == "seed"


def test_without_the_seed_program_the_summary_has_medians_and_no_speed_up():
    bench = _bench()
    row = lambda wall: {"wall_s": wall, "cpu_s": wall, "test_accuracy": 0.97}  # noqa: E731
    runs = {"digits run (seed recipe)": [row(8), row(9), row(20)], bench.NO_KERNELS: [row(12), row(13), row(14)]}
    summary = bench.summarise(runs)
    assert summary[bench.NO_KERNELS]["median_wall_s"] == 13
    assert all("speedup_vs_seed_program" not in s for s in summary.values())
    result = {"seeds": [0, 1, 2], "runs": runs, "summary": summary}
    assert "| 9.0 |" in bench.table(result) and "| - |" in bench.table(result)


def test_ensemble_choice_is_the_best_validation_accuracy_ties_to_the_first():
    choose = benchmark_script("cpu_ensemble").choose
    rows = [{"val_accuracy": 0.99, "test_accuracy": 0.5}, {"val_accuracy": 0.995, "test_accuracy": 0.1},
            {"val_accuracy": 0.995, "test_accuracy": 0.9}, {"val_accuracy": 0.98, "test_accuracy": 1.0}]
    assert choose(rows) is rows[1]


def test_ensemble_scores_are_what_digits_evaluate_prints(tiny_mnist, tmp_path, capsys):
    import json

    from digits.cli import main

    bench = benchmark_script("cpu_ensemble")
    paths = []
    for seed, val_size in ((0, 50), (1, 50), (2, 0)):  # the third trains on every training image
        out = tmp_path / f"s{seed}"
        assert main(["train", "--data-dir", str(tiny_mnist), "--out", str(out), "--seed", str(seed), "--epochs", "1",
                     "--batch-size", "32", "--val-size", str(val_size), "--no-progress"]) == 0
        paths.append(str(out / "checkpoint.pt"))
    result = bench.score({"one": paths[:1], "both": paths[:2]}, tiny_mnist, declared={"three": paths})
    assert [(r["members"], r["declared"]) for r in result["ensembles"]] == [
        (1, False), (1, False), (2, False), (2, False), (3, True), (3, True)]
    assert result["val_size"] == 50
    capsys.readouterr()
    for row in result["ensembles"]:
        chosen = paths[:row["members"]]
        for split in ("val", "test"):
            if row["declared"] and split == "val":  # a member held out nothing: no validation score
                assert row["val_accuracy"] is None
                continue
            assert main(["evaluate", *chosen, "--data-dir", str(tiny_mnist), "--split", split, "--json"]
                        + ["--tta"] * row["tta"]) == 0
            assert json.loads(capsys.readouterr().out)["accuracy"] == row[f"{split}_accuracy"], (row, split)
    assert result["chosen"] is bench.choose(result["ensembles"][:4])  # never a declared one
    assert result["members"][2]["val_accuracy"] is None and result["members"][2]["model"].endswith("(all 60,000)")
    assert result["per_model"]["seed"]["runs"] == 2
    table = bench.table(result)
    assert "| both | 2 | yes |" in table and "| three (declared) | 3 | yes | - |" in table
    fixed = bench.score({"one": paths[:1], "both": paths[:2]}, tiny_mnist, declared={"three": paths},
                        result=("one", True))  # a rule fixed the result: validation chooses nothing
    assert (fixed["chosen"]["candidate"], fixed["chosen"]["tta"]) == ("one", True)
    assert "| one (the result) | 1 | yes |" in bench.table(fixed) and "(chosen)" not in bench.table(fixed)
    with pytest.raises(SystemExit, match="names no --candidate"):
        bench.score({"one": paths[:1]}, tiny_mnist, result=("two", False))


def test_the_seed_recipe_trains_on_all_60000_images_as_the_seed_program_does():
    """By default digits holds out 5,000 images: the side-by-side gave it 430 steps to the peer's 470."""
    bench = _bench()
    from pathlib import Path

    seed_cmd, fast_cmd = (bench.command(p, "python", 0, 1, Path("d"), Path("o")) for p in bench.PROGRAMS[1:])
    assert seed_cmd[seed_cmd.index("--val-size") + 1] == "0"
    assert "--val-size" not in fast_cmd  # the fast recipe runs as users run it


def test_every_program_gets_the_thread_placement_digits_gives_itself(tmp_path, monkeypatch):
    """digits pins its threads one per core when they use every core; the seed program ran unpinned."""
    import json
    import sys

    bench = _bench()
    monkeypatch.setattr(bench.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(bench.sys, "platform", "linux")
    assert bench.placement(2) == bench.placement(0) == {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}
    assert bench.placement(1) == {}
    monkeypatch.setenv("OMP_PLACES", "threads")  # the caller's own placement reaches no program
    monkeypatch.setenv("GOMP_CPU_AFFINITY", "0")
    report = ("import json, os, sys; json.dump({'test_accuracy': 0.5, 'env': {k: os.environ.get(k) for k in "
              "('OMP_PROC_BIND', 'OMP_PLACES', 'GOMP_CPU_AFFINITY')}}, open(sys.argv[1] + '/metrics.json', 'w'))")
    for omp, expected in ((bench.placement(2), ["close", "cores", None]), (None, [None, None, None])):
        row = bench.timed_run([sys.executable, "-c", report, str(tmp_path)], tmp_path, omp=omp)
        env = json.loads((tmp_path / "metrics.json").read_text())["env"]
        assert row["test_accuracy"] == 0.5 and list(env.values()) == expected


def test_run_summary_gathers_what_each_run_recorded(tmp_path, capsys):
    summary = benchmark_script("run_summary")
    import json
    import sys
    for seed, val in ((3, 0.9951), (4, None)):  # None: a run that held nothing out
        run = tmp_path / f"bn-s{seed}"
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps({
            "model": "bn-cnn", "seed": seed, "val_accuracy": val, "train_seconds": 100.0 + seed,
            "total_seconds": 101.0 + seed, "epoch_seconds": [1.0], "torch_version": "2.13.0+cpu"}))
        (run / "config.json").write_text(json.dumps({"data": {"val_size": 5000 if val else 0}, "threads": 1}))
    (tmp_path / "no-metrics").mkdir()  # a run that never finished: left out
    out = tmp_path / "members.json"
    argv = sys.argv
    sys.argv = ["run_summary.py", str(tmp_path / "*"), "--json", str(out)]
    try:
        summary.main()
    finally:
        sys.argv = argv
    rows = json.loads(out.read_text())["runs"]
    assert [r["seed"] for r in rows] == [3, 4]
    assert rows[0]["val_accuracy"] == 0.9951 and "val_accuracy" not in rows[1]
    assert rows[1]["train_seconds"] == 104.0 and rows[1]["val_size"] == 0 and rows[0]["threads"] == 1
    assert "epoch_seconds" not in rows[0]
    sys.argv = ["run_summary.py", str(tmp_path / "nothing-*"), "--json", str(out)]
    try:
        with pytest.raises(SystemExit, match="no run folder"):
            summary.main()
    finally:
        sys.argv = argv
