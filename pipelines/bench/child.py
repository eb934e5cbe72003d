"""One benchmark measurement in a fresh interpreter, so that each starts cold and its peak
memory is its own; and the loop that repeats measurements."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable


# the child's peak in kB: VmHWM where /proc has it, else ru_maxrss (kB on Linux)
_PEAK_KB = ("(next((int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM:')), None) "
            "if os.path.exists('/proc/self/status') else None) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss")


def run_child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; it sets `res` to a dict (json, os, resource, sys and time
    are imported). Returns `res` with the child's peak RSS (MB) as `peak_mb`: the high-water mark of
    its own memory (`VmHWM`). Linux carries `ru_maxrss` across exec, so a child started by a
    large process (the scale run, holding the lines it generated) would report the parent's size."""
    wrapper = (
        "import json, os, resource, sys, time\n"
        f"{code}\n"
        f"res['peak_mb'] = round(({_PEAK_KB}) / 1024, 1)\n"
        "print(json.dumps(res))\n"
    )
    out = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"benchmark step failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(steps: dict[str, tuple[str, ...]], *, repeat: int, label: str,
            progress: Callable[[str], None] = lambda _: None, fresh: Path | None = None) -> dict[str, list[dict]]:
    """`repeat` runs of each step (name -> (code, *args) for `run_child`), interleaved (run 1 of
    every step, then run 2, ...) so that a shared machine's load falls on the steps alike. With
    `fresh`, that folder is removed before and after every run (each starts without it).
    Returns name -> the runs' results."""
    runs: dict[str, list[dict]] = {name: [] for name in steps}
    for i in range(repeat):
        for name, (code, *args) in steps.items():
            progress(f"{label}{'' if len(steps) == 1 else ': ' + name}, run {i + 1}/{repeat}")
            if fresh is not None:
                shutil.rmtree(fresh, ignore_errors=True)
            try:
                runs[name].append(run_child(code, *args))
            finally:
                if fresh is not None:
                    shutil.rmtree(fresh, ignore_errors=True)
    return runs
