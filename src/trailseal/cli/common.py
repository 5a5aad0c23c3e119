"""Helpers shared by commands: the server URL option, JSON output."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click
import orjson

DEFAULT_URL = "http://127.0.0.1:8700"


_API_KEY = "trailseal.api_key"


def _remember_api_key(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta[_API_KEY] = value


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer <key>`` from ``--api-key`` or ``TRAILSEAL_API_KEY`` (else none)."""
    ctx = click.get_current_context(silent=True)
    key = (ctx.meta.get(_API_KEY) if ctx is not None else None) or os.environ.get("TRAILSEAL_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def url_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--url`` with ``TRAILSEAL_URL`` as default, and ``--api-key`` (``TRAILSEAL_API_KEY``).

    The key is not passed to the command; send it with ``headers=auth_headers()``.
    """
    func = click.option(
        "--api-key", envvar="TRAILSEAL_API_KEY", default=None, expose_value=False,
        callback=_remember_api_key, show_envvar=True,
        help="API key (ts_...) or OIDC bearer token for the server.",
    )(func)
    return click.option(
        "--url",
        default=lambda: os.environ.get("TRAILSEAL_URL", DEFAULT_URL),
        show_default="TRAILSEAL_URL or " + DEFAULT_URL,
        help="Base URL of a running trailseal server.",
    )(func)


def format_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--format text|json``."""
    return click.option(
        "--format", "fmt", type=click.Choice(["text", "json"]), default="text",
        show_default=True, help="Output for people (text) or scripts (json).",
    )(func)


def echo_json(value: Any) -> None:
    """Print JSON (indented) to stdout."""
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def check_response(response: Any) -> Any:
    """Raise a ClickException carrying the server's problem detail for a 4xx/5xx."""
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail") or body
        except ValueError:
            detail = response.text
        raise click.ClickException(f"server answered {response.status_code}: {detail}")
    return response
