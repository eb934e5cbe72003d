"""The arrays of an uncompressed .npz (what `np.savez` writes), mapped read-only from the file
instead of copied out of it.

The API verifies a bundle's checksums before it loads it, which leaves recommender.npz in the
page cache; mapping its arrays reuses those pages, where `np.load` copies every array into
memory the process takes fresh (1 to 4 s per GB on this machine: docs/performance.md, "Memory
first touches"). The mapping stays valid while the arrays live, even after the file is
replaced or removed: bundles are rewritten into a new folder and swapped in by renames.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np

MAP_FROM = 1 << 20   # smaller arrays are read: a mapping costs a page and a file mapping each
_LOCAL_HEADER = 30   # bytes of a zip local file header before its name and extra field


def map_npz(path: Path) -> dict[str, np.ndarray]:
    """{name: array} of the .npz at `path`, as `np.load(path, allow_pickle=False)` names and
    values them; arrays of MAP_FROM bytes or more are read-only views of the file. Raises
    ValueError when the file is not an npz of .npy entries without Python objects, OSError when
    it cannot be read. Compressed entries (`np.savez_compressed`) are read, not mapped."""
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"{info.filename} is not a .npy entry")
                if info.compress_type != zipfile.ZIP_STORED:   # (np.savez_compressed) read, not mapped
                    with zf.open(info) as entry:
                        out[info.filename[:-4]] = np.lib.format.read_array(entry, allow_pickle=False)
                    continue
                f.seek(info.header_offset)
                header = f.read(_LOCAL_HEADER)
                if header[:4] != b"PK\x03\x04":
                    raise ValueError(f"{info.filename} has no local file header")
                name_len, extra_len = struct.unpack("<HH", header[26:30])
                f.seek(info.header_offset + _LOCAL_HEADER + name_len + extra_len)
                out[info.filename[:-4]] = _array(path, f)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not an npz file ({exc})") from None
    return out


def _array(path: Path, f) -> np.ndarray:
    """The .npy array that starts at `f`'s position."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version} is not read here")
    if dtype.hasobject:
        raise ValueError("an array holds Python objects (not allowed)")
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize < MAP_FROM:
        data = np.fromfile(f, dtype=dtype, count=count)
        if data.size != count:
            raise ValueError("an array is cut short")
        return data.reshape(shape, order="F" if fortran else "C")
    return np.memmap(path, dtype=dtype, mode="r", offset=f.tell(), shape=shape,
                     order="F" if fortran else "C").view(np.ndarray)
