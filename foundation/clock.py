"""The one wall clock. Code that decides by time takes a clock argument instead,
so tests can move time; this is the default they fall back to."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: the vault stores and compares only aware times."""
    return datetime.now(UTC)
