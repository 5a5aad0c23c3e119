"""``trailseal query``, ``timeline``, ``export`` and ``verify-bundle``.

``query``, ``timeline`` and ``export`` ask a running server (``--url``, the default) or read a
data directory directly (``--data DIR``: no server needed, e.g. on a copy of a store).
``verify-bundle`` needs neither: it checks an evidence bundle with the verifier keys alone.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import click
import httpx
import orjson

from trailseal.cli.common import auth_headers, echo_json, url_option
from trailseal.cli.main import EXIT_UNAVAILABLE, EXIT_VERIFY_FAILED
from trailseal.core.errors import FormatError, NotFoundError

_TABLE = (("TIME (UTC)", 23), ("ACTION", 28), ("OUTCOME", 7), ("ACTOR", 26), ("RESOURCE", 30),
          ("SERVICE", 18), ("REQUEST", 0))


def _data_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
        help="Read this data directory directly instead of asking a server.")(func)


def _log_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--log", default=None,
                        help="Log (tenant) to read [default: the server's default log].")(func)


class _ServerError(click.ClickException):
    """The server failed or refused (5xx, 401, 403): exit 3."""

    exit_code = EXIT_UNAVAILABLE


def _raise_for(response: httpx.Response) -> httpx.Response:
    """4xx → the library error (exit 2) with the server's detail; 5xx → exit 3."""
    if response.status_code < 400:
        return response
    try:
        problem = response.json()
        detail = str(problem.get("detail") or problem)
    except ValueError:
        problem, detail = {}, response.text
    if response.status_code == 404:
        raise NotFoundError(detail)
    if response.status_code in (400, 422):
        position = problem.get("position") if isinstance(problem, dict) else None
        query = response.request.url.params.get("q")
        if isinstance(position, int) and query is not None:
            detail += f"\n  {query}\n  {' ' * position}^"
        raise FormatError(detail)
    raise _ServerError(f"server answered {response.status_code}: {detail}")


class _Local:
    """The library on a data directory (what the server would run)."""

    def __init__(self, data_dir: Path) -> None:
        from trailseal.query import search_for
        from trailseal.storage.sqlite import SQLiteStore

        db = data_dir / "trailseal.db"
        if not db.exists():
            raise click.UsageError(f"no store at {db}; is --data the server's data directory?")
        self.data_dir = data_dir
        self.store = SQLiteStore(db)
        self.search = search_for(self.store)

    def log(self, log: str | None) -> str:
        from trailseal.server.settings import Settings

        name = log or Settings.from_env().default_log
        if self.store.get_log(name) is None:
            raise NotFoundError(f"log {name!r} does not exist in {self.data_dir}")
        return name

    def close(self) -> None:
        self.search.close()
        self.store.close()


def _syntax(exc: Exception) -> Exception:
    """A local query syntax error with a caret under the culprit."""
    from trailseal.query.parser import QuerySyntaxError

    if isinstance(exc, QuerySyntaxError):
        return FormatError(f"{exc}\n  " + exc.caret().replace("\n", "\n  "))
    return exc


# -- query -----------------------------------------------------------------------------------
def _table(items: list[dict[str, Any]]) -> str:
    def row(values: list[str]) -> str:
        cells = [v if not w or len(v) <= w else v[: w - 1] + "…" for v, (_, w) in zip(values, _TABLE, strict=True)]
        return "  ".join(c.ljust(w) if w else c for c, (_, w) in zip(cells, _TABLE, strict=True)).rstrip()

    lines = [row([name for name, _ in _TABLE])]
    for item in items:
        event = item.get("event")
        if event is None:
            lines.append(row(["", f"(pruned leaf {item['leaf_index']})", "", "", "", "", ""]))
            continue
        resource = event.get("resource", {})
        lines.append(row([
            event.get("time", "")[:23].replace("T", " "), event.get("action", ""),
            event.get("outcome", ""), event.get("actor", {}).get("id", ""),
            f"{resource.get('type', '')}:{resource.get('id', '')}",
            event.get("source", {}).get("service", ""), event.get("request_id", ""),
        ]))
    return "\n".join(lines)


@click.command("query")
@click.argument("q", default="")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True,
              help="Events per page.")
@click.option("--order", type=click.Choice(["newest", "oldest"]), default="newest", show_default=True)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "ndjson", "csv"]),
              default="table", show_default=True,
              help="A table for people; json (page with next_cursor), ndjson or csv for scripts.")
