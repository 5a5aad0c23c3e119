"""Event reads, logs, checkpoints, proofs and C2SP tiles."""

from __future__ import annotations

import base64

import orjson
from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from trailseal.core.errors import FormatError, NotFoundError
from trailseal.server.access import principal_of
from trailseal.server.http import json_response
from trailseal.server.runtime import Runtime
from trailseal.server.tiles import tile_response
from trailseal.storage.keyfiles import verifier_keys
from trailseal.storage.proofs import consistency_proof, inclusion_proof, receipt_for


def _b64(hashes: list[bytes]) -> list[str]:
    return [base64.b64encode(h).decode() for h in hashes]


def router(runtime: Runtime) -> APIRouter:
    """Read and verification routes."""
    settings = runtime.settings
    store = runtime.store
    api = APIRouter()

    def known_log(log: str) -> str:
        if store.get_log(log) is None:
            raise NotFoundError(f"log {log!r} does not exist")
        return log

    @api.get("/v1/events/{event_id}", tags=["read"])
    async def get_event(
        event_id: str,
        log: str | None = None,
        decrypt: bool = Query(False, description="Read encrypted fields whose subject key exists."),
    ) -> Response:
        """The stored envelope exactly as sequenced (its RFC 8785 bytes are the leaf input).

        An event with encrypted fields also gets a ``view`` (docs/pipeline.md): each field reads
        ``"erased"`` once its subject was forgotten, or its plaintext with ``decrypt=true``."""
        target = log or settings.default_log
        entry = store.get_entry_by_id(target, event_id)
        if entry is None:
            raise NotFoundError(f"event {event_id!r} not found in log {target!r}")
        receipt = receipt_for(store, target, entry.leaf_index)
        mark = entry.pruned
        if mark is not None:  # retention removed the payload; the receipt still verifies
            pruned = {"policy": mark.policy, "pruned_at": mark.pruned_at, "segment": mark.segment}
            return json_response({"event": None, "pruned": pruned, "receipt": receipt.to_json()})
        view = runtime.pipeline.reveal(target, orjson.loads(entry.body), decrypt=decrypt) if b'"enc:' in entry.body else None
        extra = b',"view":' + orjson.dumps(view) if view else b""
        payload = b'{"event":' + entry.body + b',"receipt":' + orjson.dumps(receipt.to_json()) + extra + b"}"
        return Response(payload, media_type="application/json")

    @api.get("/v1/logs", tags=["verify"])
    async def list_logs(request: Request) -> Response:
        """Every log (the caller's, when verification material is not public) with its origin,
        size and verifier keys."""
        out = []
        principal = principal_of(request)
        for info in store.list_logs():
            if not runtime.access.gate.visible(principal, info.name):
                continue
            latest = store.latest_checkpoint(info.name)
            out.append(
                {
                    "log": info.name,
                    "origin": info.origin,
                    "tree_size": latest.tree_size if latest else 0,
                    "verifier_keys": verifier_keys(runtime.keyring(info.name)),
                }
            )
        return json_response({"logs": out})

    @api.get("/v1/logs/{log}/checkpoint", tags=["verify"])
    async def get_checkpoint(log: str) -> Response:
        """Latest signed checkpoint as a C2SP signed note."""
        latest = store.latest_checkpoint(known_log(log))
        if latest is None:
            raise NotFoundError(f"log {log!r} has no checkpoint yet")
        return Response(latest.note, media_type="text/plain; charset=utf-8")

    @api.get("/v1/logs/{log}/proofs/inclusion", tags=["verify"])
    async def get_inclusion(
        log: str,
        leaf_index: int | None = Query(None, ge=0),
        tree_size: int | None = Query(None, ge=1),
        event_id: str | None = None,
    ) -> Response:
        """RFC 9162 inclusion proof, by leaf index or by event id."""
        known_log(log)
        if event_id is not None:
            entry = store.get_entry_by_id(log, event_id)
            if entry is None:
                raise NotFoundError(f"event {event_id!r} not found in log {log!r}")
            leaf_index = entry.leaf_index
        if leaf_index is None:
            raise FormatError("proof: give leaf_index or event_id")
        if tree_size is None:
            latest = store.latest_checkpoint(log)
            tree_size = latest.tree_size if latest else 0
        hashes = inclusion_proof(store, log, leaf_index, tree_size)
        return json_response({"leaf_index": leaf_index, "tree_size": tree_size, "hashes": _b64(hashes)})

    @api.get("/v1/logs/{log}/proofs/consistency", tags=["verify"])
    async def get_consistency(
        log: str, first: int = Query(..., ge=0), second: int = Query(..., ge=0)
    ) -> Response:
        """RFC 9162 consistency proof between two tree sizes."""
        hashes = consistency_proof(store, known_log(log), first, second)
        return json_response({"first": first, "second": second, "hashes": _b64(hashes)})

    @api.get("/v1/logs/{log}/tile/{path:path}", tags=["verify"])
    async def get_tile(log: str, path: str) -> Response:
        """C2SP tlog-tiles read path: hash tiles and entry bundles (immutable once full)."""
        return tile_response(store, known_log(log), "tile/" + path)

    return api
