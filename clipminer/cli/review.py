"""``clipminer review``: see :mod:`clipminer.curate`."""

from __future__ import annotations

from clipminer.cli.common import app  # noqa: F401
