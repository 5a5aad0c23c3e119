"""``trailseal retention|hold|archive``: retention policies and runs, legal holds, archives.

Each command works against a running server (``--url``, the default) or, with ``--data DIR``,
directly on a stopped server's data directory (it takes the same lock as ``serve``). Both paths
call the same library functions and print the same JSON. ``archive verify`` needs neither: it
reads the archive and the verifier keys only.
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import httpx

from trailseal.cli.common import auth_headers, check_response, echo_json, format_option, url_option
from trailseal.cli.main import EXIT_VERIFY_FAILED

Local = Callable[[Any], Any]


def data_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--data DIR``: work offline on a (stopped) server's data directory instead of ``--url``."""
    return click.option(
        "--data", "data_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
        help="Work on this data directory directly (the server must be stopped) instead of --url.",
    )(func)


def log_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--log`` (default: the default log)."""
    return click.option("--log", default="default", show_default=True, help="The log (tenant).")(func)


@contextlib.contextmanager
def local_retention(data_dir: Path) -> Iterator[Any]:
    """A :class:`Retention` over the data directory, holding the ``serve`` lock meanwhile."""
    from trailseal.cli.serve import lock_data_dir
    from trailseal.server.retention import retention_for
    from trailseal.server.runtime import Runtime
    from trailseal.server.settings import Settings
    from trailseal.storage import open_store

    if not (data_dir / "trailseal.db").exists():
        raise click.UsageError(f"no store in {data_dir}; is --data the server's data directory?")
    lock = lock_data_dir(data_dir)
    runtime = None
    try:
        settings = Settings.from_env(data_dir=data_dir)
        store = open_store(settings.store, settings.data_dir)
        # Checkpoints must be signed under the origin the server used: take its server name
        # from the stored logs (origin "<server name>/<log>").
        origins = [info.origin for info in store.list_logs() if "/" in info.origin]
        if origins:
            settings = replace(settings, server_name=origins[0].rsplit("/", 1)[0])
        runtime = Runtime(settings, store=store)
        yield retention_for(runtime)
    finally:
        if runtime is not None:
            runtime.close()
        lock.close()


def run(data_dir: Path | None, url: str, local: Local, method: str, path: str,
        params: dict[str, Any] | None = None, body: Any = None) -> Any:
    """Call ``local(retention)`` on ``--data``, else the HTTP route; return the JSON answer."""
    if data_dir is not None:
        with local_retention(data_dir) as retention:
            return local(retention)
    query = {k: v for k, v in (params or {}).items() if v is not None}
    response = httpx.request(method, f"{url}{path}", params=query, json=body,
                             headers=auth_headers(), timeout=3600)
    return check_response(response).json()


def actor() -> str:
    """Who runs an offline command, for the audit events."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _keep_json(policy: Any) -> dict[str, Any]:
    from trailseal.retention.policy import format_keep

    return {**policy.to_json(), "keep": format_keep(policy.keep_days)}


# -- retention ---------------------------------------------------------------------------------
@click.group("retention")
def retention_group() -> None:
    """Retention policies, dry runs and runs (docs/retention.md).

    \b
    Example:
      trailseal retention set --log default --action 'auth.*' --keep 90d
      trailseal retention plan --log default
    """


@retention_group.command("show")
@log_option
@data_option
@url_option
@format_option
def retention_show(log: str, data_dir: Path | None, url: str, fmt: str) -> None:
    """Show the policies that apply to a log, its holds, archive and prune state, recent runs.

    \b
    Example:
      trailseal retention show --log default
    """
    got = run(data_dir, url, lambda r: r.show(log), "GET", "/v1/retention", {"log": log})
    if fmt == "json":
        echo_json(got)
        return
    click.echo(f"log {got['log']}  horizon {got['horizon'] or '-'}")
    for p in got["policies"]:
        click.echo(f"  policy {p['name']}: log={p['log']} action={p['action']} keep={p['keep']}")
    if not got["policies"]:
        click.echo("  no policy: every event is kept forever")
    for h in got["holds"]:
        click.echo(f"  hold {h['hold_id']} ({h['status']}) case={h['case']} owner={h['owner']}")
    a = got["archive"]
    click.echo(f"  archive {a['target']}: {a['segments']} segments, leaves [0, {a['archived_end']})"
               f", {a['stored_bytes']} bytes")
    click.echo(f"  pruned {got['pruned']}, restored {got['restored']}")


