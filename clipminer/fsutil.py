"""Small filesystem helpers: atomic writes that follow the umask, folders swapped in
whole, and safe names."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from collections.abc import Collection, Iterator
from pathlib import Path

NAME_MAX_BYTES = 255
"""The usual file-system limit on one path component, in bytes (ext4, XFS, APFS, NTFS)."""
COMPONENT_MAX_BYTES = 120
"""What :func:`safe_component` returns at most: room for suffixes, staging prefixes and
clip times within :data:`NAME_MAX_BYTES`."""
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)
_FORBIDDEN = frozenset('/\\:*?"<>|')
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def partial_path(dest: str | os.PathLike[str]) -> Path:
    """Create and return an empty temporary file beside ``dest``.

    The name starts with a dot and keeps the destination's suffix (encoders pick the
    format from it), so a crash never leaves a file that looks complete. Its mode is
    what a plain ``open`` would give (0666 less the umask), so the renamed result is
    as readable as any other file the user writes.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stem = _truncate_bytes(dest.stem, 100)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{stem}.", suffix=f".partial{dest.suffix}", dir=dest.parent
        )
    except OSError as exc:  # name the file the user asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(dest)) from exc
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` on success.

    On an exception the temporary file is removed and ``dest`` is left untouched.
    ``durable`` flushes the file (and then the folder entry) to disk around the
    rename, for state and manifests that must survive a power cut.
    """
    tmp = partial_path(dest)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        tmp.replace(dest)
        if durable:
            _fsync(Path(dest).parent)
    except OSError as exc:
        if exc.filename is None or exc.filename == str(tmp):  # name what the user asked for
            raise OSError(exc.errno, exc.strerror, str(dest)) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


STAGING_SUFFIXES = (".partial", ".old")
"""A folder prepared under a hidden ``.partial`` name, and the one it replaces while
the swap happens (``.old``): what a killed run can leave behind."""


def swap_folder_in(stage: Path, final: Path) -> None:
    """Rename the complete folder ``stage`` to ``final``.

    An existing ``final`` is moved aside first (to ``stage``'s name with ``.old``) and
    removed only once the new one is in place; if the rename fails it is put back. So
    ``final`` is always either the old folder or the new one, never a mix.
    """
    old = stage.with_suffix(".old")
    if old.exists():
        shutil.rmtree(old)
    moved = final.exists()
    if moved:
        final.rename(old)
    try:
        stage.rename(final)
    except OSError:
        if moved:
            old.rename(final)
        raise
    if moved:
        shutil.rmtree(old, ignore_errors=True)


def remove_leftover_stages(folder: Path, prefix: str = ".") -> None:
    """Remove the staging folders and files (:data:`STAGING_SUFFIXES`) whose names start
    with ``prefix`` in ``folder``: what a killed run left."""
    for suffix in STAGING_SUFFIXES:
        for path in folder.glob(f"{glob.escape(prefix)}*{suffix}"):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def short_hash(text: str, length: int = 8) -> str:
    """A stable hex digest of ``text`` (sha256), ``length`` characters."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:length]


def _truncate_bytes(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``max_bytes``."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode("utf-8", "ignore")


def safe_component(
    text: str, *, reserved: Collection[str] = (), max_bytes: int = COMPONENT_MAX_BYTES
) -> str:
    """One safe file or folder name for any ``text`` (a file stem, an action, a label).

    Path separators, characters Windows refuses and control or format characters
    become ``_``; white space runs become one space; runs of dots become one dot; a
    leading dot becomes ``_`` and trailing dots and spaces go. So the result is never
    empty, ``.``, ``..``, hidden, or a Windows device name, and matches none of
    ``reserved`` (case-insensitively: ``_`` is appended). Names longer than
    ``max_bytes`` of UTF-8 are cut at a character boundary and end in ``~`` and a short
    hash of the whole ``text``, so distinct long names stay distinct. Readable unicode
    is kept. The same ``text`` always gives the same name.
    """
    if max_bytes < 16:
        raise ValueError(f"max_bytes must be at least 16, got {max_bytes}")
    cleaned = "".join(
        "_" if ch in _FORBIDDEN or unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
        else ch
        for ch in text
    )  # fmt: skip
    cleaned = re.sub(r"\.{2,}", ".", " ".join(cleaned.split()))
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    cleaned = cleaned.rstrip(". ") or "unnamed"
    if cleaned.split(".")[0].casefold() in _WINDOWS_RESERVED or cleaned.casefold() in {
        r.casefold() for r in reserved
    }:
        cleaned += "_"
    if len(cleaned.encode("utf-8", "surrogateescape")) > max_bytes:
        cleaned = _truncate_bytes(cleaned, max_bytes - 9).rstrip(". ") + "~" + short_hash(text)
    return cleaned


def safe_name(text: str) -> str:
    """A safe folder or file name for an action or a label (see :func:`safe_component`)."""
    return safe_component(text)
