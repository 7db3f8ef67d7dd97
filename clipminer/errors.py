"""The project's own exceptions.

Every error a user can cause derives from :class:`ClipminerError`; the CLI prints
its message on one line and exits with :attr:`ClipminerError.exit_code`.
"""

from __future__ import annotations


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
