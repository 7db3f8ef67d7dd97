"""Small filesystem helpers: atomic writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def partial_path(dest: str | os.PathLike[str]) -> Path:
    """Create and return an empty temporary file beside ``dest``.

    The name starts with a dot and keeps the destination's suffix (encoders pick the
    format from it), so a crash never leaves a file that looks complete.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{dest.stem}.", suffix=f".partial{dest.suffix}", dir=dest.parent
    )
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` on success.

    On an exception the temporary file is removed and ``dest`` is left untouched.
    """
    tmp = partial_path(dest)
    try:
        yield tmp
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def safe_name(text: str) -> str:
    """A single safe folder or file name for ``text`` (an action or a label).

    Path separators and control characters become ``_``, runs of dots one dot, and a
    leading dot ``_``, so the name is never ``.``, ``..`` or hidden and holds no ``..``;
    readable unicode is kept.
    """
    cleaned = "".join(
        "_" if ch in '/\\:*?"<>|' or ord(ch) < 32 or ch == "\x7f" else ch for ch in text
    )
    cleaned = " ".join(cleaned.split())
    while ".." in cleaned:
        cleaned = cleaned.replace("..", ".")
    stripped = cleaned.lstrip(".")
    if stripped != cleaned:
        cleaned = "_" + stripped
    return cleaned[:150] or "unnamed"
