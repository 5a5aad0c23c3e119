"""C2SP tlog-tiles read paths over a ``Store``: hash tiles and entry bundles.

Full tiles and bundles never change and are served with a long ``Cache-Control``; partial ones
(``.p/<W>``) are served as soon as the signed tree covers them. A width beyond what the latest
checkpoint covers is a 404, as the spec asks.
"""

from __future__ import annotations

from starlette.responses import Response

from trailseal.core.errors import NotFoundError
from trailseal.core.tiles import TILE_HEIGHT, TILE_WIDTH, EntryBundle, parse_tile_path
from trailseal.storage.base import Store
from trailseal.storage.proofs import signed_size

_HASH = 32
_IMMUTABLE = "public, max-age=31536000, immutable"


def tile_response(store: Store, log: str, path: str) -> Response:
    """Serve one tile or entry bundle; ``path`` starts with ``tile/``."""
    item = parse_tile_path(path)
    size = signed_size(store, log)
    headers = {"Cache-Control": _IMMUTABLE if item.width == TILE_WIDTH else "no-cache"}
    if isinstance(item, EntryBundle):
        first = item.index * TILE_WIDTH
        if first + item.width > size:
            raise NotFoundError(f"{path}: beyond the signed tree size {size}")
        parts: list[bytes] = []
        for entry in store.iter_entries(log, first, first + item.width):
            if entry.pruned is not None:  # docs/retention.md: hash tiles stay, payloads do not
                raise NotFoundError(
                    f"{path}: leaf {entry.leaf_index} was pruned by retention policy "
                    f"{entry.pruned.policy}; its leaf hash is in tile/0/{item.index} and the "
                    f"event in archive segment {entry.pruned.segment}"
                )
            parts.append(len(entry.body).to_bytes(2, "big") + entry.body)
        if len(parts) != item.width:
            raise NotFoundError(f"{path}: only {len(parts)} of {item.width} entries are stored")
        return Response(b"".join(parts), media_type="application/octet-stream", headers=headers)
    # Hashes at tree level 8*L: the tree of `size` leaves has size >> 8L of them.
    available = size >> (TILE_HEIGHT * item.level)
    if item.index * TILE_WIDTH + item.width > available:
        raise NotFoundError(f"{path}: beyond the signed tree size {size}")
    data = store.read_tile(log, item.level, item.index) or b""
    if len(data) < item.width * _HASH:
        raise NotFoundError(f"{path}: tile not stored")
    return Response(data[: item.width * _HASH], media_type="application/octet-stream", headers=headers)
