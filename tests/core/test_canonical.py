"""RFC 8785 canonical JSON: published vectors, ECMAScript numbers, oracles, strict parsing."""

from __future__ import annotations

import enum
import math
import random
import shutil
import struct
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import make_event
from tests.strategies import json_values, object_keys
from trailseal.core.canonical import (
    _canonicalize_python,
    _fast,
    canonicalize,
    check_depth,
    dumps,
    format_number,
    loads,
    max_depth,
)
from trailseal.core.errors import CanonicalizationError, FormatError

JCS_NAMES = ["arrays", "french", "structures", "unicode", "values", "weird"]
ENCODERS = [canonicalize, _canonicalize_python]


def _float(ieee_hex: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(ieee_hex.zfill(16)))[0]
    return value


# --- published vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("encode", ENCODERS, ids=["canonicalize", "python"])
@pytest.mark.parametrize("name", JCS_NAMES)
def test_cyberphone_vectors(testdata: Path, name: str, encode: Any) -> None:
    base = testdata / "jcs-cyberphone" / "testdata"
    expected = (base / "output" / f"{name}.json").read_bytes()
    assert bytes.fromhex((base / "outhex" / f"{name}.txt").read_text()) == expected
    assert encode(loads((base / "input" / f"{name}.json").read_bytes())) == expected


def test_cyberphone_vectors_all_present(testdata: Path) -> None:
    found = sorted(p.stem for p in (testdata / "jcs-cyberphone" / "testdata" / "input").iterdir())
    assert found == JCS_NAMES


def _es6_rows(testdata: Path) -> list[tuple[str, str]]:
    lines = (testdata / "jcs-cyberphone" / "es6-number-samples.csv").read_text().splitlines()
    assert lines[0] == "hex-ieee,expected"
    return [(row.split(",")[0], row.split(",")[1]) for row in lines[1:] if row]


def test_es6_number_samples(testdata: Path) -> None:
    # The CSV holds the 7 sample rows of the cyberphone README (the 100M-line file is not
    # vendored); test_numbers_match_node checks >100k more against ECMAScript itself.
    rows = _es6_rows(testdata)
    assert len(rows) == 7
    for ieee_hex, expected in rows:
        number = _float(ieee_hex)
        assert format_number(number) == expected, ieee_hex
        assert canonicalize(number) == expected.encode()
        assert canonicalize([number]) == f"[{expected}]".encode()


# --- numbers: ECMAScript Number::toString over >100k doubles ------------------------------------


def _number_corpus() -> list[float]:
    """130k doubles: random bit patterns, integers, decimals, subnormals and format boundaries."""
    rng = random.Random(8785)
    values: list[float] = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]
    while len(values) < 60_000:
        number = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]
        if math.isfinite(number):
            values.append(number)
    values += [float(rng.randrange(-(2**60), 2**60)) for _ in range(15_000)]
    values += [rng.randrange(-(10**9), 10**9) / 10 ** rng.randrange(0, 12) for _ in range(25_000)]
    values += [_float(f"{rng.getrandbits(52):x}") for _ in range(5_000)]  # subnormals
    for exponent in range(-30, 30):  # around 1e-7, 1e-6, 1e21, where the notation switches
        for mantissa in (1, 1.5, 9.999999999999999, 2.5):
            base = mantissa * 10.0**exponent
            values += [base, math.nextafter(base, 0), math.nextafter(base, math.inf), -base]
    values += [2.0**e for e in range(-1074, 1024)] + [-(2.0**e) for e in range(-1074, 1024)]
    while len(values) < 130_000:
        values.append(rng.uniform(-1e6, 1e6))
    return values


@pytest.fixture(scope="module")
def number_corpus() -> list[float]:
    return _number_corpus()


def test_numbers_round_trip_and_shortest(number_corpus: list[float]) -> None:
    assert len(number_corpus) >= 100_000
    for number in number_corpus:
        text = format_number(number)
        assert float(text) == number or (number == 0 and text == "0"), number
        if number.is_integer() and abs(number) < 2**53:
            assert text == str(int(number))  # a safe integral value prints as that integer