@_log_option
@_data_option
@url_option
def query_cmd(q: str, limit: int, order: str, cursor: str | None, fmt: str, log: str | None,
              data_dir: Path | None, url: str) -> None:
    """Search the trail with the query language (docs/query.md) and print one page.

    With no query, the latest events. Fields are matched exactly (wildcards * and ?), bare
    words are full text; AND, OR, NOT and parentheses combine them.

    \b
    Examples:
      trailseal query 'actor.id:alice@example.com AND action:iam.role.*'
      trailseal query 'outcome:denied time:>-2h' --format json
      trailseal query '"break-glass" NOT source.environment:dev' --limit 200 --format csv
    """
    if data_dir is not None:
        from trailseal.query.search import check_order, search_page
        from trailseal.server.routes.query import search_item

        local = _Local(data_dir)
        try:
            name = local.log(log)
            try:
                page = search_page(local.search, name, q, limit=limit, cursor=cursor,
                                   order=check_order(order))
            except FormatError as exc:
                raise _syntax(exc) from None
            answer = orjson.loads(b'{"log":' + orjson.dumps(name) + b',"events":['
                                  + b",".join(search_item(e) for e in page.entries)
                                  + b'],"next_cursor":' + orjson.dumps(page.next_cursor) + b"}")
        finally:
            local.close()
    else:
        params: dict[str, Any] = {"q": q, "limit": limit, "order": order}
        if cursor:
            params["cursor"] = cursor
        if log:
            params["log"] = log
        answer = _raise_for(httpx.get(f"{url}/v1/events", params=params, headers=auth_headers(),
                                      timeout=120)).json()
    items: list[dict[str, Any]] = answer["events"]
    if fmt == "json":
        echo_json(answer)
        return
    if fmt == "ndjson":
        for item in items:
            if "event" in item:
                sys.stdout.write(orjson.dumps(item["event"]).decode() + "\n")
        return
    if fmt == "csv":
        from trailseal.query.export import CSV_COLUMNS, csv_row

        writer = csv.writer(sys.stdout, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for item in items:
            if "event" in item:
                writer.writerow(csv_row(item["event"], item["leaf_index"]))
        return
    click.echo(_table(items))
    if answer.get("next_cursor"):
        click.echo(f"more: --cursor {answer['next_cursor']}", err=True)


# -- timeline --------------------------------------------------------------------------------
@click.command("timeline")
@click.option("--request-id", help="The events of this request, and of the traces it is part of.")
@click.option("--trace-id", help="The events of this trace, and of its requests.")
@click.option("--around", metavar="TIME", help="A moment (RFC 3339, a date, now, -30m).")
@click.option("--window", metavar="DURATION", help="Span on each side of --around [default: 2h].")
@click.option("--before", metavar="DURATION", help="Span before --around (overrides --window).")
@click.option("--after", metavar="DURATION", help="Span after --around (overrides --window).")
@click.option("--q", "q", default="", help="Narrow the timeline with a query.")
@click.option("--limit", type=click.IntRange(1, 20000), default=2000, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="Terminal view, Markdown for a postmortem, or JSON.")
@_log_option
@_data_option
@url_option
def timeline_cmd(request_id: str | None, trace_id: str | None, around: str | None,
                 window: str | None, before: str | None, after: str | None, q: str, limit: int,
                 fmt: str, log: str | None, data_dir: Path | None, url: str) -> None:
    """Show an incident timeline: events in order, by service, correlated, with diffs and gaps.

    \b
    Examples:
      trailseal timeline --request-id req_7f3a9c
      trailseal timeline --around 2026-11-28T14:05:00Z --before 2h --after 15m \\
          --q 'source.environment:prod NOT action:auth.*' --format markdown > timeline.md
    """
    if data_dir is not None:
        from trailseal.query.render import render_markdown, render_text
        from trailseal.query.timeline import build_timeline

        local = _Local(data_dir)
        try:
            try:
                result = build_timeline(local.search, local.log(log), request_id=request_id,
                                        trace_id=trace_id, around=around, window=window,
                                        before=before, after=after, q=q, limit=limit)
            except FormatError as exc:
                raise _syntax(exc) from None
        finally:
            local.close()
        if fmt == "json":
            echo_json(result.to_json())
        else:
            sys.stdout.write(render_markdown(result) if fmt == "markdown" else render_text(result))
        return
    params = {k: v for k, v in (("request_id", request_id), ("trace_id", trace_id),
                                ("around", around), ("window", window), ("before", before),
                                ("after", after), ("q", q), ("log", log)) if v}
    params.update({"limit": str(limit), "format": fmt})
    response = _raise_for(httpx.get(f"{url}/v1/timeline", params=params, headers=auth_headers(),
                                    timeout=300))
    if fmt == "json":
        echo_json(response.json())
    else:
        sys.stdout.write(response.text)


# -- export ----------------------------------------------------------------------------------
def _local_chunks(local: _Local, log: str | None, q: str, fmt: str, order: str,
                  limit: int | None, bundle: bool) -> Iterator[bytes]:
    from trailseal.query.parser import parse
    from trailseal.query.search import check_order, iter_matches

    name = local.log(log)
    try:
        node = parse(q)
    except FormatError as exc:
        raise _syntax(exc) from None
    if bundle:
        from trailseal.query.bundle import DEFAULT_MAX_EVENTS, write_bundle
        from trailseal.server.runtime import utc_now
        from trailseal.storage.keyfiles import load_keyring, verifier_keys

        keyring = load_keyring(local.data_dir, name)
        if keyring is None:
            raise click.UsageError(f"no keys for log {name!r} in {local.data_dir / 'keys'}")
        yield from write_bundle(local.store, local.search, name, node, q=q,
                                verifier_keys=verifier_keys(keyring), created_at=utc_now(),
                                limit=limit or DEFAULT_MAX_EVENTS)
        return
    from trailseal.query.export import export_chunks

    yield from export_chunks(iter_matches(local.search, name, node, order=check_order(order),
                                          limit=limit), fmt)


@click.command("export")
@click.option("--q", "q", default="", help="Export the matches of this query [default: all].")
@click.option("--format", "fmt", type=click.Choice(["ndjson", "csv", "cef", "ocsf"]),
              default="ndjson", show_default=True)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to FILE instead of stdout.")
@click.option("--bundle", type=click.Path(path_type=Path, dir_okay=False),
              help="Write an evidence bundle (events + proofs + checkpoints + keys) to FILE.")
@click.option("--order", type=click.Choice(["oldest", "newest"]), default="oldest", show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="At most N events.")
@_log_option
@_data_option
@url_option
def export_cmd(q: str, fmt: str, out: Path | None, bundle: Path | None, order: str,
               limit: int | None, log: str | None, data_dir: Path | None, url: str) -> None:
    """Export matching events (streamed) as NDJSON, CSV, CEF or OCSF, or as an evidence bundle.

    \b
    Examples:
      trailseal export --q 'time:>-24h' --format ocsf --out last-day.ocsf.ndjson
      trailseal export --q 'request_id:req_7f3a9c' --bundle incident-2231.bundle.jsonl
      trailseal verify-bundle incident-2231.bundle.jsonl --key-file default.pub.json
    """
    target = bundle or out
    sink: BinaryIO = target.open("wb") if target is not None else sys.stdout.buffer
    written = 0
    try:
        if data_dir is not None:
            local = _Local(data_dir)
            try:
                for chunk in _local_chunks(local, log, q, fmt, order, limit, bundle is not None):
                    sink.write(chunk)
                    written += len(chunk)
            finally:
                local.close()
        else:
            params: dict[str, Any] = {"q": q}
            if log:
                params["log"] = log
            if limit:
                params["limit"] = limit
            if bundle is None:
                params.update({"format": fmt, "order": order})
            path = "/v1/bundles" if bundle is not None else "/v1/export"
            with httpx.stream("GET", f"{url}{path}", params=params, headers=auth_headers(),
                              timeout=httpx.Timeout(60, read=600)) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response)
                for chunk in response.iter_bytes():
                    sink.write(chunk)
                    written += len(chunk)
    finally:
        if target is not None:
            sink.close()
    if target is not None:
        click.echo(f"wrote {written} bytes to {target}", err=True)


