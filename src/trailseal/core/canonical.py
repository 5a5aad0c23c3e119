"""Canonical JSON (RFC 8785, JCS) and strict JSON parsing.

::

    canonicalize(value) -> bytes      RFC 8785 §3.2 canonical bytes of a JSON value
    format_number(number) -> str      RFC 8785 §3.2.2.3 (ECMA-262 Number::toString)
    loads(data) -> value              strict RFC 8259 parse; FormatError with position
    dumps(value) -> bytes             compact, NOT canonical (key order kept)
    max_depth(value) -> int           nesting depth: scalar 0, [] 1, [[]] 2
    check_depth(value, limit)         FormatError when max_depth(value) > limit
    survey(value, limit) -> int       one walk: PLAIN, FLOATS, OTHER or TOO_DEEP (see there)
    canonicalize_plain(value)         canonicalize() for a value survey() found PLAIN

Canonical form (RFC 8785 §3.2): no whitespace; literals ``null``, ``true``, ``false``; strings in
UTF-8 with only ``"``, ``\\`` and U+0000..U+001F escaped, those as ``\\b \\t \\n \\f \\r`` or
``\\u00xx`` in lowercase hex (§3.2.2.2); numbers as ECMAScript ``Number::toString`` (§3.2.2.3);
members sorted by the UTF-16 code units of their names (§3.2.3). RFC 8785 §3.1 requires I-JSON
(RFC 7493): lone surrogates, NaN and the infinities raise ``CanonicalizationError``, and so does an
integer outside ``±(2**53 - 1)`` (RFC 7493 §2.2) unless its digits are exactly the ECMAScript form
of the double it denotes (``2**53`` and ``10**20`` pass, ``2**53 + 1`` and ``2**60`` do not). JCS
reads every number as a double and an integer must not change on the way; the exception keeps
canonical bytes a fixed point (``1e20`` prints as ``100000000000000000000``, which parses as an
int). Python types: ``dict`` with ``str`` keys, ``list``, ``tuple``, ``str``, ``int``, ``float``,
``bool``, ``None`` and their subclasses; anything else raises.

Two encoders, one output. The fast path hands the value to ``orjson`` with sorted keys when a
pre-scan shows every node is exactly a ``dict``, ``list``, ``str``, ``int``, ``bool`` or ``None``:
for those orjson already writes JCS bytes (its escapes are the §3.2.2.2 set, integers are plain
decimals, its code-point key order is UTF-16 order unless a key holds a character above U+FFFF,
ruled out by checking the output for 4-byte UTF-8 sequences). Floats, which orjson prints its own
way, are pre-formatted and passed as ``orjson.Fragment``. Anything else goes to a pure-Python
encoder of §3.2 that still hands plain sub-trees to the fast path. Tests check every path against
the ``rfc8785`` package and Node.js.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import orjson

from trailseal.core.errors import CanonicalizationError, FormatError

__all__ = ["FLOATS", "OTHER", "PLAIN", "TOO_DEEP", "canonicalize", "canonicalize_plain", "check_depth", "dumps"]
__all__ += ["format_number", "loads", "max_depth", "survey"]

# RFC 7493 §2.2: I-JSON integers are exactly representable as IEEE 754 doubles.
MAX_SAFE_INTEGER = 2**53 - 1

_PREFIX = "canonical json: "
_FAST_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_SCALARS = frozenset((str, int, bool, type(None)))
_STR_ONLY = frozenset((str,))

# The stdlib's C string encoder (ensure_ascii=False flavour) escapes exactly '"', '\\' and
# U+0000..U+001F, using \b \t \n \f \r and lowercase \u00xx: the RFC 8785 §3.2.2.2 set.
_quote: Callable[[str], str] = json.encoder.encode_basestring


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of the JSON value ``value``.

    Raises ``CanonicalizationError`` (with an RFC 6901 pointer to the bad node) for values
    that have no I-JSON form: NaN, infinities, integers a double cannot carry, non-``str``
    keys, strings with lone surrogates, unsupported types, or nesting too deep to recurse.
    """
    fast = _fast(value)
    return fast if fast is not None else _canonicalize_python(value)


def canonicalize_plain(value: Any) -> bytes:
    """``canonicalize(value)`` for a value known to hold only exact ``dict``, ``list``, ``str``,
    ``int``, ``bool`` and ``None`` (``survey`` says ``PLAIN``): the same bytes and errors, without
    the type pre-scan. Given anything else (a float, a subclass) the bytes can be wrong."""
    try:
        out = orjson.dumps(value, option=_FAST_OPTIONS)
    except TypeError:
        return _canonicalize_python(value)
    if out.isascii() or not (
        b"\xf0" in out or b"\xf1" in out or b"\xf2" in out or b"\xf3" in out or b"\xf4" in out
    ):
        return out
    return _canonicalize_python(value)


