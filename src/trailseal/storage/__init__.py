"""Storage: the ``Store`` Protocol and its backends (memory, SQLite; PostgreSQL in scale-out)."""

from __future__ import annotations

from pathlib import Path

from trailseal.storage.base import CheckpointRecord, LeafEntry, LogInfo, Store, TileWrite

__all__ = ["CheckpointRecord", "LeafEntry", "LogInfo", "Store", "TileWrite", "open_store"]


def open_store(url: str, data_dir: Path) -> Store:
    """Open the store named by ``url``: ``""`` or ``sqlite:///PATH`` (SQLite), ``memory:``,
    ``postgresql://...`` (PostgreSQL; ``?schema=NAME&pool_max=N`` are trailseal's own)."""
    if url in ("", "sqlite:", "sqlite://"):
        from trailseal.storage.sqlite import SQLiteStore

        data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(data_dir / "trailseal.db")
    if url.startswith("sqlite:///"):
        from trailseal.storage.sqlite import SQLiteStore

        return SQLiteStore(Path(url[len("sqlite:///") :]))
    if url == "memory:":
        from trailseal.storage.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        from trailseal.storage.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"store: unsupported store URL {url!r}; use sqlite:///PATH, postgresql://... or leave "
        f"empty for the SQLite file in the data directory"
    )
