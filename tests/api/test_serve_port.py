"""`behavior serve` on a port another process listens on: exit 2 with a message, not uvicorn's 3."""

import socket
import subprocess
import sys


def test_serve_on_a_busy_port_is_bad_usage_with_a_hint(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir",
                              str(home.root), "serve", "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"error: port {port} on 127.0.0.1 is already in use" in out.stderr
    assert f"choose another with --port, e.g. --port {port + 1}" in out.stderr
