"""``trailseal quarantine``, ``subject``, ``pipeline-policy`` and ``producers`` over the HTTP API."""

from __future__ import annotations

from pathlib import Path

import click
import httpx
import orjson

from trailseal.cli.common import auth_headers, check_response, echo_json, format_option, url_option


def _params(log: str | None, **more: str | None) -> dict[str, str]:
    out = {"log": log} if log else {}
    out.update({k: v for k, v in more.items() if v is not None})
    return out


_LOG = click.option("--log", help="Tenant log (default: the server's default log).")


@click.group("quarantine")
def quarantine() -> None:
    """List, inspect and re-drive events that failed their schema.

    \b
    Example:
      trailseal quarantine list
      trailseal quarantine redrive --all --action auth.login
    """


@quarantine.command("list")
@click.option("--status", type=click.Choice(["quarantined", "redriven", "all"]), default="quarantined", show_default=True)
@click.option("--action", help="Only this action.")
@click.option("--limit", type=int, default=100, show_default=True)
@_LOG
@url_option
@format_option
def q_list(status: str, action: str | None, limit: int, log: str | None, url: str, fmt: str) -> None:
    """List quarantined events with their violations.

    \b
    Example:
      trailseal quarantine list --action auth.login --format json
    """
    answer = check_response(httpx.get(
        f"{url}/v1/quarantine", params=_params(log, status=status, action=action, limit=str(limit)),
        headers=auth_headers(), timeout=30,
    )).json()
    if fmt == "json":
        echo_json(answer)
        return
    for entry in answer["entries"]:
        first = entry["violations"][0] if entry["violations"] else {}
        click.echo(f"{entry['quarantine_id']}  {entry['action']:<24} {entry['status']:<11} "
                   f"{first.get('pointer', '')} {first.get('rule', '')}")


@quarantine.command("show")
@click.argument("quarantine_id")
@_LOG
@url_option
@format_option
def q_show(quarantine_id: str, log: str | None, url: str, fmt: str) -> None:
    """Show one quarantined event (as stored there, redacted) and every violation.

    \b
    Example:
      trailseal quarantine show q-0193a0c4-...
    """
    entry = check_response(httpx.get(f"{url}/v1/quarantine/{quarantine_id}", params=_params(log),
                                      headers=auth_headers(), timeout=30)).json()
    if fmt == "json":
        echo_json(entry)
        return
    click.echo(f"{entry['quarantine_id']}  event {entry['id']}  {entry['action']}  received {entry['received_at']}  {entry['status']}")
    for violation in entry["violations"]:
        click.echo(f"  {violation['pointer'] or '/'}: {violation['rule']}: {violation['detail']}")
    click.echo(orjson.dumps(entry["event"], option=orjson.OPT_INDENT_2).decode())


@quarantine.command("redrive")
@click.argument("quarantine_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Re-drive every waiting entry (of --action).")
@click.option("--action", help="With --all: only this action.")
@_LOG
@url_option
@format_option
def q_redrive(quarantine_id: str | None, everything: bool, action: str | None, log: str | None, url: str, fmt: str) -> None:
    """Re-validate against the current schemas and sequence what now passes.

    Exit 1 when something is still invalid.

    \b
    Examples:
      trailseal quarantine redrive q-0193a0c4-...
      trailseal quarantine redrive --all --action auth.login
    """
    if everything == (quarantine_id is not None):
        raise click.UsageError("give a QUARANTINE_ID or --all")
    if everything:
        answer = check_response(httpx.post(f"{url}/v1/quarantine/redrive", params=_params(log, action=action),
                                           headers=auth_headers(), timeout=300)).json()
        results = answer["results"]
    else:
        answer = check_response(httpx.post(f"{url}/v1/quarantine/{quarantine_id}/redrive", params=_params(log),
                                           headers=auth_headers(), timeout=60)).json()
        results = [answer]
    if fmt == "json":
        echo_json(answer)
    for result in results:
        if fmt == "text":
            if result.get("status") == "sequenced":
                click.echo(f"{result['quarantine_id']}: sequenced as leaf {result['leaf_index']}")
            else:
                first = (result.get("violations") or [{}])[0]
                click.echo(f"{result.get('quarantine_id')}: still {result.get('status')} "
                           f"{first.get('pointer', '')} {first.get('rule', '')} {result.get('detail', '')}".rstrip())
    if any(r.get("status") != "sequenced" for r in results):
        raise SystemExit(1)