@retention_group.command("set")
@log_option
@click.option("--action", default="*", show_default=True,
              help="Action glob, e.g. 'auth.*'; '*' makes the log's default.")
@click.option("--keep", help="How long: 90d, 12w, 6m, 7y or forever.")
@click.option("--name", help="Policy name (default: from log and action).")
@click.option("--delete", "delete", is_flag=True, help="Remove the policy named --name instead.")
@data_option
@url_option
@format_option
def retention_set(log: str, action: str, keep: str | None, name: str | None, delete: bool,
                  data_dir: Path | None, url: str, fmt: str) -> None:
    """Create, change or delete a retention policy (an audit event in _system).

    --log '*' makes a policy for every log. The most specific policy wins: the log's own over
    '*', then the longest literal action prefix.

    \b
    Examples:
      trailseal retention set --log default --action 'auth.*' --keep 90d
      trailseal retention set --log '*' --action 'iam.*' --keep 7y
      trailseal retention set --name default.auth --delete
    """
    from trailseal.retention.policy import default_name, parse_keep

    if delete:
        target = name or default_name(log, action)
        got = run(data_dir, url, lambda r: {"deleted": r.delete_policy(target, actor=actor()).to_json()},
                  "DELETE", f"/v1/retention/policies/{target}", {"log": log})
    else:
        if keep is None:
            raise click.UsageError("give --keep (or --delete)")
        days = parse_keep(keep)
        got = run(data_dir, url,
                  lambda r: _keep_json(r.set_policy(log, action, days, actor=actor(), name=name)),
                  "PUT", "/v1/retention/policies", {"log": log},
                  {"action": action, "keep": keep, "name": name})
    if fmt == "json":
        echo_json(got)
    elif delete:
        click.echo(f"deleted policy {got['deleted']['name']}")
    else:
        click.echo(f"policy {got['name']}: log={got['log']} action={got['action']} keep={got['keep']}")


def _print_plan(plan: dict[str, Any]) -> None:
    click.echo(f"log {plan['log']}: horizon {plan['horizon'] or '- (nothing signed yet)'}, "
               f"signed size {plan['signed_size']}, archived [0, {plan['archived_end']})")
    for seg in plan["archive"]:
        click.echo(f"  archive leaves [{seg['range'][0]}, {seg['range'][1]})")
    click.echo(f"  prune {plan['prune']['count']} event(s)"
               + "".join(f"; {n} by {p}" for p, n in plan["prune"]["by_policy"].items()))
    for item in plan["prune"]["sample"][:10]:
        click.echo(f"    leaf {item['leaf_index']} {item['action']} received {item['received_at']}: "
                   f"older than {item['keep_days']} days ({item['policy']})")
    click.echo(f"  held by legal holds: {plan['held']['count']}")
    for item in plan["held"]["sample"][:10]:
        click.echo(f"    leaf {item['leaf_index']} {item['action']}: {', '.join(item['holds'])}")
    for why, n in plan["kept"].items():
        click.echo(f"  kept {n}: {why}")
    for warning in plan["warnings"]:
        click.echo(f"  warning: {warning}")


@retention_group.command("plan")
@log_option
@data_option
@url_option
@format_option
def retention_plan(log: str, data_dir: Path | None, url: str, fmt: str) -> None:
    """Dry run: list what a run would archive and prune, what holds keep, and why.

    \b
    Example:
      trailseal retention plan --log default --format json
    """
    got = run(data_dir, url, lambda r: r.plan(log).to_json(), "GET", "/v1/retention/plan",
              {"log": log})
    if fmt == "json":
        echo_json(got)
    else:
        _print_plan(got)