def test_numbers_match_rfc8785_package(number_corpus: list[float]) -> None:
    for number in number_corpus:
        assert format_number(number).encode() == rfc8785.dumps(number), repr(number)


def test_numbers_match_node(number_corpus: list[float]) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed: ECMAScript oracle unavailable")
    script = (
        "const lines=require('fs').readFileSync(0,'utf8').trim().split('\\n');"
        "const b=Buffer.alloc(8);"
        "process.stdout.write(lines.map(h=>{b.write(h,'hex');return String(b.readDoubleBE(0))})"
        ".join('\\n'))"
    )
    hexes = "\n".join(struct.pack(">d", n).hex() for n in number_corpus)
    result = subprocess.run([node, "-e", script], input=hexes, capture_output=True, text=True, check=True)
    expected = result.stdout.split("\n")
    assert len(expected) == len(number_corpus)
    for number, es6 in zip(number_corpus, expected, strict=True):
        assert format_number(number) == ("0" if es6 == "0" else es6), repr(number)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0.0, "0"), (-0.0, "0"), (1.0, "1"), (-1.5, "-1.5"), (56.0, "56"), (1e21, "1e+21"),
        (1e20, "100000000000000000000"), (123456789012345680000.0, "123456789012345680000"),
        (1e-6, "0.000001"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7"), (0.000001234, "0.000001234"),
        (333333333.33333329, "333333333.3333333"), (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"), (2**53 - 1, "9007199254740991"),
        (-(2**53 - 1), "-9007199254740991"), (9007199254740994.0, "9007199254740994"),
        (2.0**60, "1152921504606847000"),
    ],
)  # fmt: skip
def test_format_number_cases(number: float, text: str) -> None:
    assert format_number(number) == text


@pytest.mark.parametrize(
    "number", [math.nan, math.inf, -math.inf, 2**53 + 1, -(2**53) - 1, 2**60, 10**21, 10**400, True]
)
def test_format_number_rejects(number: float) -> None:
    with pytest.raises(CanonicalizationError):
        format_number(number)


@pytest.mark.parametrize(
    "number", [2**53, -(2**53), 1152921504606847000, 18446744073709552000, 10**20]
)
def test_large_integers_that_a_double_holds_exactly_as_written(number: int) -> None:
    # ES6 prints the double nearest to these with exactly these digits: nothing is lost, and the
    # canonical form of an integral float such as 1e20 (parsed back as an int) stays a fixed point.
    assert format_number(number) == str(number) == format_number(float(number))
    assert canonicalize([number]) == canonicalize([float(number)])


# --- strings and keys -----------------------------------------------------------------------------


def _code_point_blocks() -> Iterator[str]:
    for start in range(0, 0x110000, 0x1000):
        yield "".join(chr(c) for c in range(start, start + 0x1000) if not 0xD800 <= c <= 0xDFFF)


@pytest.mark.parametrize("encode", ENCODERS, ids=["canonicalize", "python"])
def test_every_code_point_escapes_like_rfc8785(encode: Any) -> None:
    # RFC 8785 §3.2.2.2: only U+0000..U+001F, '"' and '\' are escaped, the rest is raw UTF-8.
    for block in _code_point_blocks():
        assert encode(block) == rfc8785.dumps(block)
        assert encode({block: block}) == rfc8785.dumps({block: block})


def test_escape_forms() -> None:
    assert canonicalize("\x00\x08\t\n\x0b\x0c\r\x1f\x7f\"\\/") == (
        b'"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\x7f\\"\\\\/"'
    )


