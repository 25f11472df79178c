"""digits.allocator: freed blocks stay in the process after keep_freed_memory()."""
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import importlib.util, os, sys
spec = importlib.util.spec_from_file_location("allocator", sys.argv[2])  # not via digits: no torch import
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
keep_freed_memory = module.keep_freed_memory
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
applied = keep_freed_memory() if sys.argv[1] == '1' else None
before = rss()
block = bytearray(16 << 20)  # zero-filled, so its pages are touched
del block
print(applied, (rss() - before) >> 20)
"""

MODULE = Path(__file__).parents[1] / "src" / "digits" / "allocator.py"


def _run(apply: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, apply, str(MODULE)], capture_output=True, text=True, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_block_is_kept_only_after_the_call():
    assert _run("0") == ["None", "0"]  # glibc's default: a 16 MB block goes back to the kernel
    applied, kept_mb = _run("1")
    assert applied == "True"
    assert int(kept_mb) >= 15
