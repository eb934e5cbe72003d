"""Faults: kill -9 during a run, during publish and during an erasure's bundle swap; disk full
and permission errors; two runs at once. The data home stays consistent and the next command works."""

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from behavior.store.datahome import DataHome
from pipelines.lake import locked, table_files
from behavior.store.bundle import verify
from tests.e2e.small_home import copy_of
from tests.e2e.test_cli import behavior

CLI = "from pipelines.cli import main; import sys; sys.argv = ['behavior'] + sys.argv[1:]; main()"


def patched(data: Path, patch: str, *args: str) -> subprocess.CompletedProcess:
    """`behavior --data-dir data ARGS` in a process where `patch` (Python) ran first."""
    code = textwrap.dedent(patch) + "\n" + CLI
    return subprocess.run([sys.executable, "-c", code, "--data-dir", str(data), *args], capture_output=True,
                          text=True, timeout=300)


def consistent(data: Path) -> str:
    """The active bundle verifies, no temporary folder is left, and CURRENT names a bundle."""
    bundles = data / "artifacts" / "bundles"
    current = (data / "artifacts" / "CURRENT").read_text().strip()
    verify(bundles / current)
    assert not [p.name for p in bundles.iterdir() if p.name.startswith(".")]
    assert not (data / "lake" / "_txn").exists() or not any((data / "lake" / "_txn").iterdir())
    return current


KILL_IN_STAGE = """
import os, signal
from pipelines import stages
from pipelines.runner import Stage
real = stages.STAGES["churn"]
def die(ctx):
    os.kill(os.getpid(), signal.SIGKILL)
stages.STAGES["churn"] = Stage("churn", real.needs, die)
"""

KILL_IN_PUBLISH = """
import os, signal
import behavior.store.bundle as p
real, count = p._write, [0]
def write(*a, **k):
    n = real(*a, **k)
    count[0] += 1
    if count[0] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return n
p._write = write
"""


@pytest.mark.slow
@pytest.mark.parametrize("patch", [KILL_IN_STAGE, KILL_IN_PUBLISH], ids=["during-a-stage", "during-publish"])
def test_kill_during_a_run_leaves_the_old_bundle_served_and_the_next_run_works(tmp_path_factory, tmp_path, patch):
    data = copy_of(tmp_path_factory, tmp_path)
    before = (data / "artifacts" / "CURRENT").read_text().strip()
    lake_before = sorted(str(p) for p in (data / "lake").rglob("*.parquet"))
    out = patched(data, patch, "run")
    assert out.returncode == -9, out.stderr
    assert (data / "artifacts" / "CURRENT").read_text().strip() == before
    verify(data / "artifacts" / "bundles" / before)
    assert sorted(str(p) for p in (data / "lake").rglob("*.parquet")) == lake_before
    behavior(data, "run")
    assert consistent(data) != before


KILL_IN_SWAP = """
import os, signal
from pathlib import Path
real = Path.rename
def rename(self, target):
    out = real(self, target)
    if Path(target).name.startswith(".erased-"):
        os.kill(os.getpid(), signal.SIGKILL)   # the old folder moved away, the new one not yet in place
    return out
Path.rename = rename
"""


def test_kill_during_an_erasure_swap_is_finished_by_the_next_command(tmp_path_factory, tmp_path):
    from tests.e2e.test_forget import files_naming

    data = copy_of(tmp_path_factory, tmp_path)
    out = patched(data, KILL_IN_SWAP, "forget", "u0000002")
    assert out.returncode == -9, out.stderr
    current = (data / "artifacts" / "CURRENT").read_text().strip()
    assert not (data / "artifacts" / "bundles" / current).exists()   # mid-swap
    behavior(data, "forget", "u0000002")                                # the next command finishes it
    consistent(data)
    assert files_naming(data, "u0000002") == []


@pytest.mark.parametrize("error", [f"OSError({errno.ENOSPC}, 'No space left on device')",
                                   f"PermissionError({errno.EACCES}, 'Permission denied', '/data/lake')"],
                         ids=["disk-full", "permission"])
def test_disk_full_and_permission_errors_are_clear_and_change_nothing(tmp_path_factory, tmp_path, error):
    data = copy_of(tmp_path_factory, tmp_path)
    patch = f"""
    import pyarrow.parquet as pq
    def write_table(*a, **k):
        raise {error}
    pq.write_table = write_table
    """
    (tmp_path / "more.csv").write_text("user_id,item_id,amount,paid_at\nu1,i1,2.5,2025-01-01T10:00:00Z\n"
                                       "u1,i1,oops,2025-01-01T10:00:00Z\n")
    files = sorted(str(p) for p in (data / "lake").rglob("*") if p.is_file())
    out = patched(data, patch, "ingest", str(tmp_path / "more.csv"))
    assert out.returncode == 1, (out.returncode, out.stderr)
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and ("No space left" in message or "Permission denied" in message)
    assert "Traceback" not in out.stderr
    assert sorted(str(p) for p in (data / "lake").rglob("*") if p.is_file()) == files
    behavior(data, "ingest", str(tmp_path / "more.csv"))


def test_two_runs_at_once_are_serialised_with_a_clear_message(tmp_path_factory, tmp_path):
    data = copy_of(tmp_path_factory, tmp_path)
    with locked(DataHome(data), "run"):
        out = behavior(data, "run", check=False)
    assert out.returncode == 2
    assert "in use by `behavior run`" in out.stderr and "run the command again" in out.stderr
    behavior(data, "run")
    consistent(data)
    assert table_files(data / "lake", "payments")
