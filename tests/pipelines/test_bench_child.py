"""A benchmark child's peak memory is its own, whatever the size of the process that starts it."""

import numpy as np

from pipelines.bench.child import run_child


def test_peak_is_the_childs_own_not_the_parents():
    held = np.ones(300_000_000 // 8)   # the parent touches 300 MB (a scale run holds its lines)
    held += 1
    small = run_child("res = {}")
    large = run_child("import numpy as np\nb = np.ones(200_000_000 // 8)\nb += 1\nres = {'n': int(b.size)}")
    assert small["peak_mb"] < 150, small            # a bare interpreter, not the parent's 300+ MB
    assert 200 <= large["peak_mb"] < 350, large     # the child's own 200 MB are counted
    assert large["n"] == 25_000_000
    del held
