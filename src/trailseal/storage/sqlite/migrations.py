"""Numbered SQLite migrations of the core tables. Append new ones; never edit an applied one.

Applied versions are recorded per component in ``schema_migrations``, in the same transaction as
the migration; other features keep their own lists (see ``SQLiteStore.apply_migrations``).
Statements are split on ``;`` so they must not contain one inside a literal.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: logs, entries (leaf input + idempotency + query columns), tiles, checkpoints.
    """
    CREATE TABLE logs (
        name        TEXT PRIMARY KEY,
        origin      TEXT NOT NULL,
        created_at  TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE entries (
        log            TEXT    NOT NULL,
        leaf_index     INTEGER NOT NULL,
        event_id       TEXT    NOT NULL,
        leaf_hash      BLOB    NOT NULL,
        content_hash   BLOB    NOT NULL,
        body           BLOB    NOT NULL,
        time           TEXT    NOT NULL,
        received_at    TEXT    NOT NULL,
        action         TEXT    NOT NULL,
        actor_id       TEXT    NOT NULL,
        resource_type  TEXT    NOT NULL,
        resource_id    TEXT    NOT NULL,
        outcome        TEXT,
        request_id     TEXT,
        trace_id       TEXT,
        source_service TEXT,
        PRIMARY KEY (log, leaf_index)
    );
    CREATE UNIQUE INDEX entries_event_id ON entries (log, event_id);

    CREATE TABLE tiles (
        log    TEXT    NOT NULL,
        level  INTEGER NOT NULL,
        idx    INTEGER NOT NULL,
        data   BLOB    NOT NULL,
        PRIMARY KEY (log, level, idx)
    ) WITHOUT ROWID;

    CREATE TABLE checkpoints (
        log         TEXT    NOT NULL,
        tree_size   INTEGER NOT NULL,
        root_hash   BLOB    NOT NULL,
        note        BLOB    NOT NULL,
        created_at  TEXT    NOT NULL,
        PRIMARY KEY (log, tree_size)
    ) WITHOUT ROWID;
    """,
)
