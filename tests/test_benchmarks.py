"""The side-by-side benchmark's bookkeeping (benchmarks/cpu_vs_seed.py), without running programs."""
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
