"""``PostgresStore``: the scale-out backend (psycopg 3 and a connection pool).

Durability: every connection runs with ``synchronous_commit = on``, so :meth:`PostgresStore.append`
returns only after the commit record is flushed to the WAL on disk (and to synchronous standbys
when ``synchronous_standby_names`` is set): an acknowledged batch survives kill -9 of trailseal
and of PostgreSQL, and power loss (ARCHITECTURE.md §3, invariant 1).

An append is one transaction: lock the log's row (``SELECT ... FOR UPDATE``, which serializes
writers of one log across every process), check the fencing epoch and that the batch continues
the stored tree, ``COPY`` the events and derive their ``leaves`` rows server-side, upsert tiles, run the signing callback against
the tiles as stored in this transaction, insert the checkpoint, commit.

The URL is a libpq URL plus two trailseal parameters, removed before connecting::

    postgresql://user@host:5432/db?schema=trailseal&pool_max=10
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from trailseal.core.errors import ConflictError
from trailseal.storage.base import CheckpointRecord, LeafEntry, LogInfo, SignCallback, TileWrite
from trailseal.storage.postgres.migrations import MIGRATIONS

__all__ = ["PgURL", "PostgresStore", "advisory_key", "parse_url"]

_ENTRY_COLUMNS = (
    "log, leaf_index, event_id, leaf_hash, content_hash, body, time, received_at, action, "
    "actor_id, resource_type, resource_id, outcome, request_id, trace_id, source_service"
)
_E_COLUMNS = ", ".join("e." + name.strip() for name in _ENTRY_COLUMNS.split(","))
_COPY_EVENTS = (
    f"COPY events ({_ENTRY_COLUMNS}, received_ts, time_ts) FROM STDIN (FORMAT BINARY)"
)
_EVENT_TYPES = [
    "text", "int8", "text", "bytea", "bytea", "bytea", "text", "text", "text", "text", "text",
    "text", "text", "text", "text", "text", "timestamptz", "timestamptz",
]
_CHECKPOINT_COLUMNS = "log, tree_size, root_hash, note, created_at"
#: First key of every trailseal advisory lock (two-int form): "ts" and a kind byte.
_LOCK_NAMESPACE = 0x7473_0000
_PAGE = 2000
_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class PgURL:
    """A parsed store URL: the libpq conninfo, the schema and the pool bound."""

    conninfo: str
    schema: str = "public"
    pool_max: int = 10


def parse_url(url: str) -> PgURL:
    """Split trailseal's ``schema`` and ``pool_max`` parameters off a ``postgresql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"store: not a postgresql:// URL: {url!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = query.pop("schema", "public") or "public"
    pool_max = int(query.pop("pool_max", "10"))
    if pool_max < 2:
        raise ValueError(f"store: pool_max must be at least 2, got {pool_max}")
    conninfo = urlunsplit(parts._replace(query=urlencode(query)))
    return PgURL(conninfo, schema, pool_max)


def advisory_key(kind: int, schema: str, name: str) -> tuple[int, int]:
    """The two int4 keys of an advisory lock on ``name`` in ``schema``.

    The schema is part of the hash so stores in separate schemas of one database never contend.
    Two names whose 31-bit hashes collide share a lock; that only makes locking coarser.
    """
    digest = hashlib.sha256(f"{schema}\x00{name}".encode()).digest()
    return _LOCK_NAMESPACE | kind, int.from_bytes(digest[:4], "big") >> 1


