"""Export streams: NDJSON, CSV, CEF and OCSF, produced in chunks with constant memory.

``export_chunks(entries, fmt)`` turns an iterator of stored entries (normally
:func:`~trailseal.query.search.iter_matches`, which reads in keyset pages) into byte chunks of
a few hundred events each, so a server response or a file write never holds more than one
page of events. Pruned entries have no payload to export and are skipped (evidence bundles
keep them as proven-but-pruned leaves).

* ``ndjson`` — the stored envelope bytes exactly (RFC 8785: each line hashes to its leaf);
* ``csv`` — RFC 4180, one column per envelope field (:data:`CSV_COLUMNS`), ``before``/``after``/
  ``metadata`` as canonical JSON; :func:`csv_event` inverts a row back to the envelope. Cells
  starting with ``= + - @``, tab, CR or ``'`` get a leading ``'`` (spreadsheet formula
  injection); :func:`csv_event` removes it again;
* ``cef`` — :mod:`trailseal.query.cef`; ``ocsf`` — :mod:`trailseal.query.ocsf`, one JSON
  object per line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson

from trailseal.core.canonical import canonicalize
from trailseal.core.errors import FormatError
from trailseal.query.cef import cef_line
from trailseal.query.ocsf import ocsf_event
from trailseal.query.search import Matches, RawRow
from trailseal.query.text import load_body
from trailseal.storage.base import LeafEntry

MEDIA_TYPES = {
    "ndjson": "application/x-ndjson",
    "csv": "text/csv; charset=utf-8",
    "cef": "text/plain; charset=utf-8",
    "ocsf": "application/x-ndjson",
}
EXTENSIONS = {"ndjson": "ndjson", "csv": "csv", "cef": "cef", "ocsf": "ocsf.ndjson"}
FORMATS = tuple(MEDIA_TYPES)

CSV_COLUMNS: tuple[str, ...] = (
    "leaf_index", "id", "time", "received_at", "log", "action", "outcome",
    "actor.id", "actor.type", "actor.ip", "actor.user_agent",
    "resource.type", "resource.id", "resource.name",
    "request_id", "trace_id", "span_id",
    "source.service", "source.host", "source.region", "source.environment",
    "producer.id", "producer.seq", "schema.id", "schema.version",
    "reason", "before", "after", "metadata",
)
_JSON_COLUMNS = frozenset({"before", "after", "metadata"})
_INT_COLUMNS = frozenset({"producer.seq", "schema.version"})
_FORMULA_FIRST = frozenset("=+-@\t\r'")


def check_format(fmt: str) -> str:
    """``fmt`` if it is an export format; :class:`FormatError` otherwise."""
    if fmt not in MEDIA_TYPES:
        raise FormatError(f"format: want one of {', '.join(FORMATS)}, got {fmt!r}")
    return fmt


def _text(value: Any) -> str:
    """A string cell, defused against spreadsheet formulas (see the module docstring)."""
    if value is None:
        return ""
    text = value if type(value) is str else str(value)
    return "'" + text if text[:1] in _FORMULA_FIRST else text


def _json(value: Any) -> str:
    return "" if value is None else canonicalize(value).decode()


def _part(event: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = event.get(key)
    return value if type(value) is dict else {}


def csv_row(event: Mapping[str, Any], leaf_index: int) -> list[str]:
    """The CSV cells of one envelope, in :data:`CSV_COLUMNS` order."""
    actor, resource, source = _part(event, "actor"), _part(event, "resource"), _part(event, "source")
    producer, schema = _part(event, "producer"), _part(event, "schema")
    seq, version = producer.get("seq"), schema.get("version")
    return [
        str(leaf_index), _text(event.get("id")), _text(event.get("time")),
        _text(event.get("received_at")), _text(event.get("log")), _text(event.get("action")),
        _text(event.get("outcome")), _text(actor.get("id")), _text(actor.get("type")),
        _text(actor.get("ip")), _text(actor.get("user_agent")), _text(resource.get("type")),
        _text(resource.get("id")), _text(resource.get("name")), _text(event.get("request_id")),
        _text(event.get("trace_id")), _text(event.get("span_id")), _text(source.get("service")),
        _text(source.get("host")), _text(source.get("region")), _text(source.get("environment")),
        _text(producer.get("id")), "" if seq is None else str(seq), _text(schema.get("id")),
        "" if version is None else str(version), _text(event.get("reason")),
        _json(event.get("before")), _json(event.get("after")), _json(event.get("metadata")),
    ]


def csv_event(record: Mapping[str, str]) -> dict[str, Any]:
    """The envelope a CSV row (as a ``csv.DictReader`` record) was written from."""
    event: dict[str, Any] = {}
    for column in CSV_COLUMNS:
        cell = record.get(column, "")
        if column == "leaf_index" or not cell:
            continue
        value: Any
        if column in _JSON_COLUMNS:
            value = orjson.loads(cell)
        elif column in _INT_COLUMNS:
            value = int(cell)
        else:
            value = cell[1:] if cell.startswith("'") else cell
        *parents, leaf = column.split(".")
        target = event
        for key in parents:
            target = target.setdefault(key, {})
        target[leaf] = value
    return event


def _csv_lines(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def _leaf_pages(entries: Iterable[LeafEntry], size: int) -> Iterator[list[RawRow]]:
    """The matches as pages of ``(time, leaf_index, leaf_hash, body)``: straight from the
    backend when ``entries`` is a :class:`~trailseal.query.search.Matches` that can (four
    columns, no objects), else from the entries ``size`` at a time (read no further ahead)."""
    raw = entries.raw_pages() if isinstance(entries, Matches) else None
    if raw is not None:
        yield from raw
        return
    page: list[RawRow] = []
    for entry in entries:
        page.append((entry.time, entry.leaf_index, entry.leaf_hash, entry.body))
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def _ndjson(rows: list[RawRow]) -> bytes:
    bodies = [row[3] for row in rows if row[3][:1] == b"{"]
    return b"\n".join(bodies) + b"\n" if bodies else b""


def _csv(rows: list[RawRow]) -> bytes:
    cells = []
    for _time, leaf_index, _leaf_hash, body in rows:
        event = load_body(body)
        if event is not None:
            cells.append(csv_row(event, leaf_index))
    return _csv_lines(cells) if cells else b""


def _cef(rows: list[RawRow]) -> bytes:
    lines = []
    for _time, leaf_index, _leaf_hash, body in rows:
        event = load_body(body)
        if event is not None:
            lines.append(cef_line(event, leaf_index))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _ocsf(rows: list[RawRow]) -> bytes:
    dumps = orjson.dumps
    lines = []
    for _time, leaf_index, leaf_hash, body in rows:
        event = load_body(body)
        if event is not None:
            lines.append(dumps(ocsf_event(event, leaf_index, leaf_hash)))
    return b"\n".join(lines) + b"\n" if lines else b""


_WRITERS: dict[str, Callable[[list[RawRow]], bytes]] = {
    "ndjson": _ndjson, "csv": _csv, "cef": _cef, "ocsf": _ocsf,
}


def export_chunks(entries: Iterable[LeafEntry], fmt: str, *, chunk: int = 500) -> Iterator[bytes]:
    """The export of ``entries`` in ``fmt`` as byte chunks of up to ``chunk`` events.

    ``entries`` is normally :func:`~trailseal.query.search.iter_matches`' result, read here as
    raw pages (:meth:`~trailseal.query.search.Matches.raw_pages`) when the backend offers them:
    NDJSON is then the stored bytes joined, with nothing decoded.
    """
    write = _WRITERS[check_format(fmt)]
    if fmt == "csv":
        yield _csv_lines([list(CSV_COLUMNS)])
    for page in _leaf_pages(entries, chunk):
        for start in range(0, len(page), chunk):
            out = write(page[start : start + chunk])
            if out:
                yield out
