"""How the code is laid out (issue #23): checked on the source, so a change that breaks
a rule fails here rather than in review.

- no import cycle among the project's modules, counting imports under
  ``TYPE_CHECKING`` and inside functions;
- OUT's file names are spelled in :mod:`clipminer.layout` only;
- no HTML, CSS or JavaScript page inside Python strings: pages are files of
  :mod:`clipminer.pages`;
- the README is the front door (at most 300 lines), every relative link in it and in
  ``docs/`` resolves inside the repository, the command reference matches ``--help``
  and the MkDocs site builds with ``--strict``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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


# -- the documentation ---------------------------------------------------------------------

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """The anchor MkDocs gives a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _prose(path: Path) -> str:
    return re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)


def _broken_links(pages: list[Path], root: Path = ROOT) -> list[str]:
    broken = []
    for page in pages:
        for match in _LINK.finditer(_prose(page)):
            target = match.group(1)
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not this repository's
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            where = f"{page.name}: {target}"
            if not file.exists() or root not in file.parents:
                broken.append(f"{where} (not a file in the repository)")
            elif anchor and file.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", _prose(file), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{where} (no such heading)")
    return broken


def test_every_relative_link_resolves_inside_the_repository(tmp_path: Path) -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 10
    assert _broken_links(pages) == []
    (tmp_path / "outside.md").write_text("# out\n")
    (tmp_path / "repo").mkdir()
    bad = tmp_path / "repo" / "bad.md"
    bad.write_text("[a](../outside.md) [b](nope.md) [c](#nowhere) [d](#here)\n# here\n")
    assert len(_broken_links([bad], tmp_path / "repo")) == 3  # each kind is found


def test_readme_is_the_front_door() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    assert readme.index("make demo") < readme.index("make test") < readme.index("## Status")


def test_the_command_reference_matches_help() -> None:
    """docs/reference.md is what every command's --help says now (``make docs`` writes it)."""
    from clipminer.cli.reference import reference

    committed = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert committed == reference(), "run `make docs` (or python -m clipminer.cli.reference)"


def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists() and shutil.which("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[dev]')")
    command = [str(mkdocs if mkdocs.exists() else "mkdocs"), "build", "--strict", "-q"]
    done = subprocess.run(
        [*command, "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "reference" / "index.html").is_file()
