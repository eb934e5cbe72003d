"""The temporary folder common to a whole test run, where its processes meet (locks, a home built
once). Under pytest-xdist each worker's base temporary folder lies inside the run's, which all its
workers share; in one process it is the base folder itself."""

import os
from pathlib import Path


def run_folder(tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
