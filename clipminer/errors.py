"""The project's own exceptions.

Every error a user can cause derives from :class:`ClipminerError`; the CLI prints
its message on one line and exits with :attr:`ClipminerError.exit_code`.
"""

from __future__ import annotations

import errno
import sqlite3


class ClipminerError(Exception):
    """Base class of the errors that clipminer reports to users."""

    exit_code: int = 1


class DecodeError(ClipminerError):
    """A video could not be opened or decoded; the message names the file."""


class EncodeError(ClipminerError):
    """A video could not be written; the message names the file."""


class BundleError(ClipminerError):
    """A file is not a clipminer model bundle, or one that cannot be used here."""


class UsageError(ClipminerError):
    """An argument is out of range or inconsistent with another."""

    exit_code = 2


class OutputDiskError(ClipminerError):
    """The disk that holds the outputs refused a write: full, over quota or read-only.

    It is not the input's fault, so it is never recorded against one: a run stops at
    it, and a re-run resumes once there is space.
    """


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a folder, not a file",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENOENT: "no such file or folder",
}


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""The errors of a disk that takes no more writes, whichever file was being written."""


def describe_os_error(exc: OSError, fallback: object = "") -> str:
    """One line for a filesystem error: the path that failed, then why."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    path = exc.filename if exc.filename is not None else fallback
    return f"{path}: {reason}" if path != "" else reason


def output_error(exc: OSError, path: object) -> ClipminerError:
    """The one-line error for ``exc``, met while writing ``path`` (named when ``exc``
    names no file): an :class:`OutputDiskError` when the disk takes no more writes."""
    message = describe_os_error(exc, path)
    return OutputDiskError(message) if exc.errno in DISK_ERRNOS else ClipminerError(message)


_SQLITE_ERRNOS = {sqlite3.SQLITE_FULL: errno.ENOSPC, sqlite3.SQLITE_READONLY: errno.EROFS}
"""SQLite's own codes for a disk that takes no more writes."""


def sqlite_disk_error(exc: sqlite3.Error, path: object) -> ClipminerError | None:
    """The one-line :class:`OutputDiskError` naming ``path`` when SQLite failed because
    its disk is full or read-only; None for any other SQLite error."""
    code = _SQLITE_ERRNOS.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF)
    return None if code is None else output_error(OSError(code, str(exc)), path)
