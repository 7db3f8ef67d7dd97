"""The project's own exceptions.

Every error a user can cause derives from :class:`ClipminerError`; the CLI prints
its message on one line and exits with :attr:`ClipminerError.exit_code`.
"""

from __future__ import annotations

import errno


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


def describe_os_error(exc: OSError, fallback: object = "") -> str:
    """One line for a filesystem error: the path that failed, then why."""
    reason = _REASONS.get(exc.errno or 0) or exc.strerror or str(exc)
    path = exc.filename if exc.filename is not None else fallback
    return f"{path}: {reason}" if path != "" else reason