@retention_group.command("apply")
@click.option("--log", default="default", show_default=True, help="The log, or '*' for every log.")
@data_option
@url_option
@format_option
def retention_apply(log: str, data_dir: Path | None, url: str, fmt: str) -> None:
    """Run retention now: archive, then prune; resumes a run that was killed.

    \b
    Examples:
      trailseal retention apply --log default
      trailseal retention apply --data ./trailseal-data --log '*'
    """
    def local(r: Any) -> dict[str, Any]:
        runs = r.apply_all(actor=actor()) if log == "*" else [r.apply(log, actor=actor())]
        return {"runs": [x.to_json() for x in runs]}

    got = run(data_dir, url, local, "POST", "/v1/retention/apply", {"log": log})
    if fmt == "json":
        echo_json(got)
        return
    for r in got["runs"]:
        again = f" (resumed {r['resumed']}x)" if r["resumed"] else ""
        click.echo(f"run {r['run_id']} log {r['log']}{again}: sealed {r['segments']} segment(s), "
                   f"pruned {r['pruned']}, held {r['held']}, horizon {r['horizon']}")


# -- holds -------------------------------------------------------------------------------------
@click.group("hold")
def hold_group() -> None:
    """Legal holds: held events are never pruned.

    \b
    Example:
      trailseal hold create --case LIT-2025-014 --owner legal@example.com --tenant
    """


def _print_hold(h: dict[str, Any]) -> None:
    from trailseal.retention.holds import describe

    click.echo(f"{h['hold_id']}  {h['status']}  log={h['log']} case={h['case']} owner={h['owner']}"
               f"  {describe(h['selector'])}"
               + (f"  expires {h['expires_at']}" if h["expires_at"] else ""))


@hold_group.command("create")
@log_option
@click.option("--case", required=True, help="Case reference, e.g. LIT-2025-014.")
@click.option("--owner", required=True, help="Who owns the hold (a person or team).")
@click.option("--reason", default="", help="Free text.")
@click.option("--expires", "expires_at", help="RFC 3339 expiry (default: until released).")
@click.option("--from", "time_from", help="Hold events at or after this RFC 3339 time.")
@click.option("--to", "time_to", help="Hold events before this RFC 3339 time.")
@click.option("--event-id", "event_ids", multiple=True, help="Hold this event (repeatable).")
@click.option("--tenant", is_flag=True, help="Hold every event of the log.")
@click.option("--query", "query", help="Hold the events a query matches (needs the query engine).")
@data_option
@url_option
@format_option
def hold_create(log: str, case: str, owner: str, reason: str, expires_at: str | None,
                time_from: str | None, time_to: str | None, event_ids: tuple[str, ...],
                tenant: bool, query: str | None, data_dir: Path | None, url: str, fmt: str) -> None:
    """Place a legal hold by time range, event ids, tenant or query (an audit event).

    \b
    Examples:
      trailseal hold create --log default --case LIT-2025-014 --owner legal@example.com \\
          --from 2025-03-01T00:00:00Z --to 2025-04-01T00:00:00Z
      trailseal hold create --case INC-88 --owner secops --event-id 0193a0c4-...
    """
    chosen = [k for k, on in (("time_range", bool(time_from or time_to)),
                              ("event_ids", bool(event_ids)), ("tenant", tenant),
                              ("query", bool(query))) if on]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --from/--to, --event-id, --tenant, --query")
    selector: dict[str, Any] = {"kind": chosen[0]}
    if time_from:
        selector["from"] = time_from
    if time_to:
        selector["to"] = time_to
    if event_ids:
        selector["ids"] = list(event_ids)
    if query:
        selector["q"] = query
    body = {"case": case, "owner": owner, "reason": reason, "selector": selector,
            "expires_at": expires_at}
    got = run(data_dir, url, lambda r: r.hold_json(r.create_hold(
        log, case=case, owner=owner, selector=selector, actor=actor(), expires_at=expires_at,
        reason=reason)), "POST", "/v1/holds", {"log": log}, body)
    echo_json(got) if fmt == "json" else _print_hold(got)


