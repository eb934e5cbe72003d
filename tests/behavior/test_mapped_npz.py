"""behavior.store.mapped_npz.map_npz: the arrays np.load gives, the large ones read-only views
of the file."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from behavior.store import mapped_npz
from behavior.store.mapped_npz import map_npz

DTYPES = st.sampled_from([np.int64, np.int32, np.float32, np.float64, np.bool_, "<U7", "<U1"])


def _same(got: dict, path) -> None:
    with np.load(path, allow_pickle=False) as npz:
        assert set(got) == set(npz.files)
        for k in npz.files:
            want = npz[k]
            assert got[k].dtype == want.dtype and got[k].shape == want.shape
            assert np.array_equal(got[k], want, equal_nan=want.dtype.kind == "f")
            assert got[k].flags.f_contiguous == want.flags.f_contiguous


@settings(max_examples=40, deadline=None)
@given(arrays=st.lists(hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=2, max_side=40)), max_size=4),
       fortran=st.booleans(), map_from=st.sampled_from([0, 64, 1 << 20]))
def test_the_arrays_of_np_load(tmp_path_factory, arrays, fortran, map_from):
    path = tmp_path_factory.mktemp("npz") / "a.npz"
    named = {f"a.{i}": np.asfortranarray(a) if fortran else a for i, a in enumerate(arrays)}
    np.savez(path, **named)
    old, mapped_npz.MAP_FROM = mapped_npz.MAP_FROM, map_from
    try:
        got = map_npz(path)
    finally:
        mapped_npz.MAP_FROM = old
    _same(got, path)


def test_large_arrays_are_read_only_views_of_the_file_and_the_small_ones_copies(tmp_path):
    path = tmp_path / "a.npz"
    big = np.arange(mapped_npz.MAP_FROM // 8 + 1, dtype=np.int64)
    np.savez(path, big=big, small=np.arange(3), scalar=np.int64(2))
    got = map_npz(path)
    _same(got, path)
    assert not got["big"].flags.writeable and got["small"].flags.writeable
    with pytest.raises(ValueError):
        got["big"][0] = 1


def test_a_compressed_npz_is_read(tmp_path):
    path = tmp_path / "a.npz"
    np.savez_compressed(path, big=np.arange(mapped_npz.MAP_FROM, dtype=np.int64), names=np.array(["a", "bc"]))
    _same(map_npz(path), path)


@pytest.mark.parametrize("content", [b"not a zip", b""])
def test_a_file_that_is_no_npz_is_a_value_error(tmp_path, content):
    path = tmp_path / "a.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError):
        map_npz(path)


def test_an_array_cut_short_is_a_value_error(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, big=np.arange(mapped_npz.MAP_FROM, dtype=np.int64))
    data = bytearray(path.read_bytes())
    start = data.index(b"\x93NUMPY")   # the entry's .npy header: say it holds twice the values
    header_end = data.index(b"\n", start)
    header = data[start:header_end].decode("latin1")
    longer = header.replace(f"({mapped_npz.MAP_FROM},)", f"({2 * mapped_npz.MAP_FROM},)")
    data[start:header_end] = longer.encode("latin1")[: header_end - start].ljust(header_end - start)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        map_npz(path)
