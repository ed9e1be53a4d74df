"""The shape of the house: packages follow the data flow, none imports one below it, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lakesync"

# Top to bottom: a package may import only packages above it (its own modules freely).
LAYERS = [
    "config",  # the typed configuration
    "read",  # files -> Arrow chunks
    "conform",  # canonical columns and types, drift detection and policies, personal data
    "validate",  # the contract
    "state",  # the lakehouse's own tables, on one append-once primitive
    "discover",  # stores and discovery sources
    "commit",  # data commits
    "features",  # feature tables
    "pipeline",  # plan -> rounds -> results
    "governance",  # erasure, pii apply, trace, replay
    "monitor",  # verdicts of the checks
    "catalog",  # every asset and column, searchable
    "sql",  # one query over tables and lake files, in place
    "coldstart",  # a new lake's datasets, formats, mappings and contracts proposed
    "report",  # text for people
    "defs",  # the Dagster wiring
    "definitions",  # the code location
    "demo",  # demo lakes and servers
    "api",  # lakesync.query / lakesync.search for notebooks
    "cli",  # argument parsing
]
MAX_LINES = 350


def _package(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def _imported(tree: ast.AST) -> set[str]:
    """The lakesync packages a module imports (at module level or inside functions)."""
    found = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found.update(n.split(".")[1] for n in names if n.startswith("lakesync.") and n.count(".") >= 1)
    return found


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue
        source = _package(path)
        for target in _imported(ast.parse(path.read_text(encoding="utf-8"))):
            if target != source:
                edges.setdefault((source, target), []).append(str(path.relative_to(PACKAGE.parent)))
    return edges


def test_every_package_has_a_place_in_the_layers() -> None:
    packages = {_package(p) for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS"


def test_no_package_imports_a_package_below_it() -> None:
    upward = [
        f"{source} -> {target} ({', '.join(files)})"
        for (source, target), files in _edges().items()
        if LAYERS.index(target) > LAYERS.index(source)
    ]
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_packages_have_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        graph.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(p for p in graph if reaches(p, p, {p}))
    assert not cycles, f"packages in an import cycle: {cycles}"


def test_modules_stay_small() -> None:
    large = {
        str(p.relative_to(PACKAGE.parent)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not large, f"modules over {MAX_LINES} lines (split them by what they do): {large}"


def test_the_layer_test_would_see_an_upward_import() -> None:
    tree = ast.parse("def f():\n    from lakesync.cli.main import main\n")
    assert _imported(tree) == {"cli"}
