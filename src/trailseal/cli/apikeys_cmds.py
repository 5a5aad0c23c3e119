"""``trailseal keys create|list|revoke|rotate``: API keys, on a data directory or over HTTP.

With ``--data DIR`` (the default: ./trailseal-data) the commands work directly on the store's
SQLite file, whether or not a server runs on it (WAL lets both write), so scripts can provision
keys before the first start. With ``--url`` they call ``/v1/keys`` with an admin key.
(Checkpoint *signing* keys are ``trailseal signing-key``.)
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx

from trailseal.access.apikeys import (
    KeyRecord,
    create_key,
    parse_duration,
    parse_expiry,
    revoke_key,
    rotate_key,
)
from trailseal.access.roles import Grant
from trailseal.access.stores import open_data_dir_keys
from trailseal.cli.common import check_response, echo_json, format_option


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _target(func: Callable[..., Any]) -> Callable[..., Any]:
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
                     default=None, help="Data directory to work on [default ./trailseal-data]."),
        click.option("--url", default=None,
                     help="Work through a running server's /v1/keys instead of a data directory."),
        click.option("--api-key", envvar="TRAILSEAL_API_KEY", default=None, show_envvar=True,
                     help="Admin key for --url."),
        format_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


class _Target:
    """Either a data directory's key store or a server's /v1/keys."""

    def __init__(self, data_dir: Path | None, url: str | None, api_key: str | None) -> None:
        if data_dir is not None and url is not None:
            raise click.UsageError("give --data DIR or --url URL, not both")
        self.url = url.rstrip("/") if url else None
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.data_dir = data_dir or Path("./trailseal-data")

    def http(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.url}{path}", json=body, headers=self.headers,
                                 timeout=30)
        return check_response(response).json()

    def local(self, work: Callable[..., Any]) -> Any:
        keys, store = open_data_dir_keys(self.data_dir)
        try:
            return work(keys)
        finally:
            keys.close()
            store.close()


def _actor() -> str:
    try:
        return f"cli ({getpass.getuser()})"
    except (KeyError, OSError):
        return "cli"


def _show_issued(value: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        echo_json(value)
        return
    grants = ", ".join(value["grants"])
    expires = f", expires {value['expires_at']}" if value.get("expires_at") else ""
    click.echo(f"Created {value['key_id']} ({value['name']}: {grants}{expires}).")
    click.echo("API key (shown once; only its hash is stored):")
    click.echo(f"  {value['key']}")


def _issued_json(token: str, record: KeyRecord) -> dict[str, Any]:
    return {"key": token, **record.to_json(_now())}


@click.group("keys")
def keys() -> None:
    """Manage API keys: create, list, revoke, rotate.

    \b
    Example:
      trailseal keys create --data ./trailseal-data --name ci --grant acme:producer
    """


@keys.command("create")
@click.option("--name", required=True, help="What the key is for (shown in listings).")
@click.option("--grant", "grants", multiple=True, required=True, metavar="TENANT:ROLE",
              help="Role on a tenant (log); repeatable. Roles: producer, reader, auditor, admin; "
                   "tenant * means every log.")
@click.option("--expires", help="Lifetime (30d, 12h) or an RFC 3339 time [default: never].")
@click.option("--rate", "rate_per_second", type=float, help="Requests per second for this key.")
@click.option("--burst", type=int, help="Token bucket size for this key.")
@_target
def create(name: str, grants: tuple[str, ...], expires: str | None, rate_per_second: float | None,
           burst: int | None, data_dir: Path | None, url: str | None, api_key: str | None,
           fmt: str) -> None:
    """Create a key and print it once.

    \b
    Examples:
      trailseal keys create --name ci --grant acme:producer --expires 90d
      trailseal keys create --name soc --grant '*:auditor' --format json
      trailseal keys create --url http://127.0.0.1:8700 --name app --grant app:producer
    """
    try:
        parsed = [Grant.parse(g) for g in grants]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--grant") from None
    target = _Target(data_dir, url, api_key)
    if target.url:
        body: dict[str, Any] = {"name": name, "grants": [str(g) for g in parsed]}
        for field, value in (("expires", expires), ("rate_per_second", rate_per_second),
                             ("burst", burst)):
            if value is not None:
                body[field] = value
        _show_issued(target.http("POST", "/v1/keys", body), fmt)
        return
    now = _now()
    expires_at = parse_expiry(expires, now) if expires else None
    issued = target.local(lambda store: create_key(
        store, name=name, grants=parsed, now=now, created_by=_actor(), expires_at=expires_at,
        rate_per_second=rate_per_second, burst=burst,
    ))
    _show_issued(_issued_json(issued.token, issued.record), fmt)


@keys.command("list")
@_target
def list_(data_dir: Path | None, url: str | None, api_key: str | None, fmt: str) -> None:
    """List keys (never their secrets) with grants and status.

    \b
    Example:
      trailseal keys list --data ./trailseal-data --format json
    """
    target = _Target(data_dir, url, api_key)
    if target.url:
        rows = target.http("GET", "/v1/keys")["keys"]
    else:
        now = _now()
        rows = target.local(lambda store: [r.to_json(now) for r in store.list_keys()])
    if fmt == "json":
        echo_json({"keys": rows})
        return
    for row in rows:
        expires = f" expires={row['expires_at']}" if row.get("expires_at") else ""
        click.echo(f"{row['key_id']}  {row['status']:<8} {row['name']}  "
                   f"{','.join(row['grants'])}{expires}")


@keys.command("revoke")
@click.argument("key_id")
@_target
def revoke(key_id: str, data_dir: Path | None, url: str | None, api_key: str | None,
           fmt: str) -> None:
    """Revoke a key; a running server refuses it from the next request on.

    \b
    Example:
      trailseal keys revoke ts_3f9a1c2b7d4e --data ./trailseal-data
    """
    target = _Target(data_dir, url, api_key)
    if target.url:
        row = target.http("DELETE", f"/v1/keys/{key_id}")
    else:
        now = _now()
        row = target.local(lambda store: revoke_key(store, key_id, now).to_json(now))
    if fmt == "json":
        echo_json(row)
    else:
        click.echo(f"revoked {row['key_id']} at {row['revoked_at']}")


@keys.command("rotate")
@click.argument("key_id")
@click.option("--grace", default="0", show_default=True,
              help="How long the old key keeps working (e.g. 1h); 0 revokes it now.")
@_target
def rotate(key_id: str, grace: str, data_dir: Path | None, url: str | None, api_key: str | None,
           fmt: str) -> None:
    """Issue a successor with the same name, grants and expiry; print it once.

    \b
    Example:
      trailseal keys rotate ts_3f9a1c2b7d4e --grace 1h
    """
    target = _Target(data_dir, url, api_key)
    if target.url:
        _show_issued(target.http("POST", f"/v1/keys/{key_id}/rotate", {"grace": grace}), fmt)
        return
    now = _now()
    seconds = parse_duration(grace)
    issued = target.local(lambda store: rotate_key(
        store, key_id, now, created_by=_actor(), grace_seconds=seconds))
    _show_issued(_issued_json(issued.token, issued.record), fmt)


COMMANDS = [keys]
