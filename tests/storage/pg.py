"""PostgreSQL test helpers: every test gets its own schema, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from trailseal.storage.postgres import PostgresStore


def schema_url(pg_dsn: str, schema: str, **params: str) -> str:
    """``pg_dsn`` with trailseal's ``schema`` parameter (and any others) added."""
    extra = "&".join(f"{k}={v}" for k, v in {"schema": schema, **params}.items())
    return f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}{extra}"


def new_schema() -> str:
    """A fresh schema name."""
    return f"ts_test_{uuid.uuid4().hex[:12]}"


@contextmanager
def fresh_store(pg_dsn: str, **params: str) -> Iterator[PostgresStore]:
    """A migrated store in a new schema; the schema is dropped on exit."""
    store = PostgresStore(schema_url(pg_dsn, new_schema(), **params))
    try:
        yield store
    finally:
        store.drop_schema()
        store.close()
