"""``trailseal schema add|list|show|check``: the schema registry over the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from trailseal.cli.common import auth_headers, check_response, echo_json, format_option, url_option

_COMPAT = click.Choice(["backward", "forward", "full", "none"])


def _log_params(log: str | None) -> dict[str, str]:
    return {"log": log} if log else {}


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"{path}: not JSON: {exc}") from None


def _read_events(path: Path) -> list[Any]:
    data = path.read_bytes()
    stripped = data.strip()
    if stripped.startswith(b"["):
        value = orjson.loads(stripped)
        return list(value)
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


@click.group("schema")
def schema() -> None:
    """Manage the schema registry (versioned JSON Schemas keyed by action).

    \b
    Example:
      trailseal schema add 'iam.role.*' iam-role-v2.json
      trailseal schema list --format json
    """


@schema.command("add")
@click.argument("key")
@click.argument("schema_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--compatibility", type=_COMPAT, default="backward", show_default=True,
              help="Rule against the previous version (backward: accept all it accepted).")
@click.option("--log", help="Tenant log (default: the server's default log).")
@url_option
@format_option
def add(key: str, schema_file: Path, compatibility: str, log: str | None, url: str, fmt: str) -> None:
    """Register SCHEMA_FILE as the next version of KEY (an action or prefix like iam.role.*).

    An incompatible version is refused with the first counter-example (exit 2).

    \b
    Example:
      trailseal schema add 'deploy.*' deploy-v2.json --compatibility backward
    """
    body = {"key": key, "schema": _read_json(schema_file), "compatibility": compatibility}
    response = httpx.post(f"{url}/v1/schemas", json=body, params=_log_params(log), headers=auth_headers(), timeout=60)
    if response.status_code == 409 and fmt == "text":
        problem = response.json()
        click.echo(f"refused: {problem.get('detail')}", err=True)
        example = problem.get("counter_example")
        if example:
            click.echo("counter-example:\n" + orjson.dumps(example["event"], option=orjson.OPT_INDENT_2).decode(), err=True)
        raise SystemExit(2)
    stored = check_response(response).json()
    if fmt == "json":
        echo_json(stored)
    else:
        click.echo(f"registered {stored['key']} version {stored['version']} ({stored['compatibility']})")


@schema.command("list")
@click.option("--log", help="Tenant log (default: the server's default log).")
@url_option
@format_option
def list_cmd(log: str | None, url: str, fmt: str) -> None:
    """List every key and version (built-ins included; * marks the version in force).

    \b
    Example:
      trailseal schema list
    """
    answer = check_response(httpx.get(f"{url}/v1/schemas", params=_log_params(log), headers=auth_headers(), timeout=30)).json()
    if fmt == "json":
        echo_json(answer)
        return
    for row in answer["schemas"]:
        mark = "*" if row["latest"] else " "
        origin = "builtin" if row["builtin"] else row["created_at"]
        click.echo(f"{mark} {row['key']:<24} v{row['version']:<3} {row['compatibility']:<9} {origin}  {row['title']}")


@schema.command("show")
@click.argument("key")
@click.option("--version", type=int, help="Version (default: the latest).")
@click.option("--log", help="Tenant log (default: the server's default log).")
@url_option
@format_option
def show(key: str, version: int | None, log: str | None, url: str, fmt: str) -> None:
    """Print one version of KEY with its JSON Schema document.

    \b
    Example:
      trailseal schema show 'auth.*' --version 1
    """
    params = _log_params(log)
    if version is not None:
        params["version"] = str(version)
    answer = check_response(httpx.get(f"{url}/v1/schemas/{key}", params=params, headers=auth_headers(), timeout=30)).json()
    if fmt == "json":
        echo_json(answer)
        return
    click.echo(f"{answer['key']} version {answer['version']} ({answer['compatibility']})")
    click.echo(orjson.dumps(answer["document"], option=orjson.OPT_INDENT_2).decode())


@schema.command("check")
@click.argument("key", required=False)
@click.argument("schema_file", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--compatibility", type=_COMPAT, default="backward", show_default=True)
@click.option("--events", "events_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Instead: validate these events (JSON array or NDJSON) against the registry.")
@click.option("--log", help="Tenant log (default: the server's default log).")
@url_option
@format_option
def check(key: str | None, schema_file: Path | None, compatibility: str, events_file: Path | None,
          log: str | None, url: str, fmt: str) -> None:
    """Dry run: would SCHEMA_FILE register as the next version of KEY? Or how do --events validate?

    Exit 0 when compatible (or every event valid), 1 otherwise.

    \b
    Examples:
      trailseal schema check 'iam.*' iam-v2.json
      trailseal schema check --events sample.ndjson --format json
    """
    if events_file is not None:
        body: dict[str, Any] = {"events": _read_events(events_file)}
    elif key and schema_file:
        body = {"key": key, "schema": _read_json(schema_file), "compatibility": compatibility}
    else:
        raise click.UsageError("give KEY SCHEMA_FILE, or --events FILE")
    answer = check_response(httpx.post(f"{url}/v1/schemas/check", json=body, params=_log_params(log),
                                       headers=auth_headers(), timeout=60)).json()
    if "results" in answer:
        ok = all(r["valid"] for r in answer["results"])
        if fmt == "json":
            echo_json(answer)
        else:
            for number, result in enumerate(answer["results"]):
                schema_ref = result.get("schema") or {}
                where = f"{schema_ref.get('id')} v{schema_ref.get('version')}" if schema_ref else "no schema"
                click.echo(f"event {number}: {'valid' if result['valid'] else 'INVALID'} ({where})")
                for violation in result.get("violations", []):
                    click.echo(f"  {violation['pointer'] or '/'}: {violation['rule']}: {violation['detail']}")
                if "malformed" in result:
                    click.echo(f"  malformed: {result['malformed']['field']}: {result['malformed']['detail']}")
    else:
        ok = bool(answer["compatible"])
        if fmt == "json":
            echo_json(answer)
        elif ok:
            click.echo(f"compatible: would register {answer['key']} version {answer['version']}")
        else:
            click.echo(f"incompatible: {answer['detail']}")
            click.echo("counter-example:\n" + orjson.dumps(answer["counter_example"]["event"], option=orjson.OPT_INDENT_2).decode())
    if not ok:
        raise SystemExit(1)


COMMANDS = [schema]
