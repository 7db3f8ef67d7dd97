"""``DIR/fetch.sqlite``: what became of every item ``fetch-videos`` was asked for.

One row per item key (the video id, ``<id>_<start>_<end>`` for a time range, or the
URL of a URL list) with its status, the message, the file (relative to DIR), the
duration and the number of attempts. A row is written only after its file is in place,
so a run killed at any moment is simply run again.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Literal

from clipminer.errors import ClipminerError, sqlite_disk_error

Status = Literal[
    "ok",
    "unavailable",
    "private",
    "removed",
    "geo_blocked",
    "age_restricted",
    "too_long",
    "rate_limited",
    "error",
]
STATUSES: tuple[Status, ...] = (
    "ok", "unavailable", "private", "removed", "geo_blocked", "age_restricted", "too_long",
    "rate_limited", "error",
)  # fmt: skip
PERMANENT: frozenset[str] = frozenset(
    {"unavailable", "private", "removed", "geo_blocked", "age_restricted", "too_long"}
)
"""Failures a rerun does not try again (``too_long`` is retried once the cap allows it)."""
TRANSIENT: frozenset[str] = frozenset({"rate_limited", "error"})
"""Failures a rerun tries again."""
REGISTER_NAME = "fetch.sqlite"
"""The register's file name inside a fetch folder (batch never takes it for a video)."""
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class FetchRow:
    """One item's line in the register."""

    key: str
    url: str
    label: str
    status: Status
    message: str = ""
    path: str = ""
    """The file, relative to DIR (posix); empty unless ``status`` is ``ok``."""
    duration_seconds: float | None = None
    attempts: int = 1
    updated: float = 0.0
    """Unix time of the last attempt."""


class Register:
    """The SQLite register of one output folder (use from one thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ClipminerError(
                    f"{path}: register format {version} is not {SCHEMA_VERSION}; "
                    "move it away to start a new one"
                )
            columns = ", ".join(f.name for f in fields(FetchRow))
            self._db.execute(f"CREATE TABLE IF NOT EXISTS items ({columns}, PRIMARY KEY (key))")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.commit()
        except sqlite3.Error as exc:
            raise sqlite_disk_error(exc, path) or ClipminerError(
                f"{path}: cannot open the fetch register ({exc})"
            ) from None

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """One statement, committed; a full or read-only disk is one line naming the file."""
        try:
            rows = self._db.execute(sql, params).fetchall()
            self._db.commit()
        except sqlite3.Error as exc:
            raise sqlite_disk_error(exc, self.path) or ClipminerError(
                f"{self.path}: {exc}"
            ) from None
        return rows

    def get(self, key: str) -> FetchRow | None:
        """The row of ``key``, if any."""
        rows = self._run("SELECT * FROM items WHERE key = ?", (key,))
        return FetchRow(*rows[0]) if rows else None  # type: ignore[arg-type]

    def all(self) -> list[FetchRow]:
        """Every row, in key order."""
        return [FetchRow(*row) for row in self._run("SELECT * FROM items ORDER BY key")]  # type: ignore[arg-type]

    def put(self, row: FetchRow) -> None:
        """Insert or replace ``row``, counting attempts and stamping the time."""
        previous = self.get(row.key)
        attempts = (previous.attempts if previous else 0) + 1
        values = (*astuple(row)[:-2], attempts, time.time())
        marks = ", ".join("?" * len(values))
        self._run(f"INSERT OR REPLACE INTO items VALUES ({marks})", values)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Register:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
