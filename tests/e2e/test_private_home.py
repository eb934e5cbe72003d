"""The data home is private: what the CLI writes is 0600 (files) / 0700 (folders) whatever the
umask, and a home an older version left open is tightened by the next command, which says so.
(tests/e2e/test_forget.py checks every file after ingest, run, serve and forget.)"""

import os
import stat

from tests.e2e.test_cli import behavior
from tests.e2e.test_forget import loose_modes


def test_a_home_left_open_is_tightened_by_the_next_command_which_says_so(tmp_path):
    data = tmp_path / "data"
    umask = os.umask(0o022)
    try:
        behavior(data, "keys", "add", "ops", "--scope", "admin")
        (data / "lake" / "payments").mkdir(parents=True)
        (data / "lake" / "payments" / "part-old.parquet").write_bytes(b"not read")
        for p in [data, *data.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)     # what a home written before this change looks like
        out = behavior(data, "keys", "list")
    finally:
        os.umask(umask)
    assert f"made the data home {data} private: 6 files and folders" in out.stderr
    assert loose_modes(data) == []
    again = behavior(data, "keys", "list")
    assert "private" not in again.stderr                      # said once, when something changed


def test_a_symlink_in_the_home_is_neither_followed_nor_changed(tmp_path):
    """Tightening walks the data home only: a link to a file elsewhere leaves that file as it is."""
    data, outside = tmp_path / "data", tmp_path / "shared.txt"
    behavior(data, "keys", "add", "ops", "--scope", "admin")
    outside.write_text("not the data home's\n")
    outside.chmod(0o644)
    (data / "shared.txt").symlink_to(outside)
    out = behavior(data, "keys", "list")
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644 and "private" not in out.stderr