def _timestamp(value: str | None) -> dt.datetime | None:
    """An RFC 3339 string as an aware datetime, or ``None`` when it does not parse."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _month(moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = moment.astimezone(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def _checkpoint(row: Sequence[Any]) -> CheckpointRecord:
    log, size, root, note, created = row
    return CheckpointRecord(str(log), int(size), bytes(root), bytes(note), str(created))


def _entry(row: Sequence[Any]) -> LeafEntry:
    (log, index, event_id, leaf, content, body, time, received, action, actor, rtype, rid,
     outcome, request_id, trace_id, service) = row
    return LeafEntry(
        str(log), int(index), str(event_id), bytes(leaf), bytes(content), bytes(body), str(time),
        str(received), str(action), str(actor), str(rtype), str(rid), outcome, request_id,
        trace_id, service,
    )


class PostgresStore:
    """The PostgreSQL store. Thread-safe: every call borrows a pooled connection."""

    def __init__(self, url: str | PgURL, *, migrate: bool = True, pool_min: int = 1) -> None:
        self.url = url if isinstance(url, PgURL) else parse_url(url)
        self.schema = self.url.schema
        self._fences: dict[str, int] = {}
        self._partitions: set[dt.datetime] = set()
        self._partition_lock = threading.Lock()
        self._pool = ConnectionPool(
            self.url.conninfo,
            min_size=min(pool_min, self.url.pool_max),
            max_size=self.url.pool_max,
            configure=self._configure,
            open=False,
            name="trailseal",
        )
        self._pool.open(wait=True, timeout=30)
        if migrate:
            self.migrate()

    # -- connections -------------------------------------------------------------------------
    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.autocommit = True
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        conn.execute("SET synchronous_commit TO on")
        conn.autocommit = False

    def connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled connection (search path and durability set); commits on clean exit."""
        return self._pool.connection()

    def connect(self, *, autocommit: bool = False, **options: Any) -> psycopg.Connection[Any]:
        """A new dedicated connection outside the pool (leases, LISTEN), configured the same."""
        conn = psycopg.connect(self.url.conninfo, **options)
        self._configure(conn)
        conn.autocommit = autocommit
        return conn

    def close(self) -> None:
        """Close the pool."""
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def migrate(self) -> int:
        """Apply pending core migrations; return the core schema version now in force."""
        return self.apply_migrations("core", MIGRATIONS)

    def apply_migrations(self, component: str, scripts: Sequence[str]) -> int:
        """Apply ``scripts[version:]`` of ``component`` in order, each in its own transaction.

        A transaction-level advisory lock serializes migrations from processes starting together.
        """
        lock = advisory_key(1, self.schema, "migrations")
        with self.connection() as conn:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock)
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (component text NOT NULL, "
                    "version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
                    "PRIMARY KEY (component, version))"
                )
            for number in range(1, len(scripts) + 1):
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", lock)
                    row = conn.execute(
                        "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE component = %s",
                        (component,),
                    ).fetchone()
                    if row is not None and int(row[0]) >= number:
                        continue
                    conn.execute(scripts[number - 1].encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (component, version) VALUES (%s, %s)",
                        (component, number),
                    )
        return len(scripts)

    def migration_versions(self) -> dict[str, int]:
        """Applied version of every component."""
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT component, max(version) FROM schema_migrations GROUP BY component ORDER BY 1"
            ).fetchall()
        return {str(c): int(v) for c, v in rows}

    def advisory_key(self, name: str) -> tuple[int, int]:
        """The advisory lock keys for ``name`` in this store's schema (leases, key creation)."""
        return advisory_key(2, self.schema, name)

    # -- fencing -----------------------------------------------------------------------------
    def set_fence(self, log: str, epoch: int | None) -> None:
        """Appends to ``log`` commit only while the log's epoch equals ``epoch`` (None: no check).

        The sequencer election (:mod:`trailseal.storage.postgres.coordination`) bumps the epoch
        when it elects a writer, so a deposed writer's append fails instead of forking the log.
        """
        if epoch is None:
            self._fences.pop(log, None)
        else:
            self._fences[log] = epoch

    # -- logs --------------------------------------------------------------------------------
    def ensure_log(self, name: str, origin: str, created_at: str) -> LogInfo:
        """Create the log if absent; return it."""
        with self.connection() as conn:
            conn.execute(
                "INSERT INTO logs (name, origin, created_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (name, origin, created_at),
            )
        info = self.get_log(name)
        assert info is not None
        return info

    def get_log(self, name: str) -> LogInfo | None:
        """The log, or ``None``."""
        with self.connection() as conn:
            row = conn.execute(
                "SELECT name, origin, created_at FROM logs WHERE name = %s", (name,)
            ).fetchone()
        return LogInfo(*row) if row else None

    def list_logs(self) -> list[LogInfo]:
        """Every log, by name."""
        with self.connection() as conn:
            rows = conn.execute("SELECT name, origin, created_at FROM logs ORDER BY name").fetchall()
        return [LogInfo(*row) for row in rows]

    def tree_size(self, log: str) -> int:
        """Number of stored leaves: one past the largest leaf index."""
        with self.connection() as conn:
            row = conn.execute(
                "SELECT max(leaf_index) FROM leaves WHERE log = %s", (log,)
            ).fetchone()
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    # -- append ------------------------------------------------------------------------------
    def _ensure_partitions(self, months: set[dt.datetime]) -> None:
        """Create the monthly partitions of ``events`` and ``search`` for ``months``.

        Runs in its own short transactions before an append (creating a partition locks the
        parent table), under an advisory lock so nodes starting a new month do not collide.
        """
        missing = months - self._partitions
        if not missing:
            return
        with self._partition_lock, self.connection() as conn:
            for start in sorted(missing):
                _, end = _month(start)
                with conn.transaction():
                    conn.execute(
                        "SELECT pg_advisory_xact_lock(%s, %s)",
                        advisory_key(1, self.schema, "partitions"),
                    )
                    for table in ("events", "search"):
                        conn.execute(
                            sql.SQL(
                                "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} "
                                "FOR VALUES FROM ({}) TO ({})"
                            ).format(
                                sql.Identifier(f"{table}_{start:%Y%m}"), sql.Identifier(table),
                                sql.Literal(start), sql.Literal(end),
                            )
                        )
                self._partitions.add(start)

    def append(
        self,
        log: str,
        entries: Sequence[LeafEntry],
        tiles: Sequence[TileWrite],
        sign: SignCallback,
    ) -> CheckpointRecord:
        """One transaction: fence and size check, COPY, tiles, signed checkpoint, durable commit."""
        now = dt.datetime.now(dt.UTC)
        parsed: dict[str, dt.datetime] = {}  # a request's events share one received_at
        received = [
            parsed.get(e.received_at) or parsed.setdefault(e.received_at, _timestamp(e.received_at) or now)
            for e in entries
        ]
        self._ensure_partitions({_month(moment)[0] for moment in set(received)})
        with self.connection() as conn:
            try:
                with conn.transaction():
                    return self._append(conn, log, entries, received, tiles, sign)
            except psycopg.errors.UniqueViolation as exc:
                raise ConflictError(f"append: {exc.diag.message_detail or exc}") from exc

    def _append(
        self,
        conn: psycopg.Connection[Any],
        log: str,
        entries: Sequence[LeafEntry],
        received: Sequence[dt.datetime],
        tiles: Sequence[TileWrite],
        sign: SignCallback,
    ) -> CheckpointRecord:
        row = conn.execute("SELECT epoch FROM logs WHERE name = %s FOR UPDATE", (log,)).fetchone()
        if row is None:
            raise ConflictError(f"append: log {log!r} does not exist")
        fence = self._fences.get(log)
        if fence is not None and int(row[0]) != fence:
            raise ConflictError(
                f"append: log {log} is now sequenced under epoch {row[0]}, this writer was "
                f"elected under epoch {fence}; refusing to commit"
            )
        got = conn.execute("SELECT max(leaf_index) FROM leaves WHERE log = %s", (log,)).fetchone()
        size = 0 if got is None or got[0] is None else int(got[0]) + 1
        for offset, e in enumerate(entries):
            if e.leaf_index != size + offset:
                raise ConflictError(
                    f"append: leaf index {e.leaf_index} does not continue tree size {size + offset}"
                )
        with conn.cursor() as cur:
            if entries:
                with cur.copy(_COPY_EVENTS) as copy:
                    copy.set_types(_EVENT_TYPES)
                    for e, moment in zip(entries, received, strict=True):
                        copy.write_row((
                            e.log, e.leaf_index, e.event_id, e.leaf_hash, e.content_hash, e.body,
                            e.time, e.received_at, e.action, e.actor_id, e.resource_type,
                            e.resource_id, e.outcome, e.request_id, e.trace_id, e.source_service,
                            moment, _timestamp(e.time),
                        ))
                # The spine rows come from the rows just copied, server-side (one encoding).
                cur.execute(
                    "INSERT INTO leaves (log, leaf_index, event_id, content_hash, received_ts) "
                    "SELECT log, leaf_index, event_id, content_hash, received_ts FROM events "
                    "WHERE log = %s AND leaf_index >= %s AND leaf_index < %s",
                    (log, entries[0].leaf_index, entries[0].leaf_index + len(entries)),
                )
            if tiles:
                cur.executemany(
                    "INSERT INTO tiles (log, level, idx, data) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (log, level, idx) DO UPDATE SET data = EXCLUDED.data",
                    [(log, t.level, t.index, t.data) for t in tiles],
                )

        def read_tile(level: int, index: int) -> bytes | None:
            found = conn.execute(
                "SELECT data FROM tiles WHERE log = %s AND level = %s AND idx = %s",
                (log, level, index),
            ).fetchone()
            return bytes(found[0]) if found else None

        record = sign(read_tile)
        conn.execute(
            f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
            (record.log, record.tree_size, record.root_hash, record.note, record.created_at),
        )
        return record

    # -- reads -------------------------------------------------------------------------------
    def _one(self, query: str, params: Sequence[Any]) -> Sequence[Any] | None:
        with self.connection() as conn:
            return conn.execute(query.encode(), params).fetchone()

    def read_tile(self, log: str, level: int, index: int) -> bytes | None:
        """Tile data, or ``None``."""
        row = self._one(
            "SELECT data FROM tiles WHERE log = %s AND level = %s AND idx = %s", (log, level, index)
        )
        return bytes(row[0]) if row else None

    def lookup_ids(self, log: str, event_ids: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Stored ids among ``event_ids`` (one ``= ANY`` query on the leaves' unique index)."""
        if not event_ids:
            return {}
        # Ids are sent as one text split server-side: binding a 2,000-element array costs more
        # than the query. The separator (US, 0x1f) cannot occur in an id ([A-Za-z0-9._:-]).
        if any(_SEPARATOR in event_id for event_id in event_ids):
            raise ValueError("lookup_ids: an event id contains the 0x1f separator")
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT event_id, leaf_index, content_hash FROM leaves "
                "WHERE log = %s AND event_id = ANY(string_to_array(%s, %s))",
                (log, _SEPARATOR.join(event_ids), _SEPARATOR),
            ).fetchall()
        return {str(event_id): (int(index), bytes(content)) for event_id, index, content in rows}

    def get_entry(self, log: str, leaf_index: int) -> LeafEntry | None:
        """Entry at ``leaf_index`` (the leaves row names the partition to read)."""
        row = self._one(
            f"SELECT {_E_COLUMNS} FROM leaves l JOIN events e ON e.log = l.log "
            f"AND e.leaf_index = l.leaf_index AND e.received_ts = l.received_ts "
            f"WHERE l.log = %s AND l.leaf_index = %s",
            (log, leaf_index),
        )
        return _entry(row) if row else None

    def get_entry_by_id(self, log: str, event_id: str) -> LeafEntry | None:
        """Entry by idempotency key."""
        row = self._one(
            f"SELECT {_E_COLUMNS} FROM leaves l JOIN events e ON e.log = l.log "
            f"AND e.leaf_index = l.leaf_index AND e.received_ts = l.received_ts "
            f"WHERE l.log = %s AND l.event_id = %s",
            (log, event_id),
        )
        return _entry(row) if row else None

    def iter_entries(self, log: str, start: int = 0, end: int | None = None) -> Iterator[LeafEntry]:
        """Entries in ``[start, end)`` in leaf order, read in pages (no connection held between)."""
        stop = end if end is not None else 2**63 - 1
        cursor = start
        while cursor < stop:
            with self.connection() as conn:
                rows = conn.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM events WHERE log = %s AND leaf_index >= %s "
                    f"AND leaf_index < %s ORDER BY leaf_index LIMIT {_PAGE}",
                    (log, cursor, stop),
                ).fetchall()
            if not rows:
                return
            yield from map(_entry, rows)
            cursor = int(rows[-1][1]) + 1

    def latest_checkpoint(self, log: str) -> CheckpointRecord | None:
        """Largest checkpoint."""
        row = self._one(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE log = %s "
            f"ORDER BY tree_size DESC LIMIT 1",
            (log,),
        )
        return _checkpoint(row) if row else None

    def checkpoint_covering(self, log: str, leaf_index: int) -> CheckpointRecord | None:
        """Smallest checkpoint with ``tree_size > leaf_index``."""
        row = self._one(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE log = %s AND tree_size > %s "
            f"ORDER BY tree_size LIMIT 1",
            (log, leaf_index),
        )
        return _checkpoint(row) if row else None

    def get_checkpoint(self, log: str, tree_size: int) -> CheckpointRecord | None:
        """Checkpoint at exactly ``tree_size``."""
        row = self._one(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE log = %s AND tree_size = %s",
            (log, tree_size),
        )
        return _checkpoint(row) if row else None

    def iter_checkpoints(self, log: str) -> Iterator[CheckpointRecord]:
        """Checkpoints by increasing size."""
        with self.connection() as conn:
            rows = conn.execute(
                f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE log = %s ORDER BY tree_size",
                (log,),
            ).fetchall()
        return iter([_checkpoint(row) for row in rows])

    # -- search index ------------------------------------------------------------------------
    def index_search(self, log: str, limit: int = 5000) -> int:
        """Copy up to ``limit`` sequenced events of ``log`` into ``search``; return how many.

        The search columns and the ``tsvector`` are computed by PostgreSQL from ``events`` in one
        ``INSERT ... SELECT``; the cursor advances in the same transaction, so a crash repeats
        nothing and skips nothing. Safe to call from several processes (the cursor row is locked).
        """
        with self.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO search_cursor (log, next_leaf) VALUES (%s, 0) ON CONFLICT DO NOTHING",
                (log,),
            )
            row = conn.execute(
                "SELECT next_leaf FROM search_cursor WHERE log = %s FOR UPDATE", (log,)
            ).fetchone()
            start = int(row[0]) if row else 0
            done = conn.execute(
                "INSERT INTO search (log, leaf_index, received_ts, time_ts, action, actor_id, "
                "resource_type, resource_id, outcome, request_id, trace_id, source_service, tsv) "
                "SELECT log, leaf_index, received_ts, time_ts, action, actor_id, resource_type, "
                "resource_id, outcome, request_id, trace_id, source_service, "
                "jsonb_to_tsvector('simple', trailseal_body_json(body), '[\"string\"]') "
                "FROM events WHERE log = %s AND leaf_index >= %s AND leaf_index < %s",
                (log, start, start + limit),
            ).rowcount
            if done:
                conn.execute(
                    "UPDATE search_cursor SET next_leaf = %s WHERE log = %s", (start + done, log)
                )
        return max(done, 0)

    def search_lag(self, log: str) -> int:
        """Sequenced events of ``log`` not yet in ``search``."""
        row = self._one("SELECT next_leaf FROM search_cursor WHERE log = %s", (log,))
        return self.tree_size(log) - (int(row[0]) if row else 0)

    # -- maintenance -------------------------------------------------------------------------
    def drop_schema(self) -> None:
        """Drop this store's schema and everything in it (tests; never ``public``)."""
        if self.schema == "public":
            raise ValueError("store: refusing to drop the public schema")
        with self.connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))