@hold_group.command("list")
@log_option
@click.option("--active", is_flag=True, help="Hide released holds.")
@data_option
@url_option
@format_option
def hold_list(log: str, active: bool, data_dir: Path | None, url: str, fmt: str) -> None:
    """List a log's legal holds.

    \b
    Example:
      trailseal hold list --log default --active
    """
    got = run(data_dir, url, lambda r: {"holds": [r.hold_json(h) for h in r.list_holds(
        log, include_released=not active)]}, "GET", "/v1/holds",
        {"log": log, "released": "false" if active else "true"})
    if fmt == "json":
        echo_json(got)
        return
    for h in got["holds"]:
        _print_hold(h)
    if not got["holds"]:
        click.echo("no holds")


@hold_group.command("show")
@click.argument("hold_id")
@log_option
@data_option
@url_option
@format_option
def hold_show(hold_id: str, log: str, data_dir: Path | None, url: str, fmt: str) -> None:
    """Show one hold.

    \b
    Example:
      trailseal hold show hold-0193a0c4-... --format json
    """
    def local(r: Any) -> Any:
        hold = r.get_hold(hold_id)
        if hold.log != log:
            raise click.UsageError(f"hold {hold_id} belongs to log {hold.log!r}; pass --log")
        return r.hold_json(hold)

    got = run(data_dir, url, local, "GET", f"/v1/holds/{hold_id}", {"log": log})
    echo_json(got) if fmt == "json" else _print_hold(got)


@hold_group.command("change")
@click.argument("hold_id")
@log_option
@click.option("--expires", "expires_at", help="New RFC 3339 expiry ('never' removes it).")
@click.option("--owner", help="New owner.")
@click.option("--case", help="New case reference.")
@click.option("--reason", help="New reason.")
@data_option
@url_option
@format_option
def hold_change(hold_id: str, log: str, expires_at: str | None, owner: str | None,
                case: str | None, reason: str | None, data_dir: Path | None, url: str,
                fmt: str) -> None:
    """Change a standing hold's expiry, owner, case or reason (an audit event).

    \b
    Example:
      trailseal hold change hold-0193a0c4-... --expires 2027-01-01T00:00:00Z
    """
    body: dict[str, Any] = {k: v for k, v in (("owner", owner), ("case", case),
                                                ("reason", reason)) if v is not None}
    kwargs = dict(body)
    if expires_at is not None:
        body["expires_at"] = kwargs["expires_at"] = None if expires_at == "never" else expires_at
    got = run(data_dir, url, lambda r: r.hold_json(r.change_hold(hold_id, actor=actor(), **kwargs)),
              "PATCH", f"/v1/holds/{hold_id}", {"log": log}, body)
    echo_json(got) if fmt == "json" else _print_hold(got)


@hold_group.command("release")
@click.argument("hold_id")
@log_option
@click.option("--reason", default="", help="Why (recorded in the audit event).")
@data_option
@url_option
@format_option
def hold_release(hold_id: str, log: str, reason: str, data_dir: Path | None, url: str,
                 fmt: str) -> None:
    """Release a hold; its events age under their policies again (an audit event).

    \b
    Example:
      trailseal hold release hold-0193a0c4-... --reason "case closed"
    """
    got = run(data_dir, url, lambda r: r.hold_json(r.release_hold(hold_id, actor=actor(),
                                                                   reason=reason)),
              "POST", f"/v1/holds/{hold_id}/release", {"log": log}, {"reason": reason})
    echo_json(got) if fmt == "json" else _print_hold(got)


