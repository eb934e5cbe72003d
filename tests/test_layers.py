"""The layers, read from the source: behavior/'s pure modules at the bottom, the store
(behavior/store/) above them, pipelines/ and api/ beside each other above the store, the CLI on
top. Every import counts, at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from behavior.store.bundle import CATALOGUE, MANIFEST

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("behavior", "pipelines", "api")
STORE = "behavior.store"
# the one place pipelines/ imports api: where the CLI starts the server
SERVER_START = ("pipelines.cli", "api.server")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports anywhere in its body (`from a import b` counts as an
    import of a.b when that is a module, else of a)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t.split(".")[0] in PACKAGES and t in known}
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    src = sources()
    return {name: imports(name, path, set(src)) for name, path in src.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function():
    a = ast.parse("def f():\n    import b\n")
    assert any(isinstance(n, ast.Import) for n in ast.walk(a))     # imports inside functions are walked
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_behavior_imports_neither_pipelines_nor_api(graph):
    bad = {(m, t) for m, ts in graph.items() if m.split(".")[0] == "behavior" for t in ts
           if t.split(".")[0] in ("pipelines", "api")}
    assert bad == set()


def test_behavior_outside_the_store_does_not_import_the_store(graph):
    bad = {(m, t) for m, ts in graph.items() if m.split(".")[0] == "behavior" and not m.startswith(STORE)
           for t in ts if t.startswith(STORE)}
    assert bad == set()


def test_pipelines_imports_api_only_where_the_cli_starts_the_server(graph):
    found = {(m, t) for m, ts in graph.items() if m.split(".")[0] == "pipelines" for t in ts
             if t.split(".")[0] == "api"}
    assert found == {SERVER_START}


def test_api_never_imports_pipelines(graph):
    assert {(m, t) for m, ts in graph.items() if m.split(".")[0] == "api" for t in ts
            if t.split(".")[0] == "pipelines"} == set()


# ---- the store is the only one that names a bundle file or writes CURRENT ------------------

BUNDLE_NAMES = {a.file for a in CATALOGUE} | {MANIFEST, "CURRENT"}
WRITERS = {"write_bytes", "write_text", "write_json", "replace", "rename", "open", "symlink_to"}


def outside_the_store() -> list[Path]:
    return [p for name, p in sources().items() if not name.startswith(STORE)]


def _literals(tree: ast.AST) -> list[tuple[int, str]]:
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _writes_current(tree: ast.AST) -> list[int]:
    """Lines of calls that write (or move onto) a path named `.current` or `.current_file`."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in WRITERS:
            continue
        parts = [func.value] if isinstance(func, ast.Attribute) else []
        parts += list(node.args)
        if any(isinstance(n, ast.Attribute) and n.attr in ("current", "current_file")
               for p in parts for n in ast.walk(p)):
            lines.append(node.lineno)
    return lines


def test_the_scan_sees_a_bundle_file_name_and_a_write_of_current():
    tree = ast.parse('x = "profiles.parquet"\natomic.write_bytes(home.current, b"v")\nhome.current.write_text("v")\n')
    assert [v for _, v in _literals(tree) if v in BUNDLE_NAMES] == ["profiles.parquet"]
    assert _writes_current(tree) == [2, 3]


def test_only_the_store_names_a_bundle_file():
    found = [f"{p.relative_to(ROOT)}:{line}: {value!r}" for p in outside_the_store()
             for line, value in _literals(ast.parse(p.read_text())) if value in BUNDLE_NAMES]
    assert found == []


def test_only_the_store_writes_current():
    found = [f"{p.relative_to(ROOT)}:{line}" for p in outside_the_store()
             for line in _writes_current(ast.parse(p.read_text()))]
    assert found == []


def test_every_artifact_is_made_by_a_stage_that_exists():
    from pipelines.stages import STAGES

    assert {a.stage for a in CATALOGUE} - {None} <= set(STAGES)
    assert len({a.file for a in CATALOGUE}) == len(CATALOGUE)