def _fast(value: Any) -> bytes | None:
    """orjson's sorted output when it is provably the canonical form, else ``None``."""
    kind = type(value)
    if kind is dict or kind is list:
        try:
            if not _is_plain(value):
                value = _with_float_fragments(value)
        except (_NotFast, CanonicalizationError, RecursionError):  # NaN/infinity: reported below
            return None
    elif kind not in _SCALARS:
        return None
    try:
        out = orjson.dumps(value, option=_FAST_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: non-str key, unsafe integer, surrogate, depth
        return None
    # A character above U+FFFF starts with byte F0..F4 in UTF-8 (RFC 3629 §4); only then can
    # orjson's code-point key order differ from the UTF-16 order of RFC 8785 §3.2.3.
    if out.isascii() or not (
        b"\xf0" in out or b"\xf1" in out or b"\xf2" in out or b"\xf3" in out or b"\xf4" in out
    ):
        return out
    return None


def _is_plain(container: dict[Any, Any] | list[Any]) -> bool:
    """True when every value below ``container`` is exactly dict/list/str/int/bool/None."""
    scalars = _SCALARS
    for item in container.values() if type(container) is dict else container:
        kind = type(item)
        if kind is dict or kind is list:
            if not _is_plain(item):
                return False
        elif kind not in scalars:
            return False
    return True


class _NotFast(Exception):
    """Internal: the value needs the pure-Python encoder."""


def _with_float_fragments(container: dict[Any, Any] | list[Any]) -> Any:
    """A copy of ``container`` with every float pre-formatted (§3.2.2.3) as an orjson Fragment.

    orjson prints floats in its own notation (``1e-7``, ``5.0``); a Fragment is copied verbatim.
    Raises ``_NotFast`` for anything but exact dict/list/str/int/bool/None/float.
    """
    scalars = _SCALARS
    if type(container) is dict:
        copy: dict[Any, Any] = {}
        for name, item in container.items():
            kind = type(item)
            if kind in scalars:
                copy[name] = item
            elif kind is float:
                copy[name] = orjson.Fragment(format_number(item))
            elif kind is dict or kind is list:
                copy[name] = _with_float_fragments(item)
            else:
                raise _NotFast
        return copy
    items: list[Any] = []
    for item in container:
        kind = type(item)
        if kind in scalars:
            items.append(item)
        elif kind is float:
            items.append(orjson.Fragment(format_number(item)))
        elif kind is dict or kind is list:
            items.append(_with_float_fragments(item))
        else:
            raise _NotFast
    return items


class _Located(CanonicalizationError):
    """Internal: a CanonicalizationError that collects its JSON pointer while unwinding."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem, self.path = problem, list[str]()


def _canonicalize_python(value: Any) -> bytes:
    """The pure-Python RFC 8785 §3.2 encoder (the fallback and the readable definition)."""
    parts: list[str] = []
    try:
        _encode(value, parts, nested=False)
    except _Located as exc:
        # RFC 6901 JSON Pointer; the path was collected innermost first.
        pointer = "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in reversed(exc.path))
        raise CanonicalizationError(f"{_PREFIX}{exc.problem} at '{pointer}'") from None
    except RecursionError:
        raise CanonicalizationError(f"{_PREFIX}value nested too deeply") from None
    text = "".join(parts)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:  # RFC 7493 §2.1: strings must be valid Unicode
        bad = ord(text[exc.start])
        raise CanonicalizationError(f"{_PREFIX}lone surrogate U+{bad:04X} in a string") from None


def _utf16_units(member: tuple[str, Any]) -> bytes:
    # RFC 8785 §3.2.3: sort on UTF-16 code units; big-endian bytes compare in the same order.
    return member[0].encode("utf-16-be", "surrogatepass")


def _sorted_members(value: dict[Any, Any]) -> list[tuple[str, Any]]:
    """The members of ``value`` in RFC 8785 §3.2.3 order; raises for a non-``str`` key."""
    if not set(map(type, value)) <= _STR_ONLY:
        for name in value:
            if not isinstance(name, str):
                raise _Located(f"object key {name!r} is a {type(name).__name__}, not a string")
    names = "".join(value)
    if names.isascii() or max(names) <= "\uffff":
        # Without characters above U+FFFF, code-point order is UTF-16 code-unit order; names
        # are unique, so comparing (name, value) tuples never reaches the values.
        return sorted(value.items())
    return sorted(value.items(), key=_utf16_units)


def _encode(value: Any, parts: list[str], nested: bool = True) -> None:
    """Append the canonical text of ``value`` to ``parts``.

    Nested containers first try the fast path, so a float deep in one branch does not push
    the whole document through Python.
    """
    kind = type(value)
    if kind is str:
        parts.append(_quote(value))
        return
    if nested and (kind is dict or kind is list):
        fast = _fast(value)
        if fast is not None:
            parts.append(fast.decode("utf-8"))
            return
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_quote(value))
    elif isinstance(value, (int, float)):
        try:
            parts.append(format_number(value))
        except CanonicalizationError as exc:
            raise _Located(str(exc).removeprefix(_PREFIX)) from None
    elif isinstance(value, dict):
        separator = "{"
        for name, item in _sorted_members(value):
            parts.append(separator)
            separator = ","
            parts.append(_quote(name) + ":")
            try:
                _encode(item, parts)
            except _Located as exc:
                exc.path.append(str(name))
                raise
        parts.append("}" if separator == "," else "{}")
    elif isinstance(value, (list, tuple)):
        separator = "["
        for index, item in enumerate(value):
            parts.append(separator)
            separator = ","
            try:
                _encode(item, parts)
            except _Located as exc:
                exc.path.append(str(index))
                raise
        parts.append("]" if separator == "," else "[]")
    else:
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise _Located(f"unsupported type {name}")


def format_number(number: int | float) -> str:
    """Format a JSON number as RFC 8785 §3.2.2.3 requires: ECMA-262 ``Number::toString``.

    ``float`` must be finite; ``int`` must lie within ``±(2**53 - 1)`` (RFC 7493 §2.2) or print
    exactly as the double it rounds to (see the module docstring). ``-0.0`` gives ``"0"``; ``1e21``
    gives ``"1e+21"``; ``1e-7`` gives ``"1e-7"``; ``5.0`` gives ``"5"``.
    """
    if isinstance(number, bool):
        raise CanonicalizationError(f"{_PREFIX}{number!r} is a bool, not a number")
    if isinstance(number, int):
        digits = int.__repr__(number)
        if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            return digits
        as_double = format_number(float(number)) if abs(number) < 2**1024 else "infinity"
        if as_double == digits:
            return digits
        shown = digits if len(digits) <= 40 else f"{digits[:24]}... ({len(digits)} digits)"
        raise CanonicalizationError(
            f"{_PREFIX}integer {shown} is outside ±(2**53 - 1) (RFC 7493 §2.2) and a double"
            f" cannot hold it: it would read back as {as_double[:40]}"
        )
    if not math.isfinite(number):
        raise CanonicalizationError(f"{_PREFIX}{float(number)!r} is not allowed in I-JSON (RFC 8785 §3.2.2.3)")
    if number == 0:
        return "0"  # ECMA-262 Number::toString step 2: +0 and -0 both give "0"
    # repr() gives the shortest digit string that round-trips, choosing the closest such string:
    # exactly the n, k, s of ECMA-262 Number::toString (incl. its note on the closest candidate).
    text = float.__repr__(float(number))
    if "e" not in text:
        # repr uses positional notation for 1e-4 <= |x| < 1e16, which ECMAScript also does
        # (it switches at 1e-6 and 1e21); only the ".0" of integral values differs.
        return text[:-2] if text.endswith(".0") else text
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exponent = text.partition("e")
    digits = mantissa.replace(".", "")  # repr's mantissa is d[.ddd]: no leading/trailing zeros
    k = len(digits)
    n = int(exponent) + 1  # value = 0.digits * 10**n
    if k <= n <= 21:  # ECMA-262 Number::toString step 6: integer with trailing zeros
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:  # step 7: decimal point inside the digits
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:  # step 8: 0.000ddd
        return sign + "0." + "0" * -n + digits
    e = n - 1  # steps 9 and 10: exponential, explicit sign on the exponent
    exp = ("e+" if e >= 0 else "e-") + str(abs(e))
    if k == 1:
        return sign + digits + exp
    return sign + digits[0] + "." + digits[1:] + exp


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Parse one JSON text strictly (RFC 8259 + RFC 7493 §2.3: no duplicate member names).

    Raises ``FormatError`` with line, column and offset on invalid JSON, invalid UTF-8, a BOM,
    NaN/Infinity, numbers that overflow a double, lone surrogate escapes, nesting deeper than
    1024, or a duplicate key in any object. Integers beyond 64 bits parse as floats.

    Duplicate keys cost almost nothing to detect: colons outside strings are exactly the member
    count, so the parsed value re-encoded has as many colons as the input unless a duplicate was
    collapsed (the counts are exact when the input has no ``\\u`` escapes; with escapes a mismatch
    is re-checked by a slower exact parse, so there are no false negatives nor false positives).
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FormatError(
            f"json: {exc.msg} at line {exc.lineno} column {exc.colno} (offset {exc.pos})"
        ) from None
    if type(value) is dict or type(value) is list:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        colons = raw.count(b":")
        if b"\\u" in raw:
            colons += raw.count(b"\\u003a") + raw.count(b"\\u003A")
        try:
            members = orjson.dumps(value).count(b":")
        except TypeError:  # deeper than orjson.dumps goes (orjson.loads allows 1024 levels)
            members = _member_count(value)
        if colons != members:
            _find_duplicate(raw)
    return value


def _member_count(value: Any) -> int:
    """Total number of object members in ``value``, walked iteratively."""
    count, stack = 0, [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            count += len(node)
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
    return count


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        names = [name for name, _ in pairs]
        duplicate = next(name for index, name in enumerate(names) if name in names[:index])
        raise FormatError(f"json: duplicate key {duplicate!r} in an object (RFC 7493 §2.3)")
    return result


def _find_duplicate(raw: bytes) -> None:
    """Exact (slow) duplicate-key check; only run when the cheap count disagrees."""
    try:
        json.loads(raw, object_pairs_hook=_reject_duplicates)
    except RecursionError:
        raise FormatError("json: nesting too deep to check for duplicate keys") from None


def dumps(value: Any) -> bytes:
    """Serialize ``value`` as compact JSON with orjson; keys keep their order (NOT canonical)."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise FormatError(f"json: cannot serialize: {exc}") from None


def max_depth(value: Any) -> int:
    """Return the nesting depth of ``value``: 0 for a scalar, 1 for ``[]`` or ``{}``, and so on."""
    return _depth(value, None)


def check_depth(value: Any, limit: int) -> None:
    """Raise ``FormatError`` if ``value`` nests containers more than ``limit`` deep.

    Stops at the first container past the limit, so a hostile value costs at most its first
    ``limit + 1`` levels per branch.
    """
    if _depth(value, limit) > limit:
        raise FormatError(f"json: nesting depth exceeds the limit of {limit}")


def _depth(value: Any, limit: int | None) -> int:
    """Depth of ``value``, walked iteratively (no recursion limit); stops once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, (list, tuple)):
            continue
        deepest = max(deepest, depth + 1)
        if limit is not None and deepest > limit:
            break
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list, tuple)))
    return deepest


PLAIN, FLOATS, OTHER, TOO_DEEP = range(4)
"""What :func:`survey` finds, in increasing precedence."""


def survey(value: Any, limit: int, depth: int = 1) -> int:
    """Classify a JSON value in one walk, for a caller that would call ``check_depth`` and
    ``canonicalize`` on it (``depth``: the nesting level of ``value`` itself, 1 at the top).

    ``TOO_DEEP``: a container sits deeper than ``limit`` (``check_depth`` would raise); ``OTHER``: a
    node is not exactly a ``dict``, ``list``, ``str``, ``int``, ``bool``, ``None`` or ``float`` (ask
    ``check_depth`` and ``canonicalize`` themselves); ``FLOATS``: it holds floats (``canonicalize``);
    ``PLAIN``: nothing else, so ``canonicalize_plain`` applies. The walk returns at the first
    ``OTHER`` or ``TOO_DEEP`` node, and recurses at most ``limit - depth + 1`` levels.
    """
    kind = type(value)
    if kind is dict:
        return _survey(value.values(), depth, limit)
    if kind is list:
        return _survey(value, depth, limit)
    if kind in _SCALARS:
        return PLAIN
    return FLOATS if kind is float else OTHER


def _survey(items: Any, depth: int, limit: int) -> int:
    if depth > limit:
        return TOO_DEEP
    found = PLAIN
    scalars = _SCALARS
    for item in items:
        kind = type(item)
        if kind in scalars:
            continue
        if kind is dict:
            inner = _survey(item.values(), depth + 1, limit)
        elif kind is list:
            inner = _survey(item, depth + 1, limit)
        elif kind is float:
            found = FLOATS
            continue
        else:
            return OTHER
        if inner > FLOATS:
            return inner
        found |= inner
    return found
