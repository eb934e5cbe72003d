"""One benchmark measurement in a fresh interpreter, so that each starts cold and its peak
memory is its own."""

from __future__ import annotations

import json
import subprocess
import sys


def run_child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON object. Adds its peak RSS (MB)."""
    wrapper = (
        "import json, resource, sys, time\n"
        f"{code}\n"
        "res['peak_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)\n"
        "print(json.dumps(res))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark step failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
