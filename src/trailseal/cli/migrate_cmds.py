"""``trailseal migrate``: apply the store's numbered schema migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from trailseal.cli.common import echo_json, format_option


def migrate_store(url: str, data_dir: Path) -> dict[str, Any]:
    """Open the store at ``url`` (which applies pending core migrations) and report versions."""
    from trailseal.storage import open_store

    store = open_store(url, data_dir)
    try:
        versions = getattr(store, "migration_versions", None)
        applied: dict[str, int] = versions() if versions is not None else {}
        if not applied:
            migrate = getattr(store, "migrate", None)
            applied = {"core": int(migrate())} if migrate is not None else {}
        return {"store": type(store).__name__, "versions": applied}
    finally:
        store.close()


@click.command()
@click.option("--store", "store_url", default=None,
              help="Store URL [env TRAILSEAL_STORE; default: SQLite in the data dir].")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Data directory [env TRAILSEAL_DATA_DIR; default ./trailseal-data].")
@click.option("--init-keys", is_flag=True,
              help="Also generate the default log's signing key in DATA/keys if missing (to share "
                   "with every node).")
@click.option("--server-name", default=None, help="Checkpoint origin prefix, as the nodes use it.")
@format_option
def migrate(store_url: str | None, data_dir: Path | None, init_keys: bool, server_name: str | None,
            fmt: str) -> None:
    """Create or upgrade the store's tables (idempotent; safe while other nodes run).

    `trailseal serve` migrates on start too; run this first when several nodes start together,
    or as a deploy step (a Kubernetes init container or Job). Migrations of one store are
    serialized with a database lock, so concurrent runs are harmless. With --init-keys it also
    creates the signing key that all nodes of a cluster must share (docs/deploy.md).

    \b
    Example:
      trailseal migrate --store postgresql://trailseal@db:5432/audit
      trailseal migrate --store postgresql://db/audit --data ./seed --init-keys --server-name audit.example.com
    """
    from trailseal.server.settings import Settings

    settings = Settings.from_env(store=store_url, data_dir=data_dir, server_name=server_name)
    report = migrate_store(settings.store, settings.data_dir)
    if init_keys:
        report["verifier_keys"] = init_signing_keys(settings)
    if fmt == "json":
        echo_json(report)
        return
    versions = ", ".join(f"{name} {version}" for name, version in report["versions"].items())
    click.echo(f"{report['store']}: schema up to date ({versions or 'no migrations'})")
    for key in report.get("verifier_keys", []):
        click.echo(f"verifier key: {key}")


def init_signing_keys(settings: Any) -> list[str]:
    """Load or generate the default log's keyring in the data directory; its verifier keys."""
    import datetime as dt

    from trailseal.storage.keyfiles import load_or_create_keyring, verifier_keys

    log = settings.default_log
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keyring, _ = load_or_create_keyring(settings.data_dir, log, settings.origin(log), now)
    return verifier_keys(keyring)


COMMANDS = [migrate]