# -- archive -----------------------------------------------------------------------------------
@click.group("archive")
def archive_group() -> None:
    """Sealed archive segments: list, verify offline, restore.

    \b
    Example:
      trailseal archive verify --archive ./trailseal-data/archive --key-file default.pub.json
    """


def _target(archive: str | None, data_dir: Path | None) -> Any:
    from trailseal.retention.targets import open_target
    from trailseal.server.settings import Settings

    settings = Settings.from_env(data_dir=data_dir)
    url = archive if archive is not None else settings.archive_target
    if not url and data_dir is None:
        raise click.UsageError("give --archive DIR|s3://BUCKET/PREFIX (or --data DIR)")
    return open_target(url, default_dir=settings.data_dir / "archive",
                       s3_endpoint=settings.archive_s3_endpoint,
                       s3_region=settings.archive_s3_region, lock_days=settings.archive_lock_days)


def _manifests(target: Any, log: str) -> list[str]:
    return [k for k in target.list(f"{log}/") if k.endswith(".manifest")]


@archive_group.command("list")
@log_option
@click.option("--archive", help="Read the archive itself: a directory or s3://BUCKET/PREFIX.")
@data_option
@url_option
@format_option
def archive_list(log: str, archive: str | None, data_dir: Path | None, url: str, fmt: str) -> None:
    """List a log's archive segments (from the store, or with --archive from the archive).

    \b
    Examples:
      trailseal archive list --log default
      trailseal archive list --archive ./trailseal-data/archive --format json
    """
    if archive is not None:
        from trailseal.verify.archive import manifest_json

        target = _target(archive, data_dir)
        segments = []
        for key in _manifests(target, log):
            m = manifest_json(target.get(key))
            segments.append({"segment": m.get("segment"), "range": m.get("range"),
                             "checkpoint_size": m.get("proof", {}).get("tree_size"),
                             "raw_bytes": m.get("data", {}).get("ndjson_bytes"),
                             "stored_bytes": m.get("data", {}).get("bytes"),
                             "created_at": m.get("created_at"), "manifest_key": key,
                             "lock_until": (m.get("object_lock") or {}).get("retain_until")})
        got: dict[str, Any] = {"log": log, "target": target.url, "segments": segments}
    else:
        got = run(data_dir, url, lambda r: {"log": log, "target": r.target.url, "segments": [
            s.to_json() for s in r.segments(log)]}, "GET", "/v1/archive/segments", {"log": log})
    if fmt == "json":
        echo_json(got)
        return
    click.echo(f"{got['target']}: {len(got['segments'])} segment(s)")
    for s in got["segments"]:
        lock = f"  locked until {s['lock_until']}" if s.get("lock_until") else ""
        click.echo(f"  {s['segment']}  leaves [{s['range'][0]}, {s['range'][1]})  "
                   f"{s['stored_bytes']} bytes (raw {s['raw_bytes']}){lock}")


@archive_group.command("verify")
@log_option
@click.option("--archive", help="The archive: a directory or s3://BUCKET/PREFIX "
              "(default: DATA/archive with --data, or TRAILSEAL_ARCHIVE_TARGET).")
@click.option("--segment", "segments", multiple=True, help="Only this segment (repeatable).")
@click.option("--key", "keys", multiple=True, help="Verifier key name+hash+base64 (repeatable).")
@click.option("--key-file", "key_files", multiple=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="File of verifier keys (one per line, or a keys/<log>.pub.json).")
@click.option("--origin", help="Expected checkpoint origin (default: the manifest's).")
@click.option("--data", "data_dir", type=click.Path(path_type=Path, file_okay=False),
              help="Take the archive target and, without --key, the keys from this data dir.")
