"""Every CLI command works with the package's own dependencies, or says which extra to install.

Each check runs in a fresh interpreter where only the distributions that `pip install .` (plus
the extras named) would bring can be imported: the project's dependencies in pyproject.toml
and theirs, transitively. Any other installed distribution (pytest, httpx, jupytext, ...) is
hidden by an import hook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Run first in the child: hides every installed distribution outside the closure of the
# project's dependencies (and of the extras in EXTRAS) from `import`.
ONLY_DEPENDENCIES = """
import importlib.abc, importlib.metadata as md, sys, tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

project = tomllib.loads(open(ROOT + "/pyproject.toml", "rb").read().decode())["project"]
wanted = [(r, "") for r in project["dependencies"]]
wanted += [(r, "") for e in EXTRAS for r in project["optional-dependencies"][e]]
allowed = {canonicalize_name(project["name"])}
while wanted:
    text, extra = wanted.pop()
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": extra}):
        continue
    name = canonicalize_name(req.name)
    for e in req.extras:
        wanted += [(r, e) for r in (md.requires(name) or [])]
    if name in allowed:
        continue
    allowed.add(name)
    wanted += [(r, "") for r in (md.requires(name) or [])]
hidden = {top for top, dists in md.packages_distributions().items()
          if not any(canonicalize_name(d) in allowed for d in dists)}

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: not a dependency)", name=name)
        return None

sys.meta_path.insert(0, Hide())
for m in [m for m in sys.modules if m.partition(".")[0] in hidden]:
    del sys.modules[m]
"""


def _run(code: str, *args: str, extras: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    prelude = f"ROOT = {str(ROOT)!r}\nEXTRAS = {list(extras)!r}\n" + ONLY_DEPENDENCIES
    return subprocess.run([sys.executable, "-c", prelude + code, *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_the_hook_hides_what_is_not_a_dependency_and_keeps_what_is():
    out = _run("import importlib\n"
               "for m in ('httpx', 'pytest', 'fastapi', 'duckdb', 'typer'):\n"
               "    try:\n        importlib.import_module(m); print(m, 'ok')\n"
               "    except ModuleNotFoundError:\n        print(m, 'hidden')\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:5] == ["httpx hidden", "pytest hidden", "fastapi ok", "duckdb ok", "typer ok"]
    assert "httpx ok" in _run("import httpx; print('httpx ok')", extras=("bench",)).stdout


WALK_HELP = """
import json
import os
import typer.main
from click.testing import CliRunner
from pipelines.cli import app

root = typer.main.get_command(app)
results = {}

def walk(cmd, path):
    out = CliRunner().invoke(root, [*path, "--help"])
    results[" ".join(path) or "(root)"] = [out.exit_code, out.output[:200], repr(out.exception)]
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        walk(sub, [*path, name])

walk(root, [])
print(json.dumps(results))
"""


def test_every_command_prints_its_help_with_the_base_dependencies_only():
    out = _run(WALK_HELP)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    # the walk reached the nested groups and the commands that need an extra
    assert {"ingest", "run", "serve", "bench", "senders add", "keys add", "lake currency"} <= set(results)
    bad = {cmd: r for cmd, r in results.items() if r[0] != 0 or "Usage" not in r[1]}
    assert not bad


@pytest.mark.parametrize("suite", ["api", "notify", "scale"])
def test_the_http_benchmarks_name_the_extra_to_install_without_httpx(suite, tmp_path):
    out = _run("from pipelines.cli import main; main()", "--data-dir", str(tmp_path / "home"), "bench", suite,
               "--out", str(tmp_path / "work"))
    assert out.returncode == 2, out.stderr
    assert f"`behavior bench {suite}` needs httpx" in out.stderr
    assert "pip install '.[bench]'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "work").exists()     # refused before any work


def test_each_benchmark_imports_with_the_dependencies_it_names():
    # the suites run by `behavior bench` alone need nothing beyond the package's dependencies
    base = _run("import pipelines.bench.suites, pipelines.bench.engines, pipelines.bench.accuracy, "
                "pipelines.bench.recommend, "
                "pipelines.bench.demo; print('ok')")
    assert base.stdout.strip() == "ok", base.stderr
    # and the `bench` extra is all the HTTP ones need
    http = _run("import pipelines.bench.api, pipelines.bench.notify, pipelines.bench.reload, pipelines.bench.scale;"
                " print('ok')", extras=("bench",))
    assert http.stdout.strip() == "ok", http.stderr
