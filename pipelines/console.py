"""Command output. Results go to stdout. Progress goes to stderr: on a terminal a spinner with the
elapsed time; off a terminal (a pipe, a log file, a scheduler) one timestamped line per task and
stage start and end and per progress message, as text or JSON (`--log-format`), so that a
scheduler can tell a hang from slow work. `--quiet` silences both."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from rich.console import Console as RichConsole
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from behavior.errors import BehaviorError

LOG_FORMATS = ("text", "json")


class _Status:
    """What a running task reports through: `update` (a progress message) and `stage` (the
    runner's stage events)."""

    def __init__(self, console: "Console", task: str, show: Callable[[str], None] | None) -> None:
        self._console, self._task, self._show = console, task, show

    def update(self, message: str) -> None:
        if self._show is not None:
            self._show(message)
        self._console.log("progress", f"{self._task}: {message}", task=self._task, detail=message)

    def stage(self, event: dict[str, Any]) -> None:
        """A stage start or end from the runner: {"event": "stage_start", "stage", "index", "of"}
        or {"event": "stage_end", "stage", "seconds", "rows", "skipped"?}."""
        name = event["stage"]
        if event["event"] == "stage_start":
            if self._show is not None:
                self._show(f"[{event['index']}/{event['of']}] {name}")
            self._console.log("stage_start", f"stage {name} started ({event['index']}/{event['of']})", **event)
            return
        if "skipped" in event:
            text = f"stage {name} skipped after {event['seconds']:.1f} s: {event['skipped']}"
        else:
            rows = "" if event.get("rows") is None else f", {event['rows']:,} rows"
            text = f"stage {name} done in {event['seconds']:.1f} s{rows}"
        self._console.log("stage_end", text, **event)


class Console:
    def __init__(self, quiet: bool = False, log_format: str = "text") -> None:
        if log_format not in LOG_FORMATS:
            raise BehaviorError(f"--log-format {log_format}: use one of {', '.join(LOG_FORMATS)}")
        tty = sys.stderr.isatty()
        self.interactive = tty and not quiet
        self.logging = not tty and not quiet   # timestamped lines instead of a spinner
        self.log_format = log_format
        self.quiet = quiet
        self._err = RichConsole(stderr=True)

    def log(self, event: str, text: str, /, **fields: Any) -> None:
        """One timestamped line on stderr (off a terminal only): `<UTC time> <text>`, or with
        --log-format json an object {"time", "event", **fields} (`event` and `stage` of a stage
        event; `task` and `detail` of a progress message)."""
        if not self.logging:
            return
        now = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        if self.log_format == "json":
            line = json.dumps({"time": now, **fields, "event": event}, default=str)
        else:
            line = f"{now} {text}"
        print(line, file=sys.stderr, flush=True)

    @contextmanager
    def status(self, task: str) -> Iterator[_Status]:
        """A task: a spinner with its elapsed time on a terminal; off a terminal, a line when it
        starts and when it ends (or fails), with its seconds."""
        if self.interactive:
            columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
            with Progress(*columns, console=self._err, transient=True) as bar:
                tid = bar.add_task(task)
                yield _Status(self, task, lambda m: bar.update(tid, description=m))
            return
        t0 = time.monotonic()
        self.log("start", f"{task}: started", task=task)
        try:
            yield _Status(self, task, None)
        except BaseException:
            s = time.monotonic() - t0
            self.log("failed", f"{task}: failed after {s:.1f} s", task=task, seconds=round(s, 3))
            raise
        s = time.monotonic() - t0
        self.log("end", f"{task}: done in {s:.1f} s", task=task, seconds=round(s, 3))

    def progress(self, message: str) -> None:
        """A progress line: dim on a terminal, timestamped off one."""
        if self.interactive:
            self._err.print(f"[dim]{message}[/dim]")
        self.log("progress", message, detail=message)

    def note(self, text: str) -> None:
        """A line for the reader on stderr (not part of the result on stdout), unless --quiet."""
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def result(self, text: str) -> None:
        print(text, flush=True)
