"""Helpers shared by commands: the server URL option, JSON output."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click
import orjson

DEFAULT_URL = "http://127.0.0.1:8700"


def url_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--url`` with ``TRAILSEAL_URL`` as default."""
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
