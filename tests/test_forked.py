"""digits.forked: two job lists at once, one in a forked child; the child's errors reach the parent."""
import os
import sys

import pytest

from digits.errors import DigitsError
from digits.forked import run_both

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux only")


def _write(path, text):
    return lambda: path.write_text(f"{text} {os.getpid()}")


@linux
def test_both_lists_run_and_the_second_in_another_process(tmp_path):
    run_both([_write(tmp_path / "a", "a")], [_write(tmp_path / "b", "b"), _write(tmp_path / "c", "c")])
    here = (tmp_path / "a").read_text().split()
    there = [(tmp_path / n).read_text().split() for n in "bc"]
    assert here == ["a", str(os.getpid())]
    assert [t[0] for t in there] == ["b", "c"] and {t[1] for t in there} != {str(os.getpid())}
    assert there[0][1] == there[1][1]  # one child for the whole list


@linux
def test_a_childs_digits_error_is_raised_here_after_this_processs_jobs(tmp_path):
    def fail():
        raise DigitsError("cannot create figures/x.png: No space left on device")

    with pytest.raises(DigitsError, match="^cannot create figures/x.png: No space left on device$"):
        run_both([_write(tmp_path / "a", "a")], [fail])
    assert (tmp_path / "a").exists()


@linux
def test_a_child_crash_is_an_error_with_its_traceback():
    def crash():
        raise ValueError("boom")

    with pytest.raises(RuntimeError, match="ValueError: boom"):
        run_both([], [crash])


def test_without_a_second_list_everything_runs_here(tmp_path):
    run_both([_write(tmp_path / "a", "a")], [])
    assert (tmp_path / "a").read_text() == f"a {os.getpid()}"
