"""The command reference (``docs/reference.md``): every command's ``--help``, as a user
sees it in an 80-column terminal. The options come from the settings declarations, so
the reference cannot disagree with them; ``tests/test_house.py`` checks the committed
file against a fresh one, and ``make docs`` writes it again.

Usage: ``python -m clipminer.cli.reference [docs/reference.md]``
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer.main
from typer.testing import CliRunner

from clipminer.cli import app
from clipminer.fsutil import atomic_path

WIDTH = 80
HEADER = """# Command reference

Every command's `--help`, generated from the commands and their settings declarations
by `python -m clipminer.cli.reference` (`make docs` runs it; a test checks that this
page matches). The guides in [Commands](commands.md) say when to use what.
"""


def commands() -> list[list[str]]:
    """Every command, groups' sub-commands included, in the order ``--help`` lists them."""
    root: Any = typer.main.get_command(app)
    found: list[list[str]] = []
    for name, command in root.commands.items():
        if command.hidden:
            continue
        subs = getattr(command, "commands", None)  # a group
        found += [[name, sub] for sub in subs] if subs else [[name]]
    return found


def help_text(command: list[str]) -> str:
    """``clipminer COMMAND --help`` at :data:`WIDTH` columns, without colour."""
    env = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="clipminer", env=env)
    if result.exit_code != 0:
        raise RuntimeError(f"clipminer {' '.join(command)} --help failed: {result.output}")
    return "\n".join(line.rstrip() for line in result.output.strip().splitlines())


def reference() -> str:
    """The whole page."""
    parts = [HEADER]
    for command in commands():
        parts.append(f"\n## clipminer {' '.join(command)}\n\n```text\n{help_text(command)}\n```\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path("docs/reference.md")
    text = reference()
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({len(commands())} commands)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
