"""The Makefile checks the Python version before it creates the virtual environment."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def fake_python(tmp_path: Path, version: str) -> Path:
    """An executable that answers any command line as a Python of `version` would answer the check."""
    exe = tmp_path / f"python{version}"
    exe.write_text(f"#!/bin/sh\necho {version}\n")
    exe.chmod(0o755)
    return exe


def test_a_wrong_python_stops_before_the_venv_is_created(tmp_path):
    venv = tmp_path / "venv"
    out = make("env", f"PY={fake_python(tmp_path, '3.12')}", f"VENV={venv}")
    assert out.returncode != 0
    assert "needs Python 3.11" in out.stderr and "is 3.12" in out.stderr
    assert "PY=/path/to/python3.11 make env" in out.stderr and "pyenv install 3.11" in out.stderr
    assert "-m venv" not in out.stdout
    assert not venv.exists()


def test_a_missing_python_is_named(tmp_path):
    out = make("demo", f"PY={tmp_path / 'no-such-python'}", f"VENV={tmp_path / 'venv'}")
    assert out.returncode != 0
    assert "is not a working Python" in out.stderr and "make demo" in out.stderr
    assert not (tmp_path / "venv").exists()


def test_python_311_passes_the_check():
    assert sys.version_info[:2] == (3, 11)
    out = make("check-python", f"PY={sys.executable}")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_make_demo_passes_the_port_on():
    venv = "/nonexistent-venv"
    assert "demo --port 8000" in make("-n", "demo", f"VENV={venv}").stdout
    assert "demo --port 8123" in make("-n", "demo", "PORT=8123", f"VENV={venv}").stdout
