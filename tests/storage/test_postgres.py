from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from tests.storage.conformance import (
    KEYRING,
    LOG,
    ORIGIN,
    StoreConformance,
    append_leaves,
    entry,
)
from tests.storage.pg import fresh_store
from trailseal.core.checkpoint import Checkpoint, sign_checkpoint
from trailseal.core.errors import ConflictError
from trailseal.core.merkle import root_hash
from trailseal.storage.base import CheckpointRecord, LeafEntry, TileReader
from trailseal.storage.postgres import PostgresStore, parse_url
from trailseal.storage.postgres.migrations import MIGRATIONS


def sign_all(store: PostgresStore, entries: Sequence[LeafEntry]) -> CheckpointRecord:
    """Append ``entries`` (starting at 0) with a checkpoint but no tiles."""
    root = root_hash([e.leaf_hash for e in entries])

    def sign(read: TileReader) -> CheckpointRecord:
        note = sign_checkpoint(Checkpoint(ORIGIN, len(entries), root), KEYRING.signer)
        return CheckpointRecord(LOG, len(entries), root, note, "t")

    return store.append(LOG, entries, [], sign)


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store(self, pg_dsn: str) -> Iterator[PostgresStore]:
        with fresh_store(pg_dsn) as store:
            yield store


def test_durability_setting(pg_dsn: str) -> None:
    with fresh_store(pg_dsn) as store, store.connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)


def test_migrations_are_numbered_and_idempotent(pg_dsn: str) -> None:
    with fresh_store(pg_dsn) as store:
        store.ensure_log(LOG, ORIGIN, "t")
        append_leaves(store, LOG, 3)
        again = PostgresStore(store.url)  # a second process starting on the same schema
        try:
            assert again.migrate() == len(MIGRATIONS)
            assert again.migration_versions()["core"] == len(MIGRATIONS)
            assert again.tree_size(LOG) == 3
            again.apply_migrations("feature", ["CREATE TABLE feature_t (x int)", "ALTER TABLE feature_t ADD y int"])
            assert again.apply_migrations("feature", ["CREATE TABLE feature_t (x int)", "ALTER TABLE feature_t ADD y int"]) == 2
            assert again.migration_versions()["feature"] == 2
        finally:
            again.close()


def test_events_are_partitioned_by_month_and_searchable(pg_dsn: str) -> None:
    with fresh_store(pg_dsn) as store:
        store.ensure_log(LOG, ORIGIN, "t")
        months = ["2026-01-31T23:59:59.000000Z", "2026-02-01T00:00:00.000000Z"]
        entries = []
        for i, received in enumerate(months):
            body = f'{{"actor":{{"id":"alice"}},"reason":"break glass {i}","n":{i}}}'.encode()
            entries.append(replace(entry(LOG, i, body=body), received_at=received))
        sign_all(store, entries)
        with store.connection() as conn:
            parts = conn.execute(
                "SELECT c.relname, count(*) FROM events e JOIN pg_class c ON c.oid = e.tableoid "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall()
        assert parts == [("events_202601", 1), ("events_202602", 1)]
        assert store.get_entry(LOG, 1) == entries[1]
        assert store.search_lag(LOG) == 2
        assert store.index_search(LOG, limit=1) == 1
        assert store.index_search(LOG) == 1 and store.index_search(LOG) == 0
        assert store.search_lag(LOG) == 0
        with store.connection() as conn:
            hits = conn.execute(
                "SELECT leaf_index FROM search WHERE log = %s AND tsv @@ to_tsquery('simple', 'glass & 1')",
                (LOG,),
            ).fetchall()
        assert hits == [(1,)]


def test_fencing_refuses_a_deposed_writer(pg_dsn: str) -> None:
    with fresh_store(pg_dsn) as store:
        store.ensure_log(LOG, ORIGIN, "t")
        other = PostgresStore(store.url)
        try:
            with store.connection() as conn:
                conn.execute("UPDATE logs SET epoch = 1 WHERE name = %s", (LOG,))
            store.set_fence(LOG, 1)
            append_leaves(store, LOG, 2)
            with other.connection() as conn:  # another node is elected: epoch 2
                conn.execute("UPDATE logs SET epoch = 2 WHERE name = %s", (LOG,))
            other.set_fence(LOG, 2)
            with pytest.raises(ConflictError, match="epoch 2"):
                append_leaves(store, LOG, 1)
            append_leaves(other, LOG, 1)
            assert other.tree_size(LOG) == 3
        finally:
            other.close()


def test_concurrent_writers_never_fork(pg_dsn: str) -> None:
    """Two stores appending at the same size: exactly one commits, the other conflicts."""
    with fresh_store(pg_dsn) as store:
        store.ensure_log(LOG, ORIGIN, "t")
        other = PostgresStore(store.url)
        outcomes: list[str] = []

        def write(target: PostgresStore) -> None:
            try:
                append_leaves(target, LOG, 50, start=0)
                outcomes.append("ok")
            except ConflictError:
                outcomes.append("conflict")

        try:
            threads = [threading.Thread(target=write, args=(s,)) for s in (store, other)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            other.close()
        assert sorted(outcomes) == ["conflict", "ok"]
        assert store.tree_size(LOG) == 50
        assert [c.tree_size for c in store.iter_checkpoints(LOG)] == [50]


def test_url_parameters() -> None:
    url = parse_url("postgresql://u@h:5433/db?sslmode=disable&schema=audit&pool_max=4")
    assert url.conninfo == "postgresql://u@h:5433/db?sslmode=disable"
    assert (url.schema, url.pool_max) == ("audit", 4)
    with pytest.raises(ValueError):
        parse_url("mysql://h/db")
