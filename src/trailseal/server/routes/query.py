"""Search, timelines, exports and evidence bundles (docs/query.md, docs/api.md).

Every route works on one log, named by the ``log`` query parameter (default: the default log),
which is how the access layer scopes tenants. Handlers are plain ``def``: they run in the
thread pool, each thread on its own SQLite read connection; exports stream page by page.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response, StreamingResponse

from trailseal.core.errors import FormatError, NotFoundError
from trailseal.query import search_for
from trailseal.query.bundle import DEFAULT_MAX_EVENTS, write_bundle
from trailseal.query.export import EXTENSIONS, MEDIA_TYPES, check_format, export_chunks
from trailseal.query.parser import parse
from trailseal.query.render import render_markdown, render_text
from trailseal.query.search import MAX_PAGE, check_order, iter_matches, search_page
from trailseal.query.timeline import DEFAULT_LIMIT, MAX_LIMIT, build_timeline
from trailseal.server.runtime import Runtime, utc_now
from trailseal.storage.base import LeafEntry
from trailseal.storage.keyfiles import verifier_keys

_TIMELINE_TYPES = {"json": "application/json", "markdown": "text/markdown; charset=utf-8",
                   "text": "text/plain; charset=utf-8"}


def search_item(entry: LeafEntry) -> bytes:
    """One search result: the stored envelope bytes spliced in, or the prune mark."""
    head = b'{"leaf_index":' + str(entry.leaf_index).encode()
    mark = entry.pruned
    if mark is None and entry.body[:1] == b"{":
        return head + b',"event":' + entry.body + b"}"
    why = {"policy": mark.policy, "pruned_at": mark.pruned_at, "segment": mark.segment} if mark else {}
    return head + b',"id":' + orjson.dumps(entry.event_id) + b',"pruned":' + orjson.dumps(why) + b"}"


def router(runtime: Runtime) -> APIRouter:
    """Query routes over the runtime's store."""
    settings = runtime.settings
    store = runtime.store
    search = search_for(store)  # migrates and indexes the full text at start-up
    api = APIRouter()

    def known_log(log: str | None) -> str:
        name = log or settings.default_log
        if store.get_log(name) is None:
            raise NotFoundError(f"log {name!r} does not exist")
        return name

    @api.get("/v1/events", tags=["query"])
    def search_events(
        q: str = "",
        limit: int = Query(50, ge=1, le=MAX_PAGE),
        cursor: str | None = None,
        order: str = "newest",
        log: str | None = None,
    ) -> Response:
        """Events matching the query ``q`` (docs/query.md), one page, newest or oldest first.

        Pass ``next_cursor`` back as ``cursor`` for the next page (keyset pagination: stable
        while events arrive). Each item is ``{"leaf_index", "event"}`` (the stored envelope)
        or ``{"leaf_index", "id", "pruned"}`` for an event whose payload retention removed.
        """
        name = known_log(log)
        page = search_page(search, name, q, limit=limit, cursor=cursor, order=check_order(order))
        body = (b'{"log":' + orjson.dumps(name) + b',"order":' + orjson.dumps(order)
                + b',"count":' + str(len(page.entries)).encode()
                + b',"events":[' + b",".join(search_item(e) for e in page.entries)
                + b'],"next_cursor":' + orjson.dumps(page.next_cursor) + b"}")
        return Response(body, media_type="application/json")

    @api.get("/v1/timeline", tags=["query"])
    def timeline(
        request_id: str | None = None,
        trace_id: str | None = None,
        around: str | None = None,
        window: str | None = None,
        before: str | None = None,
        after: str | None = None,
        q: str = "",
        format: str = "json",
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
        log: str | None = None,
    ) -> Response:
        """An incident timeline: by ``request_id``, ``trace_id``, or ``around`` a time with a
        ``window`` (``before``/``after`` for one side), narrowed by ``q``; ``format`` is
        ``json``, ``markdown`` or ``text``."""
        if format not in _TIMELINE_TYPES:
            raise FormatError(f"format: want json, markdown or text, got {format!r}")
        result = build_timeline(search, known_log(log), request_id=request_id, trace_id=trace_id,
                                around=around, window=window, before=before, after=after, q=q,
                                limit=limit)
        if format == "markdown":
            return Response(render_markdown(result), media_type=_TIMELINE_TYPES[format])
        if format == "text":
            return Response(render_text(result), media_type=_TIMELINE_TYPES[format])
        return Response(orjson.dumps(result.to_json()), media_type="application/json")

    @api.get("/v1/export", tags=["query"])
    def export(
        q: str = "",
        format: str = "ndjson",
        order: str = "oldest",
        limit: int | None = Query(None, ge=1),
        log: str | None = None,
    ) -> StreamingResponse:
        """Every match of ``q`` as ``ndjson`` (stored envelopes), ``csv``, ``cef`` or ``ocsf``,
        streamed with constant memory."""
        name = known_log(log)
        fmt = check_format(format)
        node = parse(q)  # errors become a 400 before the stream starts
        entries = iter_matches(search, name, node, order=check_order(order), limit=limit)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            export_chunks(entries, fmt), media_type=MEDIA_TYPES[fmt],
            headers={"Content-Disposition":
                     f'attachment; filename="trailseal-{name}-{stamp}.{EXTENSIONS[fmt]}"'},
        )

    @api.get("/v1/bundles", tags=["query"])
    def bundle(
        q: str = "",
        limit: int = Query(DEFAULT_MAX_EVENTS, ge=1, le=DEFAULT_MAX_EVENTS),
        log: str | None = None,
    ) -> StreamingResponse:
        """An evidence bundle of the matches of ``q``: events, inclusion proofs against one
        signed checkpoint, consistency proofs from earlier checkpoints, verifier keys. Check it
        offline with ``trailseal verify-bundle``."""
        name = known_log(log)
        node = parse(q)
        if store.latest_checkpoint(name) is None:
            raise NotFoundError(f"log {name!r} has no signed checkpoint yet")
        chunks = write_bundle(store, search, name, node, q=q,
                              verifier_keys=verifier_keys(runtime.keyring(name)),
                              created_at=utc_now(), limit=limit)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            chunks, media_type="application/x-ndjson",
            headers={"Content-Disposition":
                     f'attachment; filename="trailseal-{name}-{stamp}.bundle.jsonl"'},
        )

    return api
