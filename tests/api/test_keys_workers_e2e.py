"""API keys on every worker at once: a key added or revoked by `behavior keys` (run from another
folder, the data home given by $BEHAVIOR_DATA_DIR) holds on every worker of a real
`behavior serve --workers 2` within a second, with polling switched off (every 600 s) so that
only the per-request check of the keys file can make it hold. The probes start within a second
of the CLI's exit, and every answer of every worker, the first included, must be the new one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.api.test_server_e2e import REPO
from tests.api.test_workers_e2e import behavior_serve, per_worker

pytestmark = pytest.mark.slow


def keys_cli(data_dir, cwd, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "BEHAVIOR_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-c", "from pipelines.cli import main; main()", "keys", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_a_key_added_or_revoked_holds_on_every_worker_within_a_second(home, tmp_path, timed):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    user = "u0000001"
    with behavior_serve(home.root, 2, tmp_path / "serve.log") as base:
        with timed():
            added = keys_cli(home.root, elsewhere, "add", "campaign", "--scope", "profiles:read")
            added_at = time.monotonic()
            assert added.returncode == 0, added.stderr
            key = added.stdout.strip()
            assert key.startswith("bk_") and "\n" not in key       # stdout is the key alone, for scripts
            assert "shown once" in added.stderr and f"{home.root / 'api_keys.json'}" in added.stderr
            assert not (elsewhere / "data").exists()                # nothing made in the folder it ran from

            def status(c: httpx.Client) -> int:
                return c.get(f"/v1/users/{user}/profile", headers={"X-API-Key": key}).status_code

            assert time.monotonic() - added_at < 1.0      # the probes start within a second of the CLI's exit
            accepted = per_worker(base, home.headers(), status, workers=2)
            assert {w: set(codes) for w, codes in accepted.items()} == {w: {200} for w in accepted}

            revoked = keys_cli(home.root, elsewhere, "revoke", "campaign")
            revoked_at = time.monotonic()
            assert revoked.returncode == 0, revoked.stderr
            assert f"{home.root / 'api_keys.json'}" in revoked.stdout
            assert time.monotonic() - revoked_at < 1.0
            refused = per_worker(base, home.headers(), status, workers=2)
            assert {w: set(codes) for w, codes in refused.items()} == {w: {401} for w in refused}