# -- verify-bundle ---------------------------------------------------------------------------
@click.command("verify-bundle")
@click.argument("bundle_file", type=click.File("rb"))
@click.option("--key", "keys", multiple=True, help="Verifier key name+hash+base64 (repeatable).")
@click.option("--key-file", "key_files", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="File of verifier keys (one per line, or a keys/<log>.pub.json).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output for people (text) or scripts (json).")
def verify_bundle_cmd(bundle_file: BinaryIO, keys: tuple[str, ...], key_files: tuple[Path, ...],
                      fmt: str) -> None:
    """Check an evidence bundle offline: every event, proof and checkpoint, reported per event.

    Needs no server and no database. Without --key/--key-file the bundle's own verifier keys
    are used (that proves consistency, not origin): pin keys obtained independently.
    Exit 0 when every event verifies, 1 otherwise.

    \b
    Example:
      trailseal verify-bundle incident-2231.bundle.jsonl --key-file trailseal-data/keys/default.pub.json
    """
    from trailseal.cli.verify_cmds import load_verifiers
    from trailseal.verify.bundle import verify_bundle

    verifiers = load_verifiers(keys, key_files)
    report = verify_bundle(bundle_file.read(), verifiers or None)
    if fmt == "json":
        echo_json(report.to_json())
    else:
        good = sum(1 for e in report.events if e.ok)
        source = "pinned keys" if report.keys == "given" else "keys from the bundle (pin with --key)"
        head = (f"bundle of log {report.log} ({report.origin}), tree size {report.tree_size}: "
                f"{good}/{len(report.events)} events verified, {len(report.checkpoints)} "
                f"checkpoints, {source}")
        click.echo(("OK: " if report.ok else "FAILED: ") + head, err=not report.ok)
        for problem in report.problems:
            click.echo(f"  ! {problem}", err=True)
        for event in report.events:
            mark = "ok  " if event.ok else "FAIL"
            click.echo(f"  {mark} {event.name}: {event.detail}", err=not event.ok)
    if not report.ok:
        sys.exit(EXIT_VERIFY_FAILED)


COMMANDS = [query_cmd, timeline_cmd, export_cmd, verify_bundle_cmd]
