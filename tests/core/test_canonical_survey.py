"""``survey`` and ``canonicalize_plain`` against ``check_depth``/``max_depth`` and ``canonicalize``."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trailseal.core.canonical import (
    FLOATS,
    OTHER,
    PLAIN,
    TOO_DEEP,
    canonicalize,
    canonicalize_plain,
    max_depth,
    survey,
)
from trailseal.core.errors import CanonicalizationError

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=8),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["\U0001f4ce", "\ud800", b"x", (1,), 2**53]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
        | st.dictionaries(st.integers(0, 3), inner, max_size=2)
    ),
    max_leaves=20,
)


def _kinds(value: Any) -> set[type]:
    if isinstance(value, dict):
        return {dict}.union(*map(_kinds, value.values()))
    if isinstance(value, list):
        return {list}.union(*map(_kinds, value))
    return {type(value)}


def _canonical(function: Any, value: Any) -> Any:
    try:
        return function(value)
    except CanonicalizationError as exc:
        return ("error", str(exc))


@settings(max_examples=400, deadline=None)
@given(values, st.integers(0, 6))
def test_survey_agrees_with_max_depth_and_the_encoder(value: Any, limit: int) -> None:
    found = survey(value, limit)
    kinds = _kinds(value)
    unusual = kinds - {dict, list, str, int, bool, type(None), float}
    if found == TOO_DEEP:
        assert max_depth(value) > limit
    elif found == OTHER:
        assert unusual
    else:
        assert not unusual and max_depth(value) <= limit
        assert (found == FLOATS) == (float in kinds)
    if found == PLAIN:
        assert _canonical(canonicalize_plain, value) == _canonical(canonicalize, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, PLAIN),
        ({"a": [1, "x", None, True]}, PLAIN),
        ({"a": 1.5}, FLOATS),
        ([[[]]], PLAIN),
        ([[[[]]]], TOO_DEEP),
        ({"a": (1,)}, OTHER),
        ("x", PLAIN),
        (1.0, FLOATS),
        (b"x", OTHER),
    ],
)
def test_survey_examples(value: Any, expected: int) -> None:
    assert survey(value, 3) == expected


def test_canonicalize_plain_falls_back_for_what_orjson_cannot_write() -> None:
    for value in ({"k": 2**53}, {"k": "\U0001f4ce", "\U0001f4ce": 1, "\uffff": 2}, {1: "x"}):
        assert _canonical(canonicalize_plain, value) == _canonical(canonicalize, value)
