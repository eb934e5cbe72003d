"""Comparing two bundles' array files, for the tests that publish the same bundle two ways."""

from pathlib import Path

import numpy as np


def assert_arrays_close(a: Path, b: Path, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    """The two .npz files hold the same arrays: floats within the tolerances, the rest equal."""
    x, y = np.load(a, allow_pickle=False), np.load(b, allow_pickle=False)
    assert sorted(x.files) == sorted(y.files), a.name
    for k in x.files:
        if x[k].dtype.kind == "f":
            np.testing.assert_allclose(x[k], y[k], rtol=rtol, atol=atol, err_msg=f"{a.name}:{k}")
        else:
            np.testing.assert_array_equal(x[k], y[k], err_msg=f"{a.name}:{k}")
