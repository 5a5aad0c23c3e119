"""SQLite backend (embedded default): WAL mode, ``synchronous=FULL``, numbered migrations."""

from trailseal.storage.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