@pytest.mark.parametrize("encode", ENCODERS, ids=["canonicalize", "python"])
def test_keys_sort_by_utf16_code_units(encode: Any) -> None:
    # RFC 8785 §3.2.3: U+1F602 is D83D DE02 in UTF-16, so it sorts before U+E000 and U+FB33
    # although its code point is larger.
    value = {"\ufb33": 1, "\U0001f602": 2, "\ue000": 3, "a": 4, "\x7f": 5, "\U00010000": 6, "": 7}
    expected = ["", "a", "\x7f", "\U00010000", "\U0001f602", "\ue000", "\ufb33"]
    out = encode(value)
    assert list(loads(out)) == expected
    assert out == rfc8785.dumps(value)


@given(st.dictionaries(object_keys(), st.integers(0, 9), max_size=12))
def test_key_order_matches_utf16_sort(value: dict[str, int]) -> None:
    ordered = sorted(value, key=lambda name: name.encode("utf-16-be"))
    assert list(loads(canonicalize(value))) == ordered


# --- properties against the oracle ------------------------------------------------------------------


@given(json_values())
def test_matches_rfc8785_oracle(value: Any) -> None:
    expected = rfc8785.dumps(value)
    assert canonicalize(value) == expected
    assert _canonicalize_python(value) == expected


@given(json_values())
def test_fast_path_matches_oracle_whenever_taken(value: Any) -> None:
    fast = _fast(value)
    if fast is not None:
        assert fast == rfc8785.dumps(value)


def test_fast_path_is_taken_for_audit_events() -> None:
    event = make_event(actor={"id": "José Ñúñez", "ip": "2001:db8::1"})
    assert _fast(event) == rfc8785.dumps(event)
    with_floats = {**event, "metadata": {"duration_ms": 12.5, "ratio": 1e-7, "n": 3.0}}
    assert _fast(with_floats) == rfc8785.dumps(with_floats)
    # Characters above U+FFFF may reorder keys (RFC 8785 §3.2.3): left to the Python encoder.
    astral = {**event, "reason": "deploy \U0001f680"}
    assert _fast(astral) is None
    assert canonicalize(astral) == rfc8785.dumps(astral)


@given(json_values(), st.randoms(use_true_random=False))
def test_stable_under_key_reordering(value: Any, rng: random.Random) -> None:
    def shuffled(node: Any) -> Any:
        if isinstance(node, dict):
            items = list(node.items())
            rng.shuffle(items)
            return {name: shuffled(item) for name, item in items}
        if isinstance(node, list):
            return [shuffled(item) for item in node]
        return node

    assert canonicalize(shuffled(value)) == canonicalize(value)


@given(json_values())
def test_canonical_bytes_are_a_fixed_point(value: Any) -> None:
    once = canonicalize(value)
    assert canonicalize(loads(once)) == once


def test_python_types_accepted() -> None:
    class Colour(enum.IntEnum):
        RED = 1

    class Name(str):
        pass

    assert canonicalize((1, 2.5, [True, None])) == b"[1,2.5,[true,null]]"
    assert canonicalize({Name("b"): Colour.RED, "a": Name("x")}) == b'{"a":"x","b":1}'
    assert canonicalize(Colour.RED) == b"1"


def test_nesting_beyond_orjson_limit() -> None:
    value: Any = "leaf"
    for index in range(400):
        value = [value, index / 2] if index % 2 else {"k": value}
    assert canonicalize(value) == rfc8785.dumps(value)
    deep: Any = []
    for _ in range(20_000):
        deep = [deep]
    with pytest.raises(CanonicalizationError, match="nested too deeply"):
        canonicalize(deep)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": {"b/c": [1, 2**53 + 1]}}, r"integer 9007199254740993 .* at '/a/b~1c/1'"),
        ({"a": [-(2**53) - 1]}, r"read back as -9007199254740992 at '/a/0'"),
        ({"x": math.nan}, r"nan .* at '/x'"),
        ([1.0, math.inf], r"inf .* at '/1'"),
        (-math.inf, r"-inf"),
        ({1: "one"}, r"object key 1 is a int, not a string at ''"),
        ({"a": {(1, 2): 3}}, r"object key \(1, 2\) .* at '/a'"),
        ({"s": {1, 2}}, r"unsupported type set at '/s'"),
        ([b"bytes"], r"unsupported type bytes at '/0'"),
        ({"t": datetime(2024, 1, 1)}, r"unsupported type datetime.datetime at '/t'"),
        ({"k": "\ud800"}, r"lone surrogate U\+D800"),
        ({"\udfff": 1}, r"lone surrogate U\+DFFF"),
    ],
)
def test_rejects_values_without_ijson_form(value: Any, message: str) -> None:
    with pytest.raises(CanonicalizationError, match=message):
        canonicalize(value)


