"""C2SP tlog-tiles: path format, canonical parsing, tiles of a tree size, nodes from tiles."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core import naive
from trailseal.core.errors import FormatError
from trailseal.core.merkle import root_hash
from trailseal.core.tiles import (
    MAX_TILE_LEVEL,
    TILE_HEIGHT,
    TILE_WIDTH,
    EntryBundle,
    Tile,
    entries_path,
    node_from_tiles,
    parse_tile_path,
    tile_data,
    tile_for_node,
    tiles_for_size,
)

BIG = 1 << 17  # enough leaves for full level-0 and level-1 tiles and a level-2 tile


@functools.cache
def nodes() -> dict[tuple[int, int], bytes]:
    return naive.perfect_nodes([naive.leaf(i.to_bytes(4, "big")) for i in range(BIG)])


def get_node(level: int, index: int) -> bytes:
    return nodes()[level, index]


def test_constants() -> None:
    assert (TILE_HEIGHT, TILE_WIDTH, MAX_TILE_LEVEL) == (8, 256, 63)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (Tile(0, 1234067), "tile/0/x001/x234/067"),
        (Tile(0, 1234067, 8), "tile/0/x001/x234/067.p/8"),
        (Tile(0, 0), "tile/0/000"),
        (Tile(1, 999, 255), "tile/1/999.p/255"),
        (Tile(2, 1000), "tile/2/x001/000"),
        (Tile(63, 5, 1), "tile/63/005.p/1"),
        (EntryBundle(1234067), "tile/entries/x001/x234/067"),
        (EntryBundle(0, 3), "tile/entries/000.p/3"),
    ],
)
def test_paths(value: Tile | EntryBundle, path: str) -> None:
    assert value.path() == path
    assert parse_tile_path(path) == value


def test_entries_path() -> None:
    assert entries_path(1234067, 8) == "tile/entries/x001/x234/067.p/8"
    assert entries_path(7) == "tile/entries/007"


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/67",  # index group not 3 digits
        "tile/0/0067",
        "tile/0/x000/067",  # leading zero group
        "tile/0/001/067",  # non-final group without x
        "tile/0/x001/x067",  # final group with x
        "tile/0/X001/067",
        "tile/00/000",  # level with a leading zero
        "tile/01/000",
        "tile/64/000",  # level above 63
        "tile/-1/000",
        "tile/+1/000",
        "tile/0/000.p/0",  # partial width 0
        "tile/0/000.p/256",  # a full tile has no suffix
        "tile/0/000.p/300",
        "tile/0/000.p/007",  # width with leading zeros
        "tile/0/000.p/+7",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/000.P/8",
        "tile/0/000.p/8/9",
        "tile/0/000/",
        "/tile/0/000",
        "tiles/0/000",
        "tile/0/",
        "tile/0",
        "tile/entries/x000/001",
        "tile/entries/000.p/0",
        "tile/data/000",
        "tile/0/00a",
        "tile/0/\u0660\u0660\u0660",  # Arabic-Indic digits are not ASCII digits
        "tile/0/000\n",
        "tile/0/x018/x446/x744/x073/x709/x551/616",  # index 2**64
        "tile/0/" + "x999/" * 2000 + "999",  # absurdly long index
    ],
)
def test_parse_rejects_non_canonical(path: str) -> None:
    with pytest.raises(FormatError):
        parse_tile_path(path)


def test_constructors_reject() -> None:
    for args in ((64, 0), (-1, 0), (0, -1), (0, 0, 0), (0, 0, 257)):
        with pytest.raises(FormatError):
            Tile(*args)
    with pytest.raises(FormatError):
        EntryBundle(0, 0)


tiles_st = st.builds(
    Tile, st.integers(0, MAX_TILE_LEVEL), st.integers(0, (1 << 64) - 1), st.integers(1, 256)
)
bundles_st = st.builds(EntryBundle, st.integers(0, (1 << 64) - 1), st.integers(1, 256))


@given(st.one_of(tiles_st, bundles_st))
def test_parse_format_round_trip(value: Tile | EntryBundle) -> None:
    assert parse_tile_path(value.path()) == value


def test_tiles_for_size_spec_examples() -> None:
    # tlog-tiles "Partial Tiles": size 70,000 and size 256.
    tiles = tiles_for_size(70_000)
    assert tiles[:273] == [Tile(0, i) for i in range(273)]
    assert tiles[273:] == [Tile(0, 273, 112), Tile(1, 0), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert tiles_for_size(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [Tile(0, 0, 1)]


@given(st.integers(0, 1 << 20))
def test_tiles_for_size_cover_each_level(tree_size: int) -> None:
    tiles = tiles_for_size(tree_size)
    for level in range(MAX_TILE_LEVEL + 1):
        at_level = [t for t in tiles if t.level == level]
        assert [t.index for t in at_level] == list(range(len(at_level)))
        assert sum(t.width for t in at_level) == tree_size >> (TILE_HEIGHT * level)
        assert all(t.width == TILE_WIDTH for t in at_level[:-1])


def test_tile_for_node_examples() -> None:
    assert tile_for_node(0, 1000) == (Tile(0, 3, 233), 232, 233)
    assert tile_for_node(9, 5) == (Tile(1, 0, 12), 10, 12)
    assert tile_for_node(7, 3) == (Tile(0, 1), 128, 256)
    assert tile_for_node(16, 1) == (Tile(2, 0, 2), 1, 2)


def test_tile_data_bytes() -> None:
    data = tile_data(Tile(0, 1, 3), get_node)
    assert data == get_node(0, 256) + get_node(0, 257) + get_node(0, 258)
    # tlog-tiles: each hash in a level-1 tile is the MTH of a full level-0 tile.
    level1 = tile_data(Tile(1, 0, 2), get_node)
    for i in range(2):
        full = tile_data(Tile(0, i), get_node)
        assert len(full) == 8192
        assert level1[32 * i : 32 * i + 32] == root_hash(
            [full[j : j + 32] for j in range(0, 8192, 32)]
        )


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 17).flatmap(
        lambda level: st.tuples(st.just(level), st.integers(0, (BIG >> level) - 1))
    ),
    st.booleans(),
)
def test_node_from_tiles_is_the_node(node: tuple[int, int], widest: bool) -> None:
    level, index = node

    def get_tile(tile: Tile) -> bytes:
        if widest:  # serve the widest version this tree has: tiles are prefixes of each other
            available = BIG >> (tile.level * TILE_HEIGHT)
            tile = Tile(tile.level, tile.index, min(TILE_WIDTH, available - tile.index * 256))
        return tile_data(tile, get_node)

    assert node_from_tiles(level, index, get_tile) == get_node(level, index)


def test_node_from_tiles_rejects_bad_tile_data() -> None:
    for data in (b"", bytes(31), bytes(32 * 2), bytes(32 * 257)):

        def get_tile(tile: Tile, data: bytes = data) -> bytes:
            return data

        with pytest.raises(FormatError, match=r"tile tile/0/000\.p/3"):
            node_from_tiles(0, 2, get_tile)
