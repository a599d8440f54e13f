"""The package's structure, read from the code's own imports (docs/architecture.md).

Every ``import`` of every module counts, those inside functions and under ``TYPE_CHECKING``
too: no import circles, each folder importing only the folders the document allows, the
object format importing no I/O, boto3 only in the storage room and the KMS provider, and
nothing below the composition root importing it back.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"

#: What each room may import of the gateway (docs/architecture.md's table). A room is a
#: folder, or a module at the top of the package.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "principal": set(),
    "serve": set(),
    "config": {"errors"},
    "crypto": {"errors"},
    "db": {"errors"},
    "storage": {"errors"},
    "accounts": {"errors", "db"},
    "audit": {"errors", "principal", "crypto", "db", "storage"},
    "keys": {"errors", "config", "principal", "crypto", "db", "storage", "audit"},
    "files": {"errors", "principal", "crypto", "db", "storage", "keys", "audit"},
    "uploads": {"errors", "principal", "crypto", "db", "storage", "audit", "files"},
    "services": {"config", "db", "audit", "files", "keys", "storage", "uploads"},
    "web": {"errors", "principal", "config", "db", "files", "audit", "accounts", "services",
            "uploads"},
    "app": {"config", "services", "web"},
    "cli": {"errors", "principal", "config", "crypto", "db", "storage", "keys", "audit",
            "files", "uploads", "accounts", "services", "serve", "app"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports, as absolute names (a name imported from a package counts
    as the package, or as its submodule when it is one)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                # ``from PKG import submodule`` imports the submodule, not PKG's names
                found.append(candidate if _source(candidate) is not None else module)
    return found


def _source(module: str) -> Path | None:
    if not module.startswith("gateway"):
        return None
    base = ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[_module_name(path)] = set(_imports(path))
    return graph


GRAPH = _graph()


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "gateway" and len(parts) > 1 else None


def _third_party(module: str) -> str:
    return module.split(".")[0]


def test_no_import_circles_between_modules() -> None:
    edges = {m: {i for i in imports if i in GRAPH} for m, imports in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges[node]:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert circles == []


def test_each_room_imports_only_what_the_architecture_allows() -> None:
    wrong = defaultdict(set)
    for module, imports in GRAPH.items():
        room = _room(module)
        if room is None:
            continue
        assert room in ALLOWED, f"{module}: a room docs/architecture.md does not describe"
        for imported in imports:
            target = _room(imported)
            if target is not None and target != room and target not in ALLOWED[room]:
                wrong[module].add(imported)
    assert dict(wrong) == {}


def test_the_object_format_imports_no_io() -> None:
    stdlib = set(sys.stdlib_module_names)
    io_modules = {"socket", "subprocess", "shutil", "tempfile", "io", "pathlib", "sqlite3",
                  "urllib", "http", "threading", "logging"}
    for module, imports in GRAPH.items():
        if _room(module) != "crypto":
            continue
        for imported in imports:
            top = _third_party(imported)
            if top == "gateway":
                assert _room(imported) in ("crypto", "errors"), (module, imported)
            else:
                assert top in (stdlib - io_modules) | {"cryptography"}, (module, imported)


@pytest.mark.parametrize("library, rooms", [
    ("boto3", {"gateway.storage.s3", "gateway.keys.kms"}),
    ("botocore", {"gateway.storage.s3", "gateway.keys.kms"}),
    ("flask", {"gateway.app"}),
    ("flask_login", set()),
    ("click", set()),
])
def test_libraries_stay_in_their_rooms(library: str, rooms: set[str]) -> None:
    edges = {"flask": "web", "flask_login": "web", "click": "cli"}
    users = {m for m, imports in GRAPH.items()
             if any(_third_party(i) == library for i in imports)}
    outside = {m for m in users - rooms if _room(m) != edges.get(library)}
    assert outside == set()
    assert users, f"nothing imports {library}: the rule checks nothing"


def test_nothing_below_the_composition_root_imports_it() -> None:
    importers = {_room(m) for m, imports in GRAPH.items() if "gateway.services" in imports}
    assert importers <= {"app", "web", "cli"}


def test_each_package_face_only_re_exports_and_says_what_it_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        docstring = ast.get_docstring(tree) or ""
        assert "May import" in docstring or "may import" in docstring, init
        for node in tree.body[1:]:
            ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            )
            assert ok, f"{init}:{node.lineno} defines something; only re-exports belong here"
