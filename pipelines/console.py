"""Terminal output: progress on stderr when it is a terminal (and not --quiet), results on stdout."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console as RichConsole


class _Status:
    def __init__(self, live) -> None:
        self._live = live

    def update(self, message: str) -> None:
        if self._live is not None:
            self._live.update(message)


class Console:
    def __init__(self, quiet: bool = False) -> None:
        self.interactive = sys.stderr.isatty() and not quiet
        self._err = RichConsole(stderr=True)

    @contextmanager
    def status(self, message: str) -> Iterator[_Status]:
        """A spinner with a changing message on a terminal; silent in pipes."""
        if not self.interactive:
            yield _Status(None)
            return
        with self._err.status(message) as live:
            yield _Status(live)

    def progress(self, message: str) -> None:
        """A progress line (stderr, terminals only)."""
        if self.interactive:
            self._err.print(f"[dim]{message}[/dim]")

    def result(self, text: str) -> None:
        print(text, flush=True)
