"""C2SP tlog-tiles (https://c2sp.org/tlog-tiles): the Merkle tree served as static tiles.

A tile at tile level ``L``, index ``N``, width ``W`` (1..256) is the concatenation of ``W``
32-byte hashes, the perfect-subtree hashes at *tree* level ``8 * L`` with indexes
``N * 256`` .. ``N * 256 + W - 1``::

    tile data = H[8L, 256N] || H[8L, 256N + 1] || ... || H[8L, 256N + W - 1]   (32 * W bytes)

so level-0 tiles hold leaf hashes and each hash in a level-``L`` tile is the root of a *full*
tile at level ``L - 1``. Tree levels between multiples of 8 are not stored: a node at tree
level ``8L + r`` is recomputed from the ``2**r`` hashes of its tile below it.

Paths (``<prefix>/`` is not included)::

    tile/<L>/<N>[.p/<W>]          L: decimal 0..63, no leading zeros
    tile/entries/<N>[.p/<W>]      entry bundle of leaves N*256 .. N*256+W-1

``N`` is written in zero-padded 3-digit groups, every group but the last prefixed with ``x``
(1234067 -> ``x001/x234/067``); ``.p/<W>`` marks a partial tile, ``W`` decimal 1..255 with no
leading zeros. A full tile (W = 256) has no suffix. Only the canonical form parses.

An entry bundle is the leaves' data, each prefixed by its length as a big-endian uint16.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from trailseal.core.errors import FormatError
from trailseal.core.hashing import HASH_SIZE
from trailseal.core.merkle import GetNode, root_hash

__all__ = [
    "MAX_TILE_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "EntryBundle",
    "Tile",
    "entries_path",
    "node_from_tiles",
    "parse_tile_path",
    "tile_data",
    "tile_for_node",
    "tiles_for_size",
]

TILE_HEIGHT = 8
"""Tree levels per tile level: a full tile is a perfect subtree of height 8."""

TILE_WIDTH = 1 << TILE_HEIGHT
"""Hashes in a full tile (256, i.e. 8192 bytes)."""

MAX_TILE_LEVEL = 63
"""Largest tile level a path may name (tlog-tiles: ``L`` is 0..63)."""

_MAX_INDEX = 1 << 64  # tree sizes are uint64 everywhere; also bounds the path length


def _format_index(index: int) -> str:
    # 1234067 -> "x001/x234/067": 3-digit groups, high first, all but the last with "x".
    digits = f"{index:03d}"
    digits = digits.zfill(-(-len(digits) // 3) * 3)  # left-pad to a multiple of 3
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def _suffix(width: int) -> str:
    return "" if width == TILE_WIDTH else f".p/{width}"


def _check(level: int, index: int, width: int) -> None:
    if not 0 <= level <= MAX_TILE_LEVEL:
        raise FormatError(f"tile: level {level} not in [0, {MAX_TILE_LEVEL}]")
    if not 0 <= index < _MAX_INDEX:
        raise FormatError(f"tile: index {index} not in [0, 2**64)")
    if not 1 <= width <= TILE_WIDTH:
        raise FormatError(f"tile: width {width} not in [1, {TILE_WIDTH}]")


@dataclass(frozen=True, slots=True)
class Tile:
    """Tile ``index`` at tile level ``level``, holding ``width`` hashes (256 when full)."""

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        """Reject levels outside 0..63, negative indexes and widths outside 1..256."""
        _check(self.level, self.index, self.width)

    def path(self) -> str:
        """Return ``tile/<L>/<N>[.p/<W>]``, e.g. ``tile/0/x001/x234/067.p/8``."""
        return f"tile/{self.level}/{_format_index(self.index)}{_suffix(self.width)}"

    @property
    def tree_level(self) -> int:
        """The tree level of the hashes in this tile: ``8 * level``."""
        return self.level * TILE_HEIGHT

    @property
    def first_node(self) -> int:
        """Index, at :attr:`tree_level`, of the first hash in this tile: ``256 * index``."""
        return self.index * TILE_WIDTH


@dataclass(frozen=True, slots=True)
class EntryBundle:
    """Entry bundle ``index``: the data of leaves ``256 * index`` .. ``+ width - 1``."""

    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        """Reject negative indexes and widths outside 1..256."""
        _check(0, self.index, self.width)

    def path(self) -> str:
        """Return ``tile/entries/<N>[.p/<W>]``."""
        return entries_path(self.index, self.width)


def entries_path(index: int, width: int = TILE_WIDTH) -> str:
    """Return the path of entry bundle ``index`` of ``width`` entries, e.g. ``tile/entries/000.p/3``."""
    _check(0, index, width)
    return f"tile/entries/{_format_index(index)}{_suffix(width)}"


_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"x[0-9]{3}")
_LAST_GROUP = re.compile(r"[0-9]{3}")


def parse_tile_path(path: str) -> Tile | EntryBundle:
    """Parse a canonical ``tile/...`` path into a :class:`Tile` or :class:`EntryBundle`.

    Raises :class:`FormatError` for any other spelling of the same tile (leading zeros, an
    ``x000`` group, ``.p/256``, ...) as well as for malformed paths.
    """
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise FormatError(f"tile path: want tile/<L>/<N>[.p/<W>], got {path!r}")
    head, groups = parts[1], parts[2:]
    width = TILE_WIDTH
    if len(groups) >= 2 and groups[-2].endswith(".p"):
        if not _WIDTH.fullmatch(groups[-1]) or int(groups[-1]) >= TILE_WIDTH:
            raise FormatError(f"tile path: partial width {groups[-1]!r} not 1..255 in {path!r}")
        width = int(groups[-1])
        groups = [*groups[:-2], groups[-2][:-2]]
    # Index: "x"-prefixed 3-digit groups, then one bare 3-digit group; no leading "x000".
    # At most 7 groups: 2**64 has 20 digits (and int() of a huge string would be slow).
    if (
        len(groups) > 7
        or not all(_GROUP.fullmatch(g) for g in groups[:-1])
        or not _LAST_GROUP.fullmatch(groups[-1])
        or (len(groups) > 1 and groups[0] == "x000")
    ):
        raise FormatError(f"tile path: index not canonical in {path!r}")
    index = int("".join(g.lstrip("x") for g in groups))
    if index >= _MAX_INDEX:
        raise FormatError(f"tile path: index {index} not below 2**64 in {path!r}")
    if head == "entries":
        return EntryBundle(index, width)
    if not _LEVEL.fullmatch(head) or int(head) > MAX_TILE_LEVEL:
        raise FormatError(f"tile path: level {head!r} not 0..{MAX_TILE_LEVEL} in {path!r}")
    return Tile(int(head), index, width)


def tiles_for_size(tree_size: int) -> list[Tile]:
    """Return every tile of a tree of ``tree_size`` leaves: full ones, then the partial edge.

    Level by level, in index order. A tree of size 70,000 has 273 full level-0 tiles, a
    level-0 tile of width 112, a full level-1 tile, a level-1 tile of width 17 and a level-2
    tile of width 1 (tlog-tiles "Partial Tiles").
    """
    if not 0 <= tree_size < _MAX_INDEX:
        raise FormatError(f"tiles: tree size {tree_size} not in [0, 2**64)")
    tiles: list[Tile] = []
    level = 0
    # Tile level L holds the nodes at tree level 8L, of which there are tree_size >> 8L.
    while (count := tree_size >> (level * TILE_HEIGHT)) > 0:
        full, partial = divmod(count, TILE_WIDTH)
        tiles.extend(Tile(level, i) for i in range(full))
        if partial:
            tiles.append(Tile(level, full, partial))
        level += 1
    return tiles


def tile_for_node(level: int, index: int) -> tuple[Tile, int, int]:
    """Locate the perfect node ``(level, index)`` in tiles.

    Returns ``(tile, start, end)``: the node is the hash of the hashes at positions
    ``[start, end)`` of ``tile`` (``end - start == 2 ** (level % 8)``; one hash, read
    directly, when ``level`` is a multiple of 8). ``tile.width`` is the smallest width that
    holds them; any wider version of the same tile (a later partial or the full tile) holds
    the same hashes at the same positions.
    """
    tile_level, r = divmod(level, TILE_HEIGHT)  # r: tree levels above the tile's hashes
    first = index << r  # leftmost covered hash at tree level 8 * tile_level
    # The 2**r covered hashes are aligned to 2**r <= 128, so they never straddle two tiles.
    start = first % TILE_WIDTH
    end = start + (1 << r)
    return Tile(tile_level, first // TILE_WIDTH, end), start, end


def tile_data(tile: Tile, get_node: GetNode) -> bytes:
    """Return the bytes of ``tile``: its ``width`` hashes at tree level ``8 * level``, concatenated."""
    first, tree_level = tile.first_node, tile.tree_level
    data = b"".join(get_node(tree_level, first + i) for i in range(tile.width))
    if len(data) != tile.width * HASH_SIZE:
        raise FormatError(f"tile {tile.path()}: {len(data)} bytes, want {tile.width * HASH_SIZE}")
    return data


def node_from_tiles(level: int, index: int, get_tile: Callable[[Tile], bytes]) -> bytes:
    """Return the perfect node hash ``(level, index)`` computed from tile data.

    ``get_tile(tile)`` returns the bytes of that tile or of any wider version of it.
    """
    tile, start, end = tile_for_node(level, index)
    data = get_tile(tile)
    if len(data) % HASH_SIZE or not end * HASH_SIZE <= len(data) <= TILE_WIDTH * HASH_SIZE:
        raise FormatError(
            f"tile {tile.path()}: {len(data)} bytes, want a multiple of {HASH_SIZE} "
            f"from {end * HASH_SIZE} to {TILE_WIDTH * HASH_SIZE}"
        )
    hashes = [data[i : i + HASH_SIZE] for i in range(start * HASH_SIZE, end * HASH_SIZE, HASH_SIZE)]
    # 2**r hashes form a perfect subtree, whose RFC 6962 MTH is the node hash itself.
    return root_hash(hashes)