# --- strict parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":1,', r"line 1 column 8 \(offset 7\)"),
        (b'{\n "a": tru}', r"line 2"),
        (b'"\xff"', r"UTF-8"),
        (b"\xef\xbb\xbf[1]", r"BOM"),
        (b"[NaN]", r"offset 1"),
        (b"[1e400]", r"infinity"),
        (b'"\\ud800"', r"surrogate"),
        (b"[1] [2]", r"after document"),
        (b"", r"empty"),
        (b'{"a":1,"a":2}', r"duplicate key 'a'"),
        (b'{"x":{"a":{"b":1},"a":{"b":1}}}', r"duplicate key 'a'"),
        (b'[{"k":1},{"k":2,"k":2}]', r"duplicate key 'k'"),
        (b'{"a":1,"\\u0061":2}', r"duplicate key 'a'"),
        (b'{"\\u003a":1,":":2}', r"duplicate key ':'"),
    ],
)
def test_loads_rejects(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        loads(data)


def test_loads_deep_values() -> None:
    # orjson.loads accepts 1024 levels, orjson.dumps (used by the duplicate check) only ~254.
    assert max_depth(loads(b'[{"a":' * 500 + b"1" + b"}]" * 500)) == 1000
    with pytest.raises(FormatError, match="duplicate key 'a'"):
        loads(b"[" * 400 + b'{"a":1,"a":2}' + b"]" * 400)
    with pytest.raises(FormatError, match="depth"):
        loads(b"[" * 1100 + b"]" * 1100)


def test_loads_accepts() -> None:
    assert loads('{"a": [1, 2.5, "\\u00e9"]}') == {"a": [1, 2.5, "é"]}
    assert loads(bytearray(b"[true]")) == [True]
    assert loads(memoryview(b'{"k": null}')) == {"k": None}
    # Colons inside strings, escaped or not, are not members: no false duplicate.
    assert loads(b'{"a":"x:y","b":"\\u003a\\\\u003a","c":{"d":":"}}') == {
        "a": "x:y",
        "b": ":\\u003a",
        "c": {"d": ":"},
    }
    assert loads(b"[18446744073709551616]") == [1.8446744073709552e19]


@given(json_values())
def test_loads_dumps_round_trip(value: Any) -> None:
    assert loads(dumps(value)) == value


def test_dumps_keeps_order_and_rejects_unknown_types() -> None:
    assert dumps({"b": 1, "a": 2}) == b'{"b":1,"a":2}'
    with pytest.raises(FormatError):
        dumps({"x": {1, 2}})


# --- depth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("s", 0), ([], 1), ({}, 1), ({"a": [[]]}, 3), ([1, [2, [3]], {}], 3), ((1, (2,)), 2)],
)
def test_max_depth(value: Any, depth: int) -> None:
    assert max_depth(value) == depth
    check_depth(value, depth)
    if depth:
        with pytest.raises(FormatError, match=f"limit of {depth - 1}"):
            check_depth(value, depth - 1)


def test_depth_of_very_deep_values() -> None:
    deep: Any = []
    for _ in range(50_000):
        deep = [deep, {}]
    assert max_depth(deep) == 50_001
    with pytest.raises(FormatError):
        check_depth(deep, 64)
