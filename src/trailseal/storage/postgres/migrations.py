"""Numbered PostgreSQL migrations of the core tables. Append new ones; never edit an applied one.

Applied versions are recorded per component in ``schema_migrations`` (as in SQLite), in the same
transaction as the migration; other features keep their own lists and apply them with
``PostgresStore.apply_migrations("<component>", [...])``. Each script runs as one multi-statement
``execute``, so it may hold ``;`` anywhere, including in function bodies.

Layout, and why:

* ``events`` holds the leaf input and the query columns. It is partitioned by month of
  ``received_ts`` (the server's receive time) so old months can be detached, archived or dropped
  by retention without touching the hot partition; partitions are created on demand by the store.
  A partitioned table's unique indexes must contain the partition key, so ``(log, leaf_index)``
  and ``(log, event_id)`` cannot be unique there.
* ``leaves`` is the small, unpartitioned spine: one row per leaf with the idempotency key. Its
  primary key makes ``(log, leaf_index)`` unique and its unique index ``(log, event_id)`` makes an
  id usable once per log, for all time; ``lookup_ids`` (deduplication) reads only this table, and
  readers find an entry's partition through its ``received_ts``.
* ``events`` carries only its primary key and a BRIN index on time: measured on the development
  machine, five B-tree indexes halved ``COPY`` throughput and a GIN index on a ``tsvector``
  cut it to a fifth (BENCHMARKS.md, scale-out). Search columns therefore live in ``search``
  (same partitioning, B-tree and GIN indexes, ``tsv`` = every string value of the event via
  ``jsonb_to_tsvector``), filled from ``events`` by ``PostgresStore.index_search`` behind the
  acknowledgement path; ``search_cursor`` records how far each log is indexed.
* ``logs.epoch`` is the sequencer fencing token: every election bumps it, and an append commits
  only while the row still holds the epoch its writer was elected with.
* ``pending`` is the outbox through which API nodes hand requests to the node that sequences the
  log (docs/deploy.md).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: logs, leaves, partitioned events and search (full text), tiles, checkpoints, outbox.
    """
    CREATE TABLE logs (
        name          text PRIMARY KEY,
        origin        text NOT NULL,
        created_at    text NOT NULL,
        epoch         bigint NOT NULL DEFAULT 0,
        leader        text,
        leader_since  timestamptz
    );

    CREATE TABLE leaves (
        log           text   NOT NULL,
        leaf_index    bigint NOT NULL,
        event_id      text   NOT NULL,
        content_hash  bytea  NOT NULL,
        received_ts   timestamptz NOT NULL,
        PRIMARY KEY (log, leaf_index)
    );
    CREATE UNIQUE INDEX leaves_event_id ON leaves (log, event_id);

    -- The event body as text, for full text. convert_from is STABLE only because the server
    -- encoding could change; trailseal requires a UTF8 database, so it is fixed here.
    CREATE FUNCTION trailseal_body_json(body bytea) RETURNS jsonb
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT convert_from(body, 'UTF8')::jsonb $$;

    CREATE TABLE events (
        log            text   NOT NULL,
        leaf_index     bigint NOT NULL,
        event_id       text   NOT NULL,
        leaf_hash      bytea  NOT NULL,
        content_hash   bytea  NOT NULL,
        body           bytea  NOT NULL,
        time           text   NOT NULL,
        received_at    text   NOT NULL,
        received_ts    timestamptz NOT NULL,
        time_ts        timestamptz,
        action         text   NOT NULL,
        actor_id       text   NOT NULL,
        resource_type  text   NOT NULL,
        resource_id    text   NOT NULL,
        outcome        text,
        request_id     text,
        trace_id       text,
        source_service text,
        PRIMARY KEY (log, leaf_index, received_ts)
    ) PARTITION BY RANGE (received_ts);
    CREATE INDEX events_time ON events USING brin (time_ts);

    CREATE TABLE search (
        log            text   NOT NULL,
        leaf_index     bigint NOT NULL,
        received_ts    timestamptz NOT NULL,
        time_ts        timestamptz,
        action         text   NOT NULL,
        actor_id       text   NOT NULL,
        resource_type  text   NOT NULL,
        resource_id    text   NOT NULL,
        outcome        text,
        request_id     text,
        trace_id       text,
        source_service text,
        tsv            tsvector NOT NULL,
        PRIMARY KEY (log, leaf_index, received_ts)
    ) PARTITION BY RANGE (received_ts);
    CREATE INDEX search_time ON search (log, time_ts);
    CREATE INDEX search_actor ON search (log, actor_id, time_ts);
    CREATE INDEX search_action ON search (log, action, time_ts);
    CREATE INDEX search_resource ON search (log, resource_type, resource_id, time_ts);
    CREATE INDEX search_request ON search (log, request_id) WHERE request_id IS NOT NULL;
    CREATE INDEX search_trace ON search (log, trace_id) WHERE trace_id IS NOT NULL;
    CREATE INDEX search_tsv ON search USING gin (tsv);

    CREATE TABLE search_cursor (
        log         text PRIMARY KEY,
        next_leaf   bigint NOT NULL
    );

    CREATE TABLE tiles (
        log    text     NOT NULL,
        level  integer  NOT NULL,
        idx    bigint   NOT NULL,
        data   bytea    NOT NULL,
        PRIMARY KEY (log, level, idx)
    );

    CREATE TABLE checkpoints (
        log         text   NOT NULL,
        tree_size   bigint NOT NULL,
        root_hash   bytea  NOT NULL,
        note        bytea  NOT NULL,
        created_at  text   NOT NULL,
        PRIMARY KEY (log, tree_size)
    );

    CREATE TABLE pending (
        id           bigserial PRIMARY KEY,
        log          text      NOT NULL,
        want_proofs  boolean   NOT NULL,
        event_count  integer   NOT NULL,
        payload      bytea     NOT NULL,
        created_at   timestamptz NOT NULL DEFAULT now(),
        done_at      timestamptz,
        result       bytea,
        error        jsonb
    );
    CREATE INDEX pending_open ON pending (log, id) WHERE done_at IS NULL;
    """,
)
