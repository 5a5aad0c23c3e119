"""``trailseal signing-key show|rotate``: the logs' checkpoint signing keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from trailseal.cli.common import echo_json, format_option
from trailseal.storage.keyfiles import load_keyring, rotate_keyring, verifier_keys


@click.group("signing-key")
def signing_key() -> None:
    """Show or rotate a log's checkpoint signing key."""


@signing_key.command("show")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("./trailseal-data"), show_default=True)
@click.option("--log", default="default", show_default=True)
@format_option
def show(data_dir: Path, log: str, fmt: str) -> None:
    """Print the log's verifier keys (oldest first; the last one signs new checkpoints).

    \b
    Example:
      trailseal signing-key show --data ./trailseal-data
    """
    keyring = load_keyring(data_dir, log)
    if keyring is None:
        raise click.UsageError(f"no signing key for log {log!r} in {data_dir}; start `trailseal serve` once")
    keys = verifier_keys(keyring)
    if fmt == "json":
        echo_json({"log": log, "verifier_keys": keys})
    else:
        for key in keys:
            click.echo(key)


@signing_key.command("rotate")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("./trailseal-data"), show_default=True)
@click.option("--log", default="default", show_default=True)
def rotate(data_dir: Path, log: str) -> None:
    """Generate a new signing key; the old one is retired and kept so old checkpoints verify.

    Stop the server first; it signs with the new key after its next start.

    \b
    Example:
      trailseal signing-key rotate --data ./trailseal-data --log default
    """
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    keyring = rotate_keyring(data_dir, log, now)
    click.echo(f"new verifier key: {verifier_keys(keyring)[-1]}")


COMMANDS = [signing_key]
