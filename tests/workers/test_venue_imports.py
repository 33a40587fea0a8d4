"""The paper venue package's modules import one way only (issue 11 §1: the old venue.py and
venue_ws.py imported each other). Read from the source with ast, so imports under
TYPE_CHECKING count too: a circle hidden from the runtime still ties two modules together."""

from __future__ import annotations

import ast
from pathlib import Path

import workers.venue

PACKAGE = Path(workers.venue.__file__).parent


def _graph() -> dict[str, set[str]]:
    names = {f.stem for f in PACKAGE.glob("*.py") if f.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        deps: set[str] = set()
        for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module if not node.level else f"workers.venue.{node.module}"
                if module == "workers.venue":  # `from workers.venue import x` goes through __init__
                    deps.update(a.name for a in node.names if a.name in names)
                    deps.add("__init__")
                elif module.startswith("workers.venue."):
                    deps.add(module.removeprefix("workers.venue."))
        graph[name] = deps
    return graph


def test_the_venue_package_has_no_import_circle() -> None:
    graph = _graph()
    assert {"app", "account", "market", "faults", "guard", "rest", "ws"} <= set(graph)
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, f"import circle: {' -> '.join([*path, name])}"
        if name in done:
            return
        for dep in graph.get(name, ()):
            visit(dep, [*path, name])
        done.add(name)

    for name in graph:
        visit(name, [])
    assert all("__init__" not in deps for deps in graph.values()), "a module imports the package back"


def test_the_hub_and_the_pure_pieces_import_nothing_of_the_venue_above_them() -> None:
    graph = _graph()
    assert graph["ws"] == set()  # given what it needs (HubVenue), never importing the venue back
    assert graph["account"] == set() and graph["faults"] == set() and graph["settings"] == set()
