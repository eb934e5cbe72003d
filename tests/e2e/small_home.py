"""One small data home, synthesised, ingested and run once per test session, for the end-to-end
tests that need a home with a bundle and then change it (faults, erasure): each copies it.

Under pytest-xdist the workers share it: the first to ask builds it in the run's common temporary
folder under a lock, the others wait for it; the home appears by a rename only when whole."""

import fcntl
import shutil
from pathlib import Path

from tests.e2e.test_cli import behavior
from tests.run_folder import run_folder

USERS, MONTHS, SEED = 600, 12, 8


def _build(folder: Path) -> None:
    data, synth = folder / "data", folder / "synth"
    behavior(data, "synth", "--out", str(synth), "--users", str(USERS), "--months", str(MONTHS), "--seed", str(SEED))
    behavior(data, "ingest", str(synth))
    behavior(data, "run")


def small_home(tmp_path_factory) -> Path:
    """The data home (read it, or copy it with `copy_of` before changing it)."""
    common = run_folder(tmp_path_factory)
    home = common / "small-home"
    with open(common / "small-home.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not home.exists():
            building = common / "small-home.building"
            shutil.rmtree(building, ignore_errors=True)     # a worker killed mid-build
            _build(building)
            building.rename(home)
    return home / "data"


def copy_of(tmp_path_factory, where: Path) -> Path:
    """A copy of the small home at `where / "data"`, to change."""
    shutil.copytree(small_home(tmp_path_factory), where / "data")
    return where / "data"
