"""``open_key_store``: the key store that goes with a given ``Store`` backend."""

from __future__ import annotations

import logging
from pathlib import Path

from trailseal.access.apikeys import KeyStore, MemoryKeyStore
from trailseal.access.sqlite import MIGRATIONS, SQLiteKeyStore
from trailseal.storage.base import Store

_log = logging.getLogger("trailseal.access")


def open_key_store(store: Store, data_dir: Path) -> KeyStore:
    """SQLite store: keys in the same file. Memory store: in memory. Any other backend: in
    ``<data dir>/access.db`` until that backend brings its own key store.
    """
    from trailseal.storage.memory import MemoryStore
    from trailseal.storage.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        store.apply_migrations("access", MIGRATIONS)
        return SQLiteKeyStore(store.path)
    if isinstance(store, MemoryStore):
        return MemoryKeyStore()
    path = data_dir / "access.db"
    _log.warning("access: %s has no key store of its own; keys live in %s",
                 type(store).__name__, path)
    side = SQLiteStore(path)
    try:
        side.apply_migrations("access", MIGRATIONS)
    finally:
        side.close()
    return SQLiteKeyStore(path)


def open_data_dir_keys(data_dir: Path) -> tuple[KeyStore, Store]:
    """The key store of a data directory's SQLite file, for ``trailseal keys --data``.

    Returns the key store and the opened store (close both). Works while a server runs on it.
    """
    from trailseal.storage.sqlite import SQLiteStore

    path = data_dir / "trailseal.db"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory {data_dir} does not exist")
    store = SQLiteStore(path)
    return open_key_store(store, data_dir), store
