"""Real servers for the tests: a free loopback port, and the wait until a started server answers."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, proc: subprocess.Popen, log: Path, timeout: float = 60, probe: str = "/readyz") -> None:
    """Poll `base + probe` until it answers 200; an AssertionError carrying the server's log if the
    process exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base + probe, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("server did not start:\n" + Path(log).read_text())
        time.sleep(0.1)
