"""``trailseal verify`` and ``trailseal verify-receipt``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import click
import httpx
import orjson

from trailseal.cli.common import auth_headers, echo_json, format_option
from trailseal.cli.main import EXIT_VERIFY_FAILED
from trailseal.core.errors import VerificationError
from trailseal.core.keys import parse_public_json
from trailseal.core.note import Verifier, VerifierSet, parse_verifier_key
from trailseal.core.receipt import Receipt


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on a terminal; nothing otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=True, console=None) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def load_verifiers(keys: tuple[str, ...], key_files: tuple[Path, ...]) -> list[Verifier]:
    """Verifier keys from ``--key`` strings and ``--key-file`` files (vkey lines or .pub.json)."""
    found: list[Verifier] = [parse_verifier_key(k.strip()) for k in keys]
    for path in key_files:
        text = path.read_text()
        if text.lstrip().startswith("{"):
            found.extend(parse_public_json(text))
        else:
            found.extend(parse_verifier_key(line.strip()) for line in text.splitlines() if line.strip())
    return found


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Check the store in this data directory, offline.")
@click.option("--url", help="Check a running server over its public read API.")
@click.option("--store", "store_url",
              help="Check this store offline (postgresql://...); keys via --key/--key-file or --data.")
@click.option("--log", default="default", show_default=True, help="Log to check.")
@click.option("--key", "keys", multiple=True, help="Verifier key name+hash+base64 (repeatable).")
@click.option("--key-file", "key_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="File of verifier keys (one per line, or a keys/<log>.pub.json).")
@click.option("--trusted-checkpoint", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A checkpoint saved earlier outside the store: detects truncation, rollback, forks.")
@format_option
def verify(data_dir: Path | None, url: str | None, store_url: str | None, log: str,
           keys: tuple[str, ...], key_files: tuple[Path, ...], trusted_checkpoint: Path | None,
           fmt: str) -> None:
    """Recompute the log from its events and check every signature, root and proof.

    Exit 0 when everything holds; 1 on tampering, naming the first bad leaf index (or the
    smallest signed range that must contain it) and what is wrong; 2 on usage errors.

    Without --key/--key-file, verifier keys are read from DATA/keys (offline) or from the
    server (--url): pass keys you obtained independently for a check that trusts nothing stored.

    \b
    Examples:
      trailseal verify --data ./trailseal-data
      trailseal verify --url http://127.0.0.1:8700 --trusted-checkpoint saved.txt --format json
      trailseal verify --store postgresql://db/trailseal --data ./trailseal-data
    """
    if (data_dir is None and store_url is None) == (url is None):
        raise click.UsageError("give exactly one of --data DIR (or --store URL) or --url URL")
    verifiers = load_verifiers(keys, key_files)
    trusted = trusted_checkpoint.read_bytes() if trusted_checkpoint else None
    if data_dir is not None or store_url is not None:
        from trailseal.integrity.logcheck import check_log
        from trailseal.storage.base import Store
        from trailseal.storage.sqlite import SQLiteStore

        db = data_dir / "trailseal.db" if data_dir is not None else Path(".")
        if store_url is None and not db.exists():
            raise click.UsageError(f"no store at {db}; is --data the server's data directory?")
        if not verifiers:
            if data_dir is None:
                raise click.UsageError("no verifier keys: pass --key, --key-file or --data DIR")
            pub = data_dir / "keys" / f"{log}.pub.json"
            if not pub.exists():
                raise click.UsageError(f"no verifier keys: pass --key or --key-file ({pub} not found)")
            verifiers = list(parse_public_json(pub.read_text()))
        store: Store
        if store_url is not None:
            from trailseal.storage import open_store

            store = open_store(store_url, data_dir or Path("."))
            db = Path(store_url.split("?")[0].rsplit("@", 1)[-1])  # for messages, without secrets
        else:
            store = SQLiteStore(db)
        try:
            if store.get_log(log) is None:
                raise click.UsageError(f"log {log!r} not found in {db}")
            with progress_bar(f"verifying {log}", fmt == "text") as update:
                report = check_log(store, log, VerifierSet(verifiers), trusted=trusted, progress=update)
        finally:
            store.close()
        result = report.to_json()
        details = [f.to_json() for f in report.findings]
    else:
        from trailseal.verify.monitor import check_remote

        assert url is not None
        with httpx.Client(base_url=url, headers=auth_headers(), timeout=60) as client:
            if not verifiers:
                listing = client.get("/v1/logs")
                listing.raise_for_status()
                for item in listing.json()["logs"]:
                    if item["log"] == log:
                        verifiers = [parse_verifier_key(k) for k in item["verifier_keys"]]
                if not verifiers:
                    raise click.UsageError(f"log {log!r} not found at {url}")
            with progress_bar(f"verifying {log}", fmt == "text") as update:
                remote = check_remote(client, log, verifiers, trusted=trusted, progress=update)
        result = remote.to_json()
        details = result["findings"]
    if fmt == "json":
        echo_json(result)
    elif result["ok"]:
        click.echo(f"OK: log {log}: {result['leaves_checked']} leaves, tree size "
                   f"{result['tree_size']}, every checkpoint and root verified")
    else:
        where = result.get("first_bad_leaf")
        click.echo(f"FAILED: log {log}: first bad leaf index {where}", err=True)
        for item in details:
            click.echo(f"  - {item['detail']}", err=True)
    if not result["ok"]:
        sys.exit(EXIT_VERIFY_FAILED)


@click.command("verify-receipt")
@click.argument("receipt_file", type=click.File("rb"))
@click.option("--key", "keys", multiple=True, help="Verifier key name+hash+base64 (repeatable).")
@click.option("--key-file", "key_files", multiple=True, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--event", "event_file", type=click.File("rb"), help="The event (or the GET /v1/events/{id} answer) to check against the receipt.")
@format_option
def verify_receipt_cmd(receipt_file: BinaryIO, keys: tuple[str, ...], key_files: tuple[Path, ...],
                       event_file: BinaryIO | None, fmt: str) -> None:
    """Check a receipt offline with only the verifier key.

    RECEIPT_FILE holds one receipt (or a GET /v1/events/{id} answer, which carries both the
    event and its receipt); '-' reads stdin.

    \b
    Example:
      curl -s http://127.0.0.1:8700/v1/events/$ID > answer.json
      trailseal verify-receipt answer.json --key-file trailseal-data/keys/default.pub.json
    """
    from trailseal.verify.receipt import verify_receipt

    verifiers = load_verifiers(keys, key_files)
    if not verifiers:
        raise click.UsageError("pass the log's verifier key with --key or --key-file")
    data = orjson.loads(receipt_file.read())
    event = None
    if isinstance(data, dict) and "receipt" in data:
        event = data.get("event")
        data = data["receipt"]
    if event_file is not None:
        loaded = orjson.loads(event_file.read())
        event = loaded.get("event", loaded) if isinstance(loaded, dict) else loaded
    receipt = Receipt.from_json(data)
    try:
        checkpoint = verify_receipt(receipt, verifiers, event=event)
    except VerificationError as exc:
        if fmt == "json":
            echo_json({"ok": False, "id": receipt.id, "detail": str(exc)})
        else:
            click.echo(f"FAILED: {exc}", err=True)
        sys.exit(EXIT_VERIFY_FAILED)
    if fmt == "json":
        echo_json({"ok": True, "id": receipt.id, "leaf_index": receipt.leaf_index,
                   "tree_size": checkpoint.tree_size, "origin": checkpoint.origin,
                   "event_checked": event is not None})
    else:
        click.echo(f"OK: event {receipt.id} is leaf {receipt.leaf_index} of {checkpoint.origin} "
                   f"at tree size {checkpoint.tree_size}" + (" (event content checked)" if event else ""))


COMMANDS = [verify, verify_receipt_cmd]
