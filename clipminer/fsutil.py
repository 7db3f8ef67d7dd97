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
