"""Global options in either place, and the API's port checked before any long work (issue 24)."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from pipelines.cli import app, hoist_global_options
import typer.main

CLI = [sys.executable, "-c", "from pipelines.cli import main; main()"]
GLOBAL_PARAMS = typer.main.get_command(app).params


def behavior(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_global_options_after_the_command(tmp_path):
    home = tmp_path / "home"
    out = behavior("keys", "add", "marketing", "--scope", "admin", "--data-dir", str(home), "--quiet")
    assert out.returncode == 0, out.stderr
    assert (home / "api_keys.json").exists()
    listed = behavior("keys", "list", f"--data-dir={home}")
    assert listed.returncode == 0 and listed.stdout.startswith("marketing: admin")
    run = behavior("run", "--data-dir", str(home))
    assert run.returncode == 2 and "No such option" not in run.stderr
    assert f"the lake at {home / 'lake'} has no payments" in run.stderr


def test_hoisting_keeps_everything_after_a_double_dash():
    args = ["forget", "--", "--data-dir", "x"]
    assert hoist_global_options(args, GLOBAL_PARAMS) == args


_GLOBAL = st.sampled_from([["--quiet"], ["-q"], ["--data-dir", "d1"], ["--data-dir=d2"]])
_OTHER = st.lists(st.sampled_from(["run", "ingest", "--json", "--stages", "a,b", "file.csv", "--as-of"]), max_size=5)


@given(st.lists(st.tuples(_GLOBAL, _OTHER), max_size=4))
def test_hoisting_moves_global_options_in_order_and_keeps_the_rest_in_order(chunks):
    args = [a for g, o in chunks for a in g + o]
    out = hoist_global_options(args, GLOBAL_PARAMS)
    globals_ = [a for g, _ in chunks for a in g]
    assert out == globals_ + [a for _, o in chunks for a in o]
    assert hoist_global_options(out, GLOBAL_PARAMS) == out


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_demo_checks_the_port_before_any_work(tmp_path, busy_port):
    home = tmp_path / "home"
    t0 = time.monotonic()
    out = behavior("--data-dir", str(home), "demo", "--users", "10", "--port", str(busy_port))
    assert out.returncode == 2, out.stderr
    assert f"port {busy_port} on 127.0.0.1 is already in use" in out.stderr
    assert f"--port {busy_port + 1}" in out.stderr and f"make demo PORT={busy_port + 1}" in out.stderr
    assert not (home / "synth").exists() and not (home / "lake").exists()
    assert time.monotonic() - t0 < 30


def test_an_unknown_host_is_bad_usage(tmp_path):
    out = behavior("--data-dir", str(tmp_path), "serve", "--host", "no-such-host.invalid", "--port", "8000")
    assert out.returncode == 2 and "--host no-such-host.invalid" in out.stderr
