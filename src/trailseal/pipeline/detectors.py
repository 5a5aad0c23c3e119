"""Detectors for PII and secrets in text: where each kind occurs in a string.

=================  =====================================================================  ========
kind               what matches                                                           class
=================  =====================================================================  ========
aws_access_key     ``AKIA``/``ASIA``/``ABIA``/``ACCA`` + 16 of ``[A-Z0-9]``                  secret
jwt                ``eyJ...`` header ``.`` ``eyJ...`` payload ``.`` signature (base64url)  secret
private_key        a PEM ``-----BEGIN ... PRIVATE KEY-----`` block (to its END line)      secret
card               13-19 digits (spaces/dashes allowed) passing the Luhn check            secret
email              ``local@domain.tld``                                                    PII
phone              ``+`` and 8-15 digits, or ``(NNN) NNN-NNNN`` / ``NNN-NNN-NNNN``        PII
ipv4               dotted quad, each part 0-255                                            PII
ipv6               colon groups that ``ipaddress`` accepts as IPv6                        PII
=================  =====================================================================  ========

:func:`find` returns non-overlapping :class:`Hit` spans, leftmost first. Regular expressions find
candidates; ``card`` (Luhn) and ``ipv6`` (parser) are confirmed before they count.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["KINDS", "PII", "SECRETS", "Hit", "find", "luhn_ok", "may_contain", "normalize"]

SECRETS = ("aws_access_key", "jwt", "private_key", "card")
"""Detector kinds that find secrets."""
PII = ("email", "phone", "ipv4", "ipv6")
"""Detector kinds that find personal data."""
KINDS = SECRETS + PII

_PATTERNS = {
    "private_key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|[\s\S]*)",
    "jwt": r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
    "aws_access_key": r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])",
    "email": r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
    "card": r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])",
    "phone": r"(?<![\w+])(?:\+[1-9](?:[ .()-]{0,2}[0-9]){7,14}|\(?[0-9]{3}\)?[ .-][0-9]{3}[ .-][0-9]{4})(?![\w])",
    "ipv4": r"(?<![0-9.])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?![0-9]|\.[0-9])",
    "ipv6": r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|(?:[0-9]{1,3}\.){3}[0-9]{1,3})(?![0-9A-Fa-f:])",
}


@dataclass(frozen=True, slots=True)
class Hit:
    """A detected span ``[start, end)`` of ``kind`` in the text."""

    kind: str
    start: int
    end: int
    text: str


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check used by payment card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _confirmed(kind: str, text: str) -> bool:
    if kind == "card":
        digits = text.replace(" ", "").replace("-", "")
        return 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1
    if kind == "ipv6":
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return False
        return text.count(":") >= 2
    if kind == "phone":  # a phone match is ASCII: its digits are exactly 0-9
        return 8 <= _digits(text) <= 15
    return True


def _digits(text: str) -> int:
    """How many ASCII digits ``text`` holds (UTF-8 encodes every other character without a byte
    in 0x30-0x39, so counting bytes is counting characters): two C passes instead of ten."""
    data = text.encode("utf-8", "surrogatepass")
    return len(data) - len(data.translate(None, b"0123456789"))


# Every byte of ``[0-9 -]`` to b"0", every other byte to b"x": a card number (13-19 digits, single
# spaces or dashes between them) needs 13 of b"0" in a row there. One C pass over the text.
_RUNS = bytes(48 if chr(byte) in "0123456789 -" else 120 for byte in range(256))
_RUN13 = b"0" * 13


def _card_run(text: str) -> bool:
    """``_CARD_RUN.search(text) is not None``, with the regex run only inside the candidate runs."""
    data = text.encode("utf-8", "surrogatepass")
    runs = data.translate(_RUNS)
    start = runs.find(_RUN13)
    if start < 0:
        return False
    if not data.isascii():  # byte offsets are not character offsets: search the whole text
        return _CARD_RUN.search(text) is not None
    while start >= 0:
        stop = runs.find(b"x", start + 13)
        stop = len(runs) if stop < 0 else stop
        if _CARD_RUN.search(text, start, stop) is not None:
            return True
        start = runs.find(_RUN13, stop)
    return False


_AWS_PREFIX = re.compile("AKIA|ASIA|ABIA|ACCA")  # one regex pass beats four substring tests


# Cheap substring tests that every match of a kind needs; the regex runs only when they pass.
_PREFILTERS: dict[str, Callable[[str], bool]] = {
    "private_key": lambda t: "PRIVATE KEY-----" in t,
    "jwt": lambda t: "eyJ" in t,
    "aws_access_key": lambda t: _AWS_PREFIX.search(t) is not None,  # AKIA, ASIA, ABIA or ACCA
    "email": lambda t: "@" in t,
    "card": lambda t: _digits(t) >= 13,
    "phone": lambda t: _digits(t) >= 8 and ("+" in t or "-" in t or "." in t or " " in t),
    "ipv4": lambda t: t.count(".") >= 3,
    "ipv6": lambda t: t.count(":") >= 2,
}
_REGEXES = {kind: re.compile(pattern) for kind, pattern in _PATTERNS.items()}
_CARD_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){12}")
_NOT_DIGITS = re.compile(r"[^0-9]")  # in ASCII text, exactly what str.isdigit() refuses
_WHOLE: dict[str, Callable[[str], bool]] = {"card": _card_run}
_ORDER = {kind: rank for rank, kind in enumerate(_PATTERNS)}  # secrets first: a JWT is no phone


def _sort_key(hit: Hit) -> tuple[int, int, int]:
    return hit.start, _ORDER[hit.kind], -hit.end


def may_contain(text: str, kinds: Iterable[str]) -> bool:
    """False when no string inside ``text`` (e.g. a whole event's JSON) can hold a hit of ``kinds``.

    Every prefilter is a necessary condition that also holds for any substring's superset, so one
    check over the serialized event rules out every one of its strings at once.
    """
    for kind in kinds:  # noqa: SIM110 -- a loop, not any(<generator>): this runs for every event
        if _WHOLE.get(kind, _PREFILTERS[kind])(text):
            return True
    return False


def find(text: str, kinds: Iterable[str]) -> list[Hit]:
    """Every confirmed hit of ``kinds`` in ``text``, leftmost first, non-overlapping.

    Where two kinds overlap, the earlier start wins, then the kind listed first above.
    """
    if not text:
        return []
    found: list[Hit] = []
    digits = -1  # counted once, for card and phone
    for kind in kinds:
        if kind == "card" or kind == "phone":
            if digits < 0:
                digits = _digits(text)
            if kind == "card":
                if digits < 13 or not _card_run(text):  # a 13-digit run, checked inside the runs
                    continue
            elif digits < 8 or not ("+" in text or "-" in text or "." in text or " " in text):
                continue
        elif not _PREFILTERS[kind](text):
            continue
        for match in _REGEXES[kind].finditer(text):
            if _confirmed(kind, match.group()):
                found.append(Hit(kind, match.start(), match.end(), match.group()))
    if len(found) < 2:
        return found
    found.sort(key=_sort_key)
    hits: list[Hit] = []
    for hit in found:
        if not hits or hit.start >= hits[-1].end:
            hits.append(hit)
    return hits


def normalize(kind: str, text: str) -> str:
    """The form a hit is tokenized in, so equal values give equal tokens (email case, phone digits)."""
    if kind == "email":
        return text.lower()
    if kind in ("phone", "card"):
        digits = _NOT_DIGITS.sub("", text) if text.isascii() else "".join(c for c in text if c.isdigit())
        return ("+" if text.startswith("+") else "") + digits
    return text