@format_option
def archive_verify(log: str, archive: str | None, segments: tuple[str, ...], keys: tuple[str, ...],
                   key_files: tuple[Path, ...], origin: str | None, data_dir: Path | None,
                   fmt: str) -> None:
    """Check archive segments offline: signatures, hashes, and proofs to the signed roots.

    Needs no server and no store: only the archive and the log's verifier keys. Exit 0 when
    every segment verifies, 1 when any does not (each problem is named), 2 on usage errors.

    \b
    Example:
      trailseal archive verify --archive ./archive --log default \\
          --key-file trailseal-data/keys/default.pub.json
    """
    from trailseal.cli.verify_cmds import load_verifiers
    from trailseal.core.keys import parse_public_json
    from trailseal.verify.archive import check_segment, data_name, segment_id

    verifiers = load_verifiers(keys, key_files)
    if not verifiers and data_dir is not None:
        pub = data_dir / "keys" / f"{log}.pub.json"
        if pub.exists():
            verifiers = list(parse_public_json(pub.read_text()))
    if not verifiers:
        raise click.UsageError("pass the log's verifier key with --key or --key-file")
    target = _target(archive, data_dir)
    keys_found = _manifests(target, log)
    wanted = set(segments)
    results = []
    checks = []
    for key in keys_found:
        name = key.rsplit("/", 1)[-1].removesuffix(".manifest")
        if wanted and name not in wanted:
            continue
        start, _, end = name.partition("-")
        data_key = f"{log}/{data_name(int(start), int(end))}" if start.isdigit() and end.isdigit() else ""
        data = target.get(data_key) if data_key and target.exists(data_key) else None
        check = check_segment(name if not data_key else segment_id(int(start), int(end)),
                              target.get(key), data, verifiers, log=log, origin=origin)
        checks.append(check)
        results.append(check.to_json())
    missing = sorted(wanted - {r["segment"] for r in results})
    from trailseal.verify.archive import chain_problems

    chain = chain_problems(checks) if not wanted else []
    ok = bool(results) and all(r["ok"] for r in results) and not missing and not chain
    report = {"log": log, "target": target.url, "ok": ok, "segments": results,
              "chain": chain, "missing": missing,
              "leaves": sum(r["range"][1] - r["range"][0] for r in results if r["ok"])}
    if fmt == "json":
        echo_json(report)
    elif ok:
        click.echo(f"OK: {len(results)} segment(s) of log {log}, {report['leaves']} events, "
                   f"every manifest, checkpoint, hash and proof verified")
    else:
        click.echo(f"FAILED: archive of log {log} in {target.url}", err=True)
        if not results:
            click.echo("  - no segments found", err=True)
        for r in results:
            for problem in r["problems"]:
                click.echo(f"  - {r['segment']}: {problem}", err=True)
        for problem in chain:
            click.echo(f"  - {problem}", err=True)
        for name in missing:
            click.echo(f"  - {name}: not in the archive", err=True)
    if not ok:
        sys.exit(EXIT_VERIFY_FAILED)


@archive_group.command("restore")
@click.argument("segment")
@log_option
@click.option("--keep-days", type=click.IntRange(1, 3650), default=None,
              help="Keep the restored events this long before pruning again [default 30].")
@data_option
@url_option
@format_option
def archive_restore(segment: str, log: str, keep_days: int | None, data_dir: Path | None,
                    url: str, fmt: str) -> None:
    """Verify a segment and bring its pruned events back into the store (an audit event).

    Every archived leaf hash is checked against the log's tree first. Restored events read
    normally until --keep-days pass; the next retention run then prunes them again.

    \b
    Example:
      trailseal archive restore 000000000000-000000016384 --log default --keep-days 14
    """
    got = run(data_dir, url, lambda r: r.restore(log, segment, actor=actor(), keep_days=keep_days),
              "POST", f"/v1/archive/segments/{segment}/restore",
              {"log": log, "keep_days": keep_days})
    if fmt == "json":
        echo_json(got)
    else:
        click.echo(f"restored {got['restored']} event(s) of {got['segment']} (leaves "
                   f"[{got['range'][0]}, {got['range'][1]})) until {got['restored_until']}")


COMMANDS = [retention_group, hold_group, archive_group]
