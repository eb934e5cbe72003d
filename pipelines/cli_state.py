"""What the CLI's global options set for the command that runs: the data home and the console."""

from __future__ import annotations

from behavior.store.datahome import DataHome
from pipelines.console import Console


class State:
    home: DataHome
    console: Console


state = State()
