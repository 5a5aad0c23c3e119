"""Client commands: ``emit``, ``checkpoint``, ``proof``."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from trailseal.cli.common import auth_headers, check_response, echo_json, format_option, url_option


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _resource(value: str) -> dict[str, str]:
    kind, sep, ident = value.partition(":")
    if not sep or not kind or not ident:
        raise click.BadParameter(f"want TYPE:ID (e.g. bucket:prod-logs), got {value!r}")
    return {"type": kind, "id": ident}


@click.command()
@click.option("--actor", help="actor.id (who).")
@click.option("--actor-type", help="actor.type, e.g. user or service.")
@click.option("--action", help="Dotted action, e.g. deploy.rollout.start.")
@click.option("--resource", help="TYPE:ID of the resource acted on.")
@click.option("--outcome", type=click.Choice(["success", "failure", "denied", "unknown"]))
@click.option("--reason", help="Free-text reason.")
@click.option("--request-id")
@click.option("--trace-id")
@click.option("--service", help="source.service.")
@click.option("--environment", help="source.environment, e.g. prod.")
@click.option("--meta", "metadata", multiple=True, help="metadata KEY=VALUE (repeatable).")
@click.option("--id", "event_id", help="Idempotency key (default: UUIDv7 assigned by the server).")
@click.option("--time", "time_", help="RFC 3339 time (default: now).")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read events from stdin (JSON object, array or NDJSON).")
@click.option("--log", help="Target log (default: the server's default log).")
@click.option("--proofs", is_flag=True, help="Ask for inclusion proofs in the receipts.")
@url_option
@format_option
def emit(
    actor: str | None, actor_type: str | None, action: str | None, resource: str | None,
    outcome: str | None, reason: str | None, request_id: str | None, trace_id: str | None,
    service: str | None, environment: str | None, metadata: tuple[str, ...], event_id: str | None,
    time_: str | None, from_stdin: bool, log: str | None, proofs: bool, url: str, fmt: str,
) -> None:
    """Send an audit event (from flags or stdin) and print its receipt.

    \b
    Examples:
      trailseal emit --actor ci-bot --action deploy.rollout.start \\
          --resource service:checkout --outcome success --environment prod
      cat events.ndjson | trailseal emit --stdin --format json
    """
    if from_stdin:
        body = sys.stdin.buffer.read()
        content_type = "application/x-ndjson" if body.lstrip()[:1] == b"{" and b"\n{" in body.strip() else "application/json"
    else:
        missing = [name for name, value in (("--actor", actor), ("--action", action), ("--resource", resource)) if not value]
        if missing:
            raise click.UsageError(f"missing {', '.join(missing)} (or use --stdin)")
        event: dict[str, Any] = {
            "time": time_ or _now(),
            "actor": {"id": actor},
            "action": action,
            "resource": _resource(resource or ""),
        }
        if actor_type:
            event["actor"]["type"] = actor_type
        for key, value in (("outcome", outcome), ("reason", reason), ("request_id", request_id),
                           ("trace_id", trace_id), ("id", event_id)):
            if value:
                event[key] = value
        source = {k: v for k, v in (("service", service), ("environment", environment)) if v}
        if source:
            event["source"] = source
        if metadata:
            pairs = {}
            for item in metadata:
                key, sep, value = item.partition("=")
                if not sep:
                    raise click.BadParameter(f"--meta wants KEY=VALUE, got {item!r}")
                pairs[key] = value
            event["metadata"] = pairs
        body = orjson.dumps(event)
        content_type = "application/json"
    params: dict[str, str] = {}
    if log:
        params["log"] = log
    if proofs:
        params["proofs"] = "true"
    response = httpx.post(f"{url}/v1/events", content=body, params=params,
                          headers={"content-type": content_type, **auth_headers()}, timeout=60)
    receipts = check_response(response).json()["receipts"]
    if fmt == "json":
        echo_json(receipts)
        return
    for receipt in receipts:
        if receipt.get("status", "sequenced") != "sequenced":  # quarantined / sampled_out (docs/pipeline.md)
            click.echo(f"{receipt['id']}  log={receipt['log']} {receipt['status']} {receipt.get('quarantine_id', '')}".rstrip())
            continue
        dup = " (already recorded)" if receipt.get("duplicate") else ""
        click.echo(f"{receipt['id']}  log={receipt['log']} leaf={receipt['leaf_index']} "
                   f"tree_size={receipt['tree_size']}{dup}")


@click.command()
@click.option("--log", default="default", show_default=True)
@click.option("--save", type=click.Path(path_type=Path), help="Also write the checkpoint to FILE (a trusted copy for later `verify --trusted-checkpoint`).")
@url_option
def checkpoint(log: str, save: Path | None, url: str) -> None:
    """Print the log's latest signed checkpoint (C2SP signed note).

    \b
    Example:
      trailseal checkpoint --save trusted-checkpoint.txt
    """
    response = check_response(httpx.get(f"{url}/v1/logs/{log}/checkpoint", headers=auth_headers(), timeout=30))
    if save is not None:
        save.write_bytes(response.content)
    click.echo(response.text, nl=False)


@click.command()
@click.option("--log", default="default", show_default=True)
@click.option("--event-id", help="Inclusion proof for this event.")
@click.option("--leaf-index", type=int, help="Inclusion proof for this leaf.")
@click.option("--tree-size", type=int, help="Tree size to prove against (default: latest).")
@click.option("--consistency", nargs=2, type=int, metavar="FIRST SECOND", help="Consistency proof between two sizes.")
@url_option
def proof(log: str, event_id: str | None, leaf_index: int | None, tree_size: int | None,
          consistency: tuple[int, int] | None, url: str) -> None:
    """Fetch an inclusion or consistency proof as JSON.

    \b
    Examples:
      trailseal proof --event-id 0193a0c4-...
      trailseal proof --consistency 100 250
    """
    if consistency:
        first, second = consistency
        response = httpx.get(f"{url}/v1/logs/{log}/proofs/consistency",
                             params={"first": first, "second": second}, headers=auth_headers(),
                             timeout=30)
    else:
        params: dict[str, Any] = {}
        if event_id:
            params["event_id"] = event_id
        elif leaf_index is not None:
            params["leaf_index"] = leaf_index
        else:
            raise click.UsageError("give --event-id, --leaf-index or --consistency")
        if tree_size is not None:
            params["tree_size"] = tree_size
        response = httpx.get(f"{url}/v1/logs/{log}/proofs/inclusion", params=params,
                             headers=auth_headers(), timeout=30)
    echo_json(check_response(response).json())


COMMANDS = [emit, checkpoint, proof]