@click.group("subject")
def subject() -> None:
    """Data subjects: crypto-shredding of their encrypted fields.

    \b
    Example:
      trailseal subject forget customer-4411 --reason "GDPR art. 17 request 2291"
    """


@subject.command("forget")
@click.argument("subject_id")
@click.option("--actor", help="Who asks (recorded in the erasure event).")
@click.option("--reason", help="Why (recorded in the erasure event).")
@_LOG
@url_option
@format_option
def forget(subject_id: str, actor: str | None, reason: str | None, log: str | None, url: str, fmt: str) -> None:
    """Destroy SUBJECT_ID's keys: its encrypted fields read "erased"; proofs still verify.

    \b
    Example:
      trailseal subject forget alice@example.com --actor dpo@example.com
    """
    body = {k: v for k, v in (("actor", actor), ("reason", reason)) if v}
    answer = check_response(httpx.post(f"{url}/v1/subjects/{subject_id}/forget", json=body, params=_params(log),
                                       headers=auth_headers(), timeout=60)).json()
    if fmt == "json":
        echo_json(answer)
    else:
        click.echo(f"forgot subject {answer['subject']}: {answer['keys_destroyed']} key(s) destroyed; "
                   f"erasure recorded as leaf {answer['receipt']['leaf_index']}")


@click.group("pipeline-policy")
def policy() -> None:
    """Show or set a tenant's pipeline policy (unknown actions, redaction, sampling).

    \b
    Example:
      trailseal pipeline-policy show --format json > policy.json
      trailseal pipeline-policy set policy.json
    """


@policy.command("show")
@_LOG
@url_option
@format_option
def policy_show(log: str | None, url: str, fmt: str) -> None:
    """Print the policy in force (defaults filled in).

    \b
    Example:
      trailseal pipeline-policy show --log payments
    """
    answer = check_response(httpx.get(f"{url}/v1/pipeline/policy", params=_params(log), headers=auth_headers(), timeout=30)).json()
    echo_json(answer["policy"] if fmt == "json" else answer)


@policy.command("set")
@click.argument("policy_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_LOG
@url_option
@format_option
def policy_set(policy_file: Path, log: str | None, url: str, fmt: str) -> None:
    """Replace the policy with POLICY_FILE (JSON; omitted parts take their defaults).

    \b
    Example:
      trailseal pipeline-policy set policy.json --log payments
    """
    answer = check_response(httpx.put(f"{url}/v1/pipeline/policy", content=policy_file.read_bytes(),
                                      params=_params(log), headers=auth_headers(), timeout=30)).json()
    if fmt == "json":
        echo_json(answer["policy"])
    else:
        click.echo(f"policy of log {answer['log']} replaced")


@click.command("producers")
@_LOG
@url_option
@format_option
def producers(log: str | None, url: str, fmt: str) -> None:
    """Per-producer sequence tracking: events, gaps, duplicates, capture rate.

    \b
    Example:
      trailseal producers --format json
    """
    answer = check_response(httpx.get(f"{url}/v1/producers", params=_params(log), headers=auth_headers(), timeout=30)).json()
    if fmt == "json":
        echo_json(answer)
        return
    for row in answer["producers"]:
        rate = row["capture_rate"]
        shown = f"{rate * 100:.2f}%" if rate is not None else "-"
        click.echo(f"{row['producer']:<24} events={row['events']} seq={row['first_seq']}..{row['max_seq']} "
                   f"gaps={row['gaps']} duplicates={row['duplicates']} late={row['late']} capture={shown}")


COMMANDS = [quarantine, subject, policy, producers]
