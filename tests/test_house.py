"""How the code is laid out (issue #23): checked on the source, so a change that breaks
a rule fails here rather than in review.

- no import cycle among the project's modules, counting imports under
  ``TYPE_CHECKING`` and inside functions;
- OUT's file names are spelled in :mod:`clipminer.layout` only;
- no HTML, CSS or JavaScript page inside Python strings: pages are files of
  :mod:`clipminer.pages`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clipminer", "scrapers", "jobs")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["clipminer.batch"], "the import scan found nothing: it is broken"
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _strings(path: Path) -> list[tuple[int, str]]:
    return [
        (node.lineno, node.value)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_out_file_names_are_spelled_in_layout_only() -> None:
    names = ("segments.csv", "shots.csv", "embeddings.npy", "scores.parquet", "run.json")
    spelled = [
        f"{path.relative_to(ROOT)}:{line} {text!r}"
        for path in _modules().values()
        if path.name != "layout.py"
        for line, text in _strings(path)
        if any(text == name or text.endswith(f"/{name}") for name in names)
    ]
    assert spelled == []


def test_no_page_inside_python_strings() -> None:
    markers = ("<!doctype", "<html", "<style", "<script", "function(", "=> {")
    pages = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in _modules().values()
        for line, text in _strings(path)
        if text.count("\n") > 2 and any(m in text.lower() for m in markers)
    ]
    assert pages == []
